"""Per-process CPU accounting of a benchmark window (Linux /proc)."""

import os
import subprocess
import sys
import time

import pytest

from rlvla3.bench.cpu_accounting import CpuWindow, cores_by_role, process_cpu_s, role_of, snapshot

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")


def test_roles_come_from_ray_process_names():
    assert role_of("ray::Trainer.update", 10, driver_pid=1) == "Trainer"
    assert role_of("ray::AsyncGenerator", 10, driver_pid=1) == "AsyncGenerator"
    assert role_of("ray::IDLE", 10, driver_pid=1) == "ray idle workers"
    assert role_of("ray::DashboardAgent", 10, driver_pid=1) == "ray daemons"
    assert role_of("/venv/lib/ray/core/src/ray/raylet/raylet --node=...", 10, driver_pid=1) == "ray daemons"
    assert role_of("python -m rlvla3 bench", 7, driver_pid=7) == "driver"
    assert role_of("bash", 10, driver_pid=1) == "other"


def test_cores_by_role_sums_processes_alive_in_both_snapshots():
    before = {1: ("a", 10.0), 2: ("a", 5.0), 3: ("b", 1.0)}
    after = {1: ("a", 12.0), 2: ("a", 6.0), 4: ("b", 100.0)}  # 3 ended, 4 started: neither counted
    assert cores_by_role(before, after, seconds=2.0) == {"a": 1.5}


def test_a_busy_child_shows_as_about_one_core():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        t0 = time.time()
        win = CpuWindow(t0, t0 + 1.0)
        time.sleep(1.2)
        out = win.result()
        assert out is not None and out["machine_cores"] == os.cpu_count()
        own = snapshot()[child.pid]
        assert own[0] == "other" and own[1] == pytest.approx(process_cpu_s(child.pid), abs=0.5)
        # a spinning process gets most of a core even on a loaded 2-core machine
        assert out["by_role"]["other"] >= 0.4 and out["machine_busy_cores"] >= 0.4
        # stolen time is reported apart from busy time: together they fit in the machine
        assert 0.0 <= out["machine_steal_cores"] and out["machine_busy_cores"] + out["machine_steal_cores"] \
            <= out["machine_cores"] + 0.1
    finally:
        child.kill()
        child.wait()


def test_a_window_stopped_before_it_starts_reports_nothing():
    win = CpuWindow(time.time() + 60, time.time() + 120)
    assert win.result() is None
