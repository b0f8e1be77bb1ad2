import pytest

from rlvla3.core.router import Router


def test_round_robin_cycles_from_staggered_start():
    r = Router("round_robin", 3, worker_id=1)
    assert [r.pick(0, [0, 0, 0]) for _ in range(4)] == [1, 2, 0, 1]


def test_least_loaded_picks_minimum_outstanding():
    r = Router("least_loaded", 3)
    assert r.pick(0, [2, 0, 1]) == 1
    assert r.pick(0, [1, 1, 0]) == 2


def test_shard_is_fixed_per_slot():
    r = Router("shard", 2, worker_id=3)
    assert [r.pick(s, [9, 0]) for s in (0, 1, 2, 0)] == [1, 0, 1, 1]


def test_bad_router():
    with pytest.raises(ValueError, match="generator.router"):
        Router("random", 2)
