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
