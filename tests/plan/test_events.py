"""The discrete-event core against closed-form queues."""

import numpy as np
import pytest

from rlvla3.plan.events import Clock, Meter, Server


def test_single_stage_at_fixed_latency_runs_at_one_over_latency():
    clock = Clock()
    server = Server(clock, Meter(10.0, 110.0))
    done = []

    def again():  # a closed loop: the next job as soon as one ends
        done.append(clock.now)
        server.submit(0.025, again)

    server.submit(0.025, again)
    clock.run(110.0)
    in_window = [t for t in done if 10.0 <= t <= 110.0]
    assert len(in_window) / 100.0 == pytest.approx(1 / 0.025, rel=1e-3)  # 40 jobs/s
    assert server.meter.utilization() == pytest.approx(1.0, abs=0.025 / 100)  # the job running at the end is not counted


def test_md1_queue_matches_pollaczek_khinchine():
    """Poisson arrivals (lambda = 30/s), deterministic service D = 20 ms: rho = 0.6,
    mean wait in queue W = rho D / (2 (1 - rho)) = 15 ms."""
    rng = np.random.default_rng(1)
    clock, lam, d = Clock(), 30.0, 0.020
    server = Server(clock, Meter(50.0, 4050.0))
    waits = []
    t = 0.0
    for gap in rng.exponential(1 / lam, size=int(lam * 4100)):
        t += gap
        clock.at(t, lambda t_arr=t: server.submit(d, lambda: waits.append(clock.now - d - t_arr)))
    clock.run(4100.0)
    assert np.mean(waits) == pytest.approx(0.6 * d / (2 * 0.4), rel=0.05)
    assert server.meter.utilization() == pytest.approx(0.6, abs=0.01)


def test_ties_run_in_scheduling_order_and_meter_clips_to_window():
    clock, seen = Clock(), []
    for i in range(3):
        clock.at(1.0, seen.append, i)
    clock.run(2.0)
    assert seen == [0, 1, 2]
    m = Meter(1.0, 3.0)
    m.busy(0.0, 1.5)
    m.busy(2.5, 9.0)
    assert m.busy_s == pytest.approx(1.0)
    assert m.utilization() == pytest.approx(0.5)
