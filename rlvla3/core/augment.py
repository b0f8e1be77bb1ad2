"""Image augmentation for behaviour cloning from pixels."""

from __future__ import annotations

import numpy as np


def random_shift(images: np.ndarray, pad: int, gen: np.random.Generator) -> np.ndarray:
    """Shift each (H, W, C) image by up to `pad` pixels in x and y, repeating the edge pixels.

    A clone trained on a few dozen demos fits the exact pixels of each frame; small random
    shifts make it rely on where things are relative to each other instead (DrQ-style)."""
    if pad <= 0:
        return images
    n, h, w = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)) + ((0, 0),) * (images.ndim - 3), mode="edge")
    dy = gen.integers(0, 2 * pad + 1, n)
    dx = gen.integers(0, 2 * pad + 1, n)
    out = np.empty_like(images)
    for i in range(n):
        out[i] = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out
