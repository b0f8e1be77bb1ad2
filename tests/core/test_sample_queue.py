"""The driver's sample FIFO: exact-size takes, and stale samples replaced by the next ones."""

import numpy as np
import pytest

from rlvla3.core.sample_queue import SampleQueue
from rlvla3.core.types import SampleBatch


def _batch(ids, versions=None):
    n = len(ids)
    return SampleBatch(np.zeros((n, 2, 2, 3), np.uint8), np.zeros((n, 1), np.float32), ["x"] * n,
                       np.zeros((n, 3), np.int64), np.zeros((n, 3), np.float32), np.zeros(n, np.float32),
                       np.zeros(n, np.float32), np.zeros(n, np.float32),
                       np.asarray(versions if versions is not None else [5] * n, np.int64), np.asarray(ids, np.int64))


def _keep_version_at_least(v):
    return lambda b: b.take(np.flatnonzero(b.versions >= v))


def test_take_splits_parts_and_keeps_the_rest_in_order():
    q = SampleQueue()
    q.put(_batch([0, 1, 2]))
    q.put(_batch([3, 4]))
    assert q.take(4).sample_ids.tolist() == [0, 1, 2, 3]
    assert q.size == 1 and q.take(1).sample_ids.tolist() == [4]
    with pytest.raises(ValueError, match="cannot take"):
        q.take(1)


def test_take_fresh_replaces_dropped_samples_with_the_next_ones():
    q = SampleQueue()
    q.put(_batch(range(6), versions=[5, 3, 5, 3, 5, 5]))  # ids 1 and 3 are stale
    q.put(_batch(range(6, 10)))
    kept = q.take_fresh(4, _keep_version_at_least(4))
    assert kept.sample_ids.tolist() == [0, 2, 4, 5]  # exactly 4, in queue order
    assert q.size == 4 and q.take(4).sample_ids.tolist() == [6, 7, 8, 9]


def test_take_fresh_gives_back_what_it_took_when_the_queue_runs_short():
    q = SampleQueue()
    q.put(_batch(range(4), versions=[5, 3, 5, 5]))
    assert q.take_fresh(4, _keep_version_at_least(4)) is None
    assert q.size == 3 and q.total_put == 4  # the 3 fresh ones wait at the front; put_front adds no production
    q.put(_batch([10, 11]))
    assert q.take_fresh(4, _keep_version_at_least(4)).sample_ids.tolist() == [0, 2, 3, 10]
    assert q.size == 1


def test_take_fresh_when_everything_is_stale_empties_the_queue():
    q = SampleQueue()
    q.put(_batch(range(5), versions=[1] * 5))
    assert q.take_fresh(2, _keep_version_at_least(4)) is None
    assert q.size == 1  # two rounds of 2 dropped; the last sample cannot make a batch of 2 alone
