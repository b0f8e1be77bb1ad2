"""Hand-computed checks for rlvla3.core.stats."""
import math

import pytest

import rlvla3.core.stats as stats_mod
from rlvla3.core.stats import Histogram, Timer, Timers, percentiles


def test_percentiles():
    # linear interpolation on [1,2,3,4]: p50 at idx 1.5 -> 2.5; p95 at idx 2.85 -> 3.85
    p = percentiles([4, 1, 3, 2], qs=(50, 95))
    assert p == {"p50": pytest.approx(2.5), "p95": pytest.approx(3.85)}
    p = percentiles(list(range(101)))
    assert p == {"p50": pytest.approx(50.0), "p95": pytest.approx(95.0), "p99": pytest.approx(99.0)}
    assert math.isnan(percentiles([])["p50"])


def test_histogram():
    h = Histogram()
    for v in [0, 1, 1, 3]:
        h.add(v)
    assert h.as_dict() == {0: 1, 1: 2, 3: 1}
    assert h.total == 4 and h.mean() == pytest.approx(5 / 4)
    g = Histogram()
    g.add(1)
    g.add(2, n=3)
    h.merge(g)
    assert h.as_dict() == {0: 1, 1: 3, 2: 3, 3: 1}
    assert list(h.as_dict()) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        h.add(1.5)


def test_timers_deterministic(monkeypatch):
    ticks = iter([1.0, 1.5, 2.0, 2.25, 10.0, 10.125])
    monkeypatch.setattr(stats_mod.time, "perf_counter", lambda: next(ticks))
    timers = Timers()
    with timers("env_step"):
        pass
    with timers("env_step"):
        pass
    with timers("train"):
        pass
    s = timers.summary()
    assert s["env_step"] == {"total_s": pytest.approx(0.75), "count": 2, "mean_ms": pytest.approx(375.0)}
    assert s["train"] == {"total_s": pytest.approx(0.125), "count": 1, "mean_ms": pytest.approx(125.0)}


def test_timer_records_on_exception_and_standalone(monkeypatch):
    ticks = iter([0.0, 0.25, 5.0, 5.5])
    monkeypatch.setattr(stats_mod.time, "perf_counter", lambda: next(ticks))
    timers = Timers()
    with pytest.raises(RuntimeError):
        with timers("boom"):
            raise RuntimeError("x")
    assert timers.summary()["boom"]["total_s"] == pytest.approx(0.25)
    with Timer() as t:
        pass
    assert t.elapsed == pytest.approx(0.5)
