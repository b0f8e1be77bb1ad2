"""Pure numerics (numpy/torch/stdlib only): advantages, losses, statistics."""
