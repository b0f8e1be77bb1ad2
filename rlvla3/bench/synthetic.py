"""Synthetic inputs of the stage-bound benchmarks (a stage measured alone, without simulators)."""

from __future__ import annotations

from typing import List

import numpy as np

from rlvla3.core.types import ObsBatch


def random_obs(n: int, image_size: int, proprio_dim: int, instructions: List[str], seed: int = 0) -> ObsBatch:
    """n random observations, instructions cycled; the same for the same seed."""
    rng = np.random.default_rng(seed)
    return ObsBatch(rng.integers(0, 255, (n, image_size, image_size, 3), dtype=np.uint8),
                    rng.normal(size=(n, proprio_dim)).astype(np.float32),
                    [instructions[i % len(instructions)] for i in range(n)])
