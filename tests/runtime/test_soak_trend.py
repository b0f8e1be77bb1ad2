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


def test_heap_trends_skip_warmup_and_pick_the_rows_right_after_a_trim():
    t0 = 1000.0
    rows = [{"t": t0 + 10 * k, "updates": 10 * k, "anon_mb": 300.0 + (80 if k % 5 else 0) + k / 10,
             "heap_in_use_mb": 150.0, "heap_free_mb": 50.0 + k, "python_objects": 1000} for k in range(1, 80)]
    out = soak.heap_trends(rows, t0, warmup_s=100, trim_every=50)
    post = out["post_trim_anon_mb"]  # updates 100, 150, ...: the 300 MB baseline only
    assert post["first"] == pytest.approx(301.0) and post["last"] == pytest.approx(307.5)
    assert out["heap_in_use_mb"]["slope_mb_per_h"] == pytest.approx(0.0)
    assert out["heap_free_mb"]["slope_mb_per_h"] == pytest.approx(360.0)  # +1 MB per 10 s
    assert out["anon_mb"]["first"] == pytest.approx(301.0) and out["anon_mb"]["last"] == pytest.approx(387.9)


def test_cpu_windows_use_the_snapshots_inside_each_window():
    snaps = [(10, {1: ("Trainer", 0.0), 2: ("EnvWorker", 0.0)}, 5.0, 100.0, 9.0),
             (60, {1: ("Trainer", 25.0), 2: ("EnvWorker", 10.0)}, 6.0, 110.0, 11.0),
             (110, {1: ("Trainer", 50.0), 2: ("EnvWorker", 20.0)}, 7.0, 130.0, 10.0)]
    out = soak.cpu_windows(snaps, [{"from_s": 0, "to_s": 100}, {"from_s": 100, "to_s": 200}])
    assert len(out) == 1  # the second window holds one snapshot only
    assert out[0]["cores_by_role"] == {"Trainer": 0.5, "EnvWorker": 0.2}
    assert out[0]["calibration_ms_median"] == 6.0
    assert out[0]["steal_cores"] == pytest.approx(0.2)  # 10 s stolen between the snapshots at 10 s and 60 s
    assert out[0]["calibration_torch_ms_median"] == 11.0
    assert soak.calibrate_ms(1000) >= 0.0 and soak.calibrate_torch_ms() > 0.0
