"""torch.distributed pieces for multi-GPU runs (issue 8): bucketed weight broadcast."""
