"""Lightweight metrics helpers (stdlib + numpy): percentiles, integer histograms (e.g.
staleness in policy versions) and wall-clock timers (the schedules' `time/*` metrics).

Kept dependency-free so every worker (rollout, trainer, env) can log the same way
and the driver can merge their summaries.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np


def percentiles(values, qs=(50, 95, 99)) -> dict:
    """{"p50": ..., ...} with linear interpolation; NaN for no values."""
    a = np.asarray(values, dtype=np.float64).ravel()
    return {f"p{q:g}": float(np.percentile(a, q)) if a.size else float("nan") for q in qs}


class Histogram:
    """Counts of integer values, e.g. how many samples were k policy versions stale."""

    def __init__(self):
        self._counts: Counter = Counter()

    def add(self, v, n: int = 1) -> None:
        iv = int(v)
        if iv != v:
            raise ValueError(f"Histogram takes integer values, got {v!r}")
        self._counts[iv] += n

    def merge(self, other: "Histogram") -> None:
        self._counts.update(other._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def mean(self) -> float:
        t = self.total
        return sum(k * c for k, c in self._counts.items()) / t if t else 0.0

    def as_dict(self) -> dict:
        """{value: count} sorted by value."""
        return {k: self._counts[k] for k in sorted(self._counts)}


class Timer:
    """Context manager measuring one block with perf_counter.

    Standalone (``with Timer() as t: ...; t.elapsed``) or bound to a
    ``Timers`` sink, to which it adds its elapsed time under ``name`` on exit.
    """

    def __init__(self, name: str | None = None, sink: "Timers | None" = None):
        self.name = name
        self.sink = sink
        self.elapsed = 0.0
        self._t0 = 0.0

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        self.elapsed = time.perf_counter() - self._t0
        # record even if the block raised, so slow failures stay visible
        if self.sink is not None and self.name is not None:
            self.sink.record(self.name, self.elapsed)
        return False


class Timers:
    """Accumulates wall time per name: ``with timers("env_step"): ...``."""

    def __init__(self):
        self._total: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def __call__(self, name: str) -> Timer:
        return Timer(name, self)

    def record(self, name: str, seconds: float) -> None:
        self._total[name] = self._total.get(name, 0.0) + float(seconds)
        self._count[name] = self._count.get(name, 0) + 1

    def summary(self) -> dict:
        """{name: {"total_s", "count", "mean_ms"}}."""
        return {n: {"total_s": self._total[n], "count": self._count[n],
                    "mean_ms": 1000.0 * self._total[n] / self._count[n]}
                for n in self._total}
