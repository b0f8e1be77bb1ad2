"""Processor sharing of the cores (plan/cpu.py) against closed-form cases."""

import pytest

from rlvla3.plan.cpu import CpuPool
from rlvla3.plan.events import Clock, Meter, Server


def _ends(cores, jobs, background=0.0):
    """jobs: (arrival s, work s); returns each job's completion time."""
    clock = Clock()
    pool = CpuPool(clock, cores, background)
    ends = {}
    for i, (t, w) in enumerate(jobs):
        clock.at(t, pool.run, w, lambda i=i: ends.__setitem__(i, clock.now))
    clock.run(100.0)
    return [ends[i] for i in range(len(jobs))]


def test_two_cpu_bound_jobs_on_one_core_each_take_twice_as_long():
    assert _ends(1, [(0, 1.0), (0, 1.0)]) == pytest.approx([2.0, 2.0])


def test_two_jobs_on_two_cores_run_at_full_speed():
    assert _ends(2, [(0, 1.0), (0, 1.0)]) == pytest.approx([1.0, 1.0])


def test_three_jobs_on_two_cores_progress_at_two_thirds():
    assert _ends(2, [(0, 1.0)] * 3) == pytest.approx([1.5] * 3)


def test_a_finished_job_frees_its_share():
    # 1 s and 2 s on one core: both at 1/2 until t=2 (the short one done), then the long one alone.
    assert _ends(1, [(0, 1.0), (0, 2.0)]) == pytest.approx([2.0, 3.0])


def test_a_late_arrival_shares_from_its_arrival():
    # job 0 runs alone for 1 s (1 s left); from t=1 both at 1/2: job 1 (0.5 s) ends at 2, job 0 at 2.5.
    assert _ends(1, [(0, 2.0), (1.0, 0.5)]) == pytest.approx([2.5, 2.0])


def test_background_load_takes_its_cores():
    assert _ends(1, [(0, 1.0)], background=0.5) == pytest.approx([2.0])


def test_a_process_runs_its_jobs_one_at_a_time_on_one_core_at_most():
    """Two processes of two 1-s jobs each on one core: 2, 2, 4, 4. One process on two cores: 1, 2."""
    for cores, procs, want in ((1, 2, [2.0, 2.0, 4.0, 4.0]), (2, 1, [1.0, 2.0])):
        clock = Clock()
        pool = CpuPool(clock, cores)
        ends = []
        for _ in range(procs):
            s = Server(clock, Meter(0, 100), pool=pool)
            for _ in range(2):
                s.submit(1.0, lambda: ends.append(clock.now))
        clock.run(100.0)
        assert sorted(ends) == pytest.approx(want)
        assert pool.work_done_s == pytest.approx(2.0 * procs)
