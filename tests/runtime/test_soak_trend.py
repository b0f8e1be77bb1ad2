"""tools/soak.py's memory trend: slope in MB per hour and the two halves' means."""

import importlib.util
import os

import pytest

spec = importlib.util.spec_from_file_location(
    "soak", os.path.join(os.path.dirname(__file__), "..", "..", "tools", "soak.py"))
soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soak)


def test_trend_of_a_steady_rise_and_of_a_flat_series():
    rising = [(t, 100.0 + t / 360.0) for t in range(0, 3600, 20)]  # +10 MB per hour
    tr = soak.trend(rising)
    assert tr["slope_mb_per_h"] == pytest.approx(10.0) and tr["slope_second_half_mb_per_h"] == pytest.approx(10.0)
    assert tr["mean_second_half_mb"] - tr["mean_first_half_mb"] == pytest.approx(5.0, abs=0.1)
    flat = [(t, 200.0 + (1 if t % 40 else -1)) for t in range(0, 3600, 20)]  # noise, no trend
    assert abs(soak.trend(flat)["slope_mb_per_h"]) < 0.5
    assert soak.trend(rising[:3]) == {}  # too few samples to say
