"""What the expert's action labels look like, and whether a fitted clone spread over a dimension.

Scripted experts are often proportional controllers clipped to the action range, so a
dimension's labels can sit at both bounds (MetaWorld's button-press-topdown: 31% of the z
labels at +1 and 26% at -1). A single Gaussian per dimension (the tiny VLA's default
`binned_gaussian` head) cannot fit two such peaks: its scale saturates there, sampled actions
on that dimension become nearly uniform while the mean (greedy) stays right, and a sampled
clone can fail every episode (docs/metaworld.md, "The action head").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np


@dataclass(frozen=True)
class BoundPeaks:
    dim: int
    at_low: float  # fraction of the dimension's labels at the lower bound
    at_high: float  # ... at the upper bound


def two_peaked_dims(actions: np.ndarray, min_fraction: float = 0.1, bound: float = 0.99) -> List[BoundPeaks]:
    """Dimensions of (..., action_dim) labels in [-1, 1] with at least `min_fraction` of their
    labels at *each* bound (|a| >= `bound`): two peaks no single Gaussian fits."""
    if not 0.0 < min_fraction <= 0.5:
        raise ValueError(f"min_fraction must be in (0, 0.5], got {min_fraction}")
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] < 1 or a.size == 0:
        return []
    a = a.reshape(-1, a.shape[-1])
    low, high = (a <= -bound).mean(0), (a >= bound).mean(0)
    return [BoundPeaks(d, float(low[d]), float(high[d])) for d in range(a.shape[1])
            if low[d] >= min_fraction and high[d] >= min_fraction]


def flat_dims(entropy: np.ndarray, n_bins: int, fraction: float = 0.85) -> List[tuple]:
    """(dim, mean entropy in nats) of the dimensions whose per-token entropy (n, chunk, action_dim),
    averaged over samples and chunk steps, is at least `fraction` of a uniform distribution's
    (ln n_bins): a clone that samples those dimensions almost at random."""
    e = np.asarray(entropy, dtype=np.float64)
    if e.ndim != 3 or e.size == 0:
        return []
    per_dim = e.mean(axis=(0, 1))
    top = float(np.log(n_bins))
    return [(d, float(v)) for d, v in enumerate(per_dim) if v >= fraction * top]
