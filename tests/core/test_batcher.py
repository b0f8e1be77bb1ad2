import pytest

from rlvla3.core.batcher import DynamicBatcher


def test_fires_on_size_with_fifo_order():
    b = DynamicBatcher(max_batch=4, max_wait_s=1.0)
    for i in range(3):
        b.add(f"r{i}", 1, now=0.0)
    assert not b.ready(0.0)
    b.add("r3", 1, now=0.1)
    assert b.ready(0.1)
    assert b.pop_batch(0.1) == ["r0", "r1", "r2", "r3"]
    assert b.stats.fired_by_size == 1 and b.stats.fired_by_timeout == 0
    assert len(b) == 0 and b.pending_samples == 0


def test_fires_on_timeout_of_oldest():
    b = DynamicBatcher(max_batch=8, max_wait_s=0.005)
    b.add("a", 2, now=10.0)
    b.add("b", 1, now=10.004)
    assert not b.ready(10.0049)
    assert b.time_until_ready(10.002) == pytest.approx(0.003)
    assert b.ready(10.005)
    assert b.pop_batch(10.005) == ["a", "b"]
    assert b.stats.fired_by_timeout == 1
    assert b.stats.batch_sizes == [3]
    assert sorted(round(d, 6) for d in b.stats.queue_delays_s) == [0.001, 0.005]


def test_never_splits_requests_and_keeps_order():
    b = DynamicBatcher(max_batch=5, max_wait_s=0.0)
    b.add("a", 3, 0.0)
    b.add("b", 3, 0.0)  # does not fit beside a: waits for the next batch, whole
    b.add("c", 2, 0.0)
    assert b.pop_batch(0.0) == ["a"]  # c would fit but must not overtake b
    assert b.pop_batch(0.0) == ["b", "c"]
    assert b.stats.batch_sizes == [3, 5]


def test_oversized_request_is_served_alone():
    b = DynamicBatcher(max_batch=4, max_wait_s=1.0)
    b.add("big", 6, 0.0)
    b.add("small", 1, 0.0)
    assert b.ready(0.0)
    assert b.pop_batch(0.0) == ["big"]
    assert b.pending_samples == 1


def test_empty_and_bad_arguments():
    b = DynamicBatcher(4, 0.01)
    assert not b.ready(5.0) and b.time_until_ready(5.0) is None and b.pop_batch(5.0) == []
    with pytest.raises(ValueError):
        DynamicBatcher(0, 0.01)
    with pytest.raises(ValueError):
        b.add("x", 0, 0.0)


def test_summary_reports_percentiles():
    b = DynamicBatcher(2, 0.0)
    for t in range(10):
        b.add(t, 1, now=float(t))
        b.add(t, 1, now=float(t) + 0.5)
        b.pop_batch(float(t) + 0.5)
    s = b.stats.summary()
    assert s["batches"] == 10 and s["mean_batch"] == 2.0
    assert s["queue_ms_p50"] == pytest.approx(250.0)


def test_late_firing_counts_from_the_deadline_or_from_when_the_server_was_free():
    b = DynamicBatcher(max_batch=4, max_wait_s=0.005)
    b.add("a", 1, now=1.000)  # deadline 1.005; the server free since 0.9: 2 ms late
    b.pop_batch(1.007, free_since=0.9)
    b.add("b", 1, now=2.000)  # deadline 2.005, but the server busy until 2.010: 1 ms after that
    b.pop_batch(2.011, free_since=2.010)
    for r in "cdef":  # fired by size: no lateness to speak of
        b.add(r, 1, now=3.0)
    b.pop_batch(3.0, free_since=2.5)
    b.add("g", 1, now=4.0)  # no free_since: not counted
    b.pop_batch(4.006)
    assert [round(x, 6) for x in b.stats.late_s] == [0.002, 0.001]
    s = b.stats.summary()
    assert s["late_ms_mean"] == pytest.approx(1.5) and s["late_ms_p50"] == pytest.approx(1.5)
    assert "late_ms_mean" not in DynamicBatcher(4, 0.005).stats.summary()

def _serve(max_wait_s, arrivals, forward_s):
    """AsyncGenerator._serve's rule on a fake clock: one forward at a time (requests keep queueing
    during it); a batch fires once the batcher is ready and the generator is free. Returns the
    batches as lists of arrival times, and each request's wait in the batcher."""
    b = DynamicBatcher(64, max_wait_s)
    todo, now, batches = sorted(arrivals), 0.0, []
    while todo or len(b):
        if not len(b):
            now = max(now, todo[0])
        while todo and todo[0] <= now:
            t = todo.pop(0)
            b.add(t, 1, t)
        fire_at = now + b.time_until_ready(now)
        if todo and todo[0] < fire_at:  # an arrival comes first
            now = todo[0]
            continue
        now = fire_at
        batches.append(b.pop_batch(now))
        now += forward_s(len(batches[-1]))  # busy: arrivals meanwhile wait in the queue
    return batches, b.stats.queue_delays_s


def test_max_wait_zero_is_continuous_batching():
    """max_wait 0: a request that finds the generator idle goes at once; those that arrive during a
    forward form the next batch, fired the moment the forward ends."""
    batches, delays = _serve(0.0, [0.0, 0.001, 0.002, 0.0035, 0.010], lambda n: 0.004)
    assert batches == [[0.0], [0.001, 0.002, 0.0035], [0.010]]
    assert delays == pytest.approx([0.0, 0.003, 0.002, 0.0005, 0.0])


def test_max_wait_zero_waits_less_than_a_timeout_at_a_steady_stream():
    """A request every 2 ms, a 3 ms forward (the 2-core VM's scale): continuous batching still
    batches (several per forward), and a request waits a fraction of what a 5 ms timeout costs."""
    arrivals = [k * 0.002 for k in range(500)]
    cont, d_cont = _serve(0.0, arrivals, lambda n: 0.003)
    timed, d_timed = _serve(0.005, arrivals, lambda n: 0.003)
    mean = lambda xs: sum(xs) / len(xs)
    assert mean(d_cont) == pytest.approx(0.001, abs=1e-4)  # half the time a forward is running
    assert mean(d_timed) == pytest.approx(0.003, abs=1e-4)
    assert 500 / len(cont) == pytest.approx(1.5, abs=0.05)  # batches of 1 and 2 in turn
    assert 500 / len(timed) == pytest.approx(3.0, abs=0.05)  # more CPU per sample on a CPU policy
