"""Shared builders for the transformers-backed policy tests (tiny shapes, CPU)."""

import numpy as np

from rlvla3.core.types import ObsBatch

INSTRUCTIONS = ["reach the red block", "push the blue cube to the green zone", "reach"]


def obs(n, size=32, proprio=4, seed=0):
    rng = np.random.default_rng(seed)
    return ObsBatch(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                    rng.normal(size=(n, proprio)).astype(np.float32),
                    [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(n)])


def dims(**kw):
    return dict(dict(image_size=32, proprio_dim=4, action_dim=3, chunk_size=4), **kw)
