"""Latency model: makes the cheap built-in env cost as much time as a real simulator.

Used to exercise the runtime (async rollouts, straggler handling) without a
heavy simulator. ``sleep`` models a simulator running on another device/process
(this CPU is free); ``spin`` burns this CPU as an in-process simulator would.
``chunk_step`` spends its sub-steps' costs in one wait (one round trip per chunk).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import List, Optional

import numpy as np

from rlvla3.core.config_checks import check

from .config import LatencyConfig


def _load_profile(path: str, prefix: str) -> tuple:
    check(os.path.isfile(path), f"{prefix}.profile: file not found: {path!r}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{prefix}.profile: cannot read JSON from {path!r}: {exc}") from exc
    out = []
    for key in ("step_ms", "reset_ms"):
        vals = data.get(key) if isinstance(data, dict) else None
        check(isinstance(vals, list) and bool(vals), f"{prefix}.profile: {path!r} needs a non-empty list {key!r}")
        try:
            arr = [float(v) for v in vals]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{prefix}.profile: {key!r} in {path!r} must be numbers") from exc
        check(min(arr) >= 0, f"{prefix}.profile: {key!r} in {path!r} has negative values")
        out.append(arr)
    return out[0], out[1]


class LatencyModel:
    """Draws per-step / per-reset costs (seconds) and spends them."""

    def __init__(self, config: Optional[LatencyConfig] = None, seed: Optional[int] = None,
                 prefix: str = "env.latency"):
        self.config = (config or LatencyConfig()).validate(prefix)
        self._step_vals: List[float] = []
        self._reset_vals: List[float] = []
        if self.config.kind == "replay":
            self._step_vals, self._reset_vals = _load_profile(self.config.profile, prefix)
        self.seed(seed)

    def seed(self, seed: Optional[int] = None) -> None:
        self._rng = np.random.default_rng(seed)
        # replay starts at a seed-dependent offset so parallel env slots are decorrelated
        self._step_i = int(self._rng.integers(len(self._step_vals))) if self._step_vals else 0
        self._reset_i = int(self._rng.integers(len(self._reset_vals))) if self._reset_vals else 0

    @property
    def enabled(self) -> bool:
        c = self.config
        return c.kind == "replay" or (c.kind != "none" and (c.step_ms > 0 or c.reset_ms > 0))

    def _draw(self, mean_ms: float) -> float:
        c = self.config
        if c.kind == "none" or mean_ms <= 0:
            return 0.0
        if c.kind == "constant" or c.sigma == 0:
            ms = mean_ms
        else:  # lognormal with E[X] = mean_ms: E = exp(mu + sigma^2/2)
            mu = math.log(mean_ms) - 0.5 * c.sigma * c.sigma
            ms = float(self._rng.lognormal(mu, c.sigma))
        return ms * c.slow_factor / 1000.0

    def step_cost_s(self) -> float:
        if self.config.kind == "replay":
            ms = self._step_vals[self._step_i]
            self._step_i = (self._step_i + 1) % len(self._step_vals)
            return ms * self.config.slow_factor / 1000.0
        return self._draw(self.config.step_ms)

    def reset_cost_s(self) -> float:
        if self.config.kind == "replay":
            ms = self._reset_vals[self._reset_i]
            self._reset_i = (self._reset_i + 1) % len(self._reset_vals)
            return ms * self.config.slow_factor / 1000.0
        return self._draw(self.config.reset_ms)

    def spend(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.config.mode == "sleep":
            time.sleep(seconds)
        else:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
