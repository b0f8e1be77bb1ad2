"""Lightweight metrics helpers (stdlib + numpy): online stats, percentiles,
integer histograms (e.g. staleness in policy versions) and wall-clock timers.

Kept dependency-free so every worker (rollout, trainer, env) can log the same way
and the driver can merge their summaries.
"""
from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np


class RunningStats:
    """Online count/mean/var/min/max (Welford), numerically stable for long runs."""

    def __init__(self):
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the running mean
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        x = float(x)
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (x - self.mean)
        self.min = min(self.min, x)
        self.max = max(self.max, x)

    def update(self, xs) -> None:
        for x in np.asarray(xs, dtype=np.float64).ravel():
            self.add(x)

    def merge(self, other: "RunningStats") -> None:
        """Combine with another accumulator (Chan et al. parallel formula)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self._m2 = other.count, other.mean, other._m2
            self.min, self.max = other.min, other.max
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self._m2 += other._m2 + delta * delta * self.count * other.count / n
        self.count = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def var(self) -> float:
        """Population variance (ddof=0); 0 when fewer than 2 samples."""
        return self._m2 / self.count if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def as_dict(self) -> dict:
        empty = self.count == 0
        return {"count": self.count, "mean": self.mean, "std": self.std,
                "min": 0.0 if empty else self.min, "max": 0.0 if empty else self.max}


def percentiles(values, qs=(50, 95, 99)) -> dict:
    """{"p50": ..., ...} with linear interpolation; NaN for no values."""
    a = np.asarray(values, dtype=np.float64).ravel()
    out = {}
    for q in qs:
        key = f"p{q:g}"
        out[key] = float(np.percentile(a, q)) if a.size else float("nan")
    return out


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

    def reset(self) -> None:
        self._total.clear()
        self._count.clear()
