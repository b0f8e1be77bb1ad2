"""Processor sharing of the cores (plan/cpu.py) against closed-form cases."""

import json

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


def test_the_pipeline_trainer_gets_the_cores_left(make_profile):
    """`full`, trainer-bound, 100 samples/s alone on the CPU: half a core taken by other work halves
    it; on two cores the same load leaves it a whole core."""
    from rlvla3.plan.cpu import CpuCosts
    from rlvla3.plan.model import predict

    for cores, want in ((1, 50.0), (2, 100.0)):
        p = make_profile(chunk_ms=1.0, slots=8, rate=100.0, gb=32, mb=8, epochs=1)
        p.cpu = CpuCosts(cores, 0.5, trainer_on_cpu=True, trainer_ms_per_sample=10.0)
        r = predict(p, "full", seconds=20, warmup=3)
        assert r.trained_samples_per_s == pytest.approx(want, rel=0.05)
        assert r.trainer_utilization == pytest.approx(1.0, abs=0.02)


def test_cpu_costs_per_unit_of_work_from_the_accounting():
    from rlvla3.plan.cpu_calibration import cpu_costs
    from rlvla3.plan.profile import GeneratorCosts

    m = {"env_steps_per_s": 400.0, "trained_samples_per_s": 50.0, "window_s": 30.0,
         "generator": {"batches": 3000, "mean_batch": 1.0},
         "cpu": {"machine_busy_cores": 1.5, "machine_steal_cores": 0.1,
                 "by_role": {"Trainer": 0.5, "EnvWorker": 0.2, "driver": 0.1, "AsyncGenerator": 0.3,
                             "ray daemons": 0.05}}}
    bench = {"machine": {"cpus": 2}, "bounds": {"trainer_samples_per_s": 200.0}, "modes": {"full": m}}
    c, per_request, _ = cpu_costs(bench, "full", True, 4.0, 1, GeneratorCosts({1: 2.0, 8: 4.0}))
    assert c.trainer_ms_per_sample == pytest.approx(10.0)  # 0.5 core / 50 samples/s
    assert c.env_ms_per_decision == pytest.approx(2.0)  # 0.2 core / 100 decisions/s
    assert c.driver_ms_per_decision == pytest.approx(1.0)
    assert c.background_cores == pytest.approx(1.5 - 1.1 + 0.1)  # busy minus modelled, plus steal
    assert per_request == pytest.approx(3.0 - 2.0)  # 0.3 core x 30 s / 3000 batches, less the forward


def test_the_generators_span_cpu_splits_its_batch_into_inside_and_outside_the_forward():
    """With the span's own CPU recorded (2.5 ms per batch of 2, forward alone 2.29 ms at 2), the
    profile's per-batch overhead is the rest of the span (0.21 ms) and the CPU per request is what
    the process spent outside it ((3.0 - 2.5) / 2); without it, as before."""
    from rlvla3.plan.cpu_calibration import cpu_costs, span_overhead_ms
    from rlvla3.plan.profile import GeneratorCosts

    def bench(g):
        m = {"env_steps_per_s": 400.0, "trained_samples_per_s": 50.0, "window_s": 30.0, "generator": g,
             "cpu": {"machine_busy_cores": 1.5, "by_role": {"Trainer": 0.5, "AsyncGenerator": 0.3}}}
        return {"machine": {"cpus": 2}, "bounds": {"trainer_samples_per_s": 200.0}, "modes": {"full": m}}

    gen = GeneratorCosts({1: 2.0, 8: 4.0}, overhead_ms=0.5)
    recorded = bench({"batches": 3000, "mean_batch": 2.0, "forward_cpu_ms_mean": 2.5})
    assert span_overhead_ms(recorded, "full", gen) == pytest.approx(2.5 - (2.0 + 2.0 / 7))
    assert span_overhead_ms(recorded, "full +stragglers", gen) == pytest.approx(2.5 - (2.0 + 2.0 / 7))
    assert cpu_costs(recorded, "full", True, 4.0, 1, gen)[1] == pytest.approx((3.0 - 2.5) / 2)
    older = bench({"batches": 3000, "mean_batch": 2.0})
    assert span_overhead_ms(older, "full", gen) is None
    assert cpu_costs(older, "full", True, 4.0, 1, gen)[1] == pytest.approx((3.0 - (2.0 + 2.0 / 7 + 0.5)) / 2)


def test_libero_resets_of_a_session_start_are_not_the_pipeline_s():
    """The data behind own-mode resets: gpu-libero-oft/run1's sync window held only 20-s resets,
    its `full` resets took ~2 s."""
    from rlvla3.plan.from_bench import bench_spans, mode_resets

    path = "docs/benchmarks/gpu-libero-oft/run1/bench.json"
    with open(path) as f:
        spans = bench_spans(path, json.load(f))
    assert mode_resets(spans, "sync").median_ms > 15000
    assert mode_resets(spans, "full").median_ms < 2500


def test_weights_share_a_core_in_proportion():
    """Weights 2:1 on one core: 2/3 and 1/3 of it; the light job ends at 3 s, the heavy one at 1.5 s."""
    clock = Clock()
    pool = CpuPool(clock, 1)
    ends = {}
    pool.run(1.0, lambda: ends.__setitem__("heavy", clock.now), weight=2.0)
    pool.run(1.0, lambda: ends.__setitem__("light", clock.now), weight=1.0)
    clock.run(100.0)
    # heavy: 1 s at 2/3 -> 1.5 s; light has had 0.5 s by then, its last 0.5 s alone -> 2.0 s
    assert ends == pytest.approx({"heavy": 1.5, "light": 2.0})


def test_no_job_runs_faster_than_one_core():
    """Weights 10:1:1 on two cores: the heavy job gets one core (done at 1 s), the other two share
    the second (half done), then have a core each (done at 1.5 s)."""
    assert _ends_weighted(2, [(1.0, 10.0), (1.0, 1.0), (1.0, 1.0)]) == pytest.approx([1.0, 1.5, 1.5])


def _ends_weighted(cores, jobs):
    clock = Clock()
    pool = CpuPool(clock, cores)
    ends = {}
    for i, (w, weight) in enumerate(jobs):
        pool.run(w, lambda i=i: ends.__setitem__(i, clock.now), weight=weight)
    clock.run(100.0)
    return [ends[i] for i in range(len(jobs))]
