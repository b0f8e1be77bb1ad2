"""What both pipeline models (`simulate.py`, `lockstep.py`) share: the predicted result, named as
bench.json names the measured one, and the workload's random draws (which slots straggle, how
long episodes last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

from rlvla3.bench.config import BenchConfig


@dataclass
class SimResult:
    """Predicted rates over the window, named as bench.json names the measured ones."""

    mode: str
    window_s: float
    env_steps_per_s: float
    trained_samples_per_s: float
    policy_calls_per_s: float
    optimizer_steps_per_s: float
    env_utilization: float
    generator_utilization: List[float]
    trainer_utilization: float
    mean_batch: float
    dropped_stale: int = 0  # inside the window
    admission_refused: int = 0
    extra: dict = field(default_factory=dict)


def straggler_slots(slots: int, workers: int, fraction: float) -> set:
    """Which slots are slow, as global slot indices: the bench's own choice (BenchConfig)."""
    per = slots // workers
    chosen = BenchConfig(straggler_fraction=fraction).straggler_slots(workers, per)
    return {w * per + i for w, mine in enumerate(chosen) for i in mine}


def episode_lengths(rng: np.random.Generator, horizon: int, mean: float, n: int) -> np.ndarray:
    """Decisions per episode: to the time limit, or ending early with the share and spread that
    give `mean` (successes end uniformly over [1, 2 L_s - 1], L_s their mean length)."""
    if mean >= horizon - 1e-9:
        return np.full(n, horizon)
    # The early share p and their mean L_s satisfy p L_s + (1 - p) H = mean; L_s = H / 2 when it can.
    ls = min(horizon / 2.0, mean)
    p = (horizon - mean) / (horizon - ls)
    early = rng.random(n) < p
    lens = rng.integers(1, max(2, int(round(2 * ls))), size=n)
    return np.where(early, np.minimum(lens, horizon), horizon)
