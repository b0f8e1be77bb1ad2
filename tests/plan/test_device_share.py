"""A trainer time-slicing its GPU with the generators (plan/device_share.py), closed-form cases."""

import pytest

from rlvla3.plan.device_share import IN_PROCESS_SLOWDOWN, SharedDevice
from rlvla3.plan.events import Clock


def _trainer_end(work_s, forwards, slowdown=1.0):
    """forwards: (start s, end s) of forward passes; returns when a trainer job of work_s, started at 0, ends."""
    clock, ends = Clock(), []
    dev = SharedDevice(clock, slowdown)
    for a, b in forwards:
        clock.at(a, dev.forward_started)
        clock.at(b, dev.forward_ended)
    dev.run(work_s, lambda: ends.append(clock.now))
    clock.run(100.0)
    return ends[0]


def test_alone_the_trainer_runs_at_its_own_speed():
    assert _trainer_end(1.0, []) == pytest.approx(1.0)


def test_beside_one_forward_the_whole_time_it_takes_twice_as_long():
    assert _trainer_end(1.0, [(0.0, 10.0)]) == pytest.approx(2.0)


def test_a_forward_that_ends_frees_the_device():
    # half speed for 0.5 s (0.25 s of work), then 0.75 s alone
    assert _trainer_end(1.0, [(0.0, 0.5)]) == pytest.approx(1.25)


def test_two_forwards_at_once_leave_it_a_third():
    assert _trainer_end(1.0, [(0.0, 10.0), (0.0, 10.0)]) == pytest.approx(3.0)


def test_in_one_process_a_forward_slows_the_trainer_by_its_slowdown_only():
    k = IN_PROCESS_SLOWDOWN
    assert _trainer_end(1.0, [(0.0, 10.0)], k) == pytest.approx(1.0 + k)
    # the run it comes from (gpu-dec07g full@host): forwards running 0.76 of the time, a micro-batch
    # at 203 ms alone took 315 ms
    assert 0.76 / (1 + k) + 0.24 == pytest.approx(203 / 315, abs=0.002)


def test_in_the_pipeline_a_busy_generator_doubles_the_trainer_s_busy_time(make_profile):
    """Generator-bound `full`, one slot: a 10-ms forward and a 0.1-ms chunk per decision (99 samples/s,
    the generator busy 0.99 of the time); a trainer of 500 samples/s alone is busy 0.2 of the time,
    twice that when it shares the GPU; the rate stays the generator's."""
    from rlvla3.plan.model import predict

    for shares, hosts, want in ((False, False, 0.2), (True, False, 0.4), (True, True, 0.2 * (1 + IN_PROCESS_SLOWDOWN))):
        p = make_profile(chunk_ms=0.1, act_ms=10.0, slots=1, rate=500.0, gb=8, mb=2, epochs=1)
        p.layout.trainer_shares_gpu, p.layout.trainer_hosts_generator = shares, hosts
        r = predict(p, "full", seconds=20, warmup=3)
        assert r.generator_utilization[0] == pytest.approx(0.99, abs=0.01)
        assert r.trained_samples_per_s == pytest.approx(99.0, rel=0.03)
        assert r.trainer_utilization == pytest.approx(want * 0.99, abs=0.01)
