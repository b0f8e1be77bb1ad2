import numpy as np
import pytest

from rlvla3.core.experience_stream import StalenessController


def test_admission_window_grows_with_version():
    c = StalenessController(eta=1, global_batch=10)
    assert c.capacity() == 20
    assert c.try_admit(8) and c.try_admit(8)
    assert not c.try_admit(8)  # 24 > 20: producers throttled
    assert c.counters.refused == 1
    c.set_version(1)  # trainer consumed a batch: window slides by B
    assert c.try_admit(8)
    assert c.reserved == 24


def test_refund_of_unused_reservation_reopens_budget():
    c = StalenessController(eta=0, global_batch=10)
    assert c.try_admit(10)
    assert not c.try_admit(5)
    c.finish(reserved=10, produced=4)  # episode ended early
    assert c.reserved == 4
    assert c.try_admit(5)
    c.finish(reserved=5, produced=7)  # a group that ran longer than reserved is charged the extra
    assert c.reserved == 11
    with pytest.raises(ValueError):
        c.finish(reserved=3, produced=-1)


def test_reservation_follows_the_mean_group_size():
    c = StalenessController(eta=1, global_batch=100)
    assert c.reservation(15) == 15  # nothing finished yet: the maximum
    for _ in range(200):
        c.finish(reserved=c.reservation(15), produced=6)
    assert c.reservation(15) == 6
    assert c.reservation(4) == 4  # never above the maximum
    for _ in range(200):
        c.finish(reserved=1, produced=0)
    assert c.reservation(15) == 1  # never below one sample


def test_expected_reservations_admit_more_work_and_settle_exactly():
    """Groups of 15 decisions at most that produce 6: worst-case reservations admit 13 groups
    in a window of 200 samples; expected ones admit 33, and finished groups leave exactly
    what they produced reserved."""
    def admitted(c, reserve):
        n = 0
        while c.try_admit(reserve(c)):
            n += 1
        return n

    worst = StalenessController(eta=1, global_batch=100)
    assert admitted(worst, lambda c: 15) == 13
    exp = StalenessController(eta=1, global_batch=100)
    exp._mean_group = 6.0
    n = admitted(exp, lambda c: c.reservation(15))
    assert n == 33
    for _ in range(n):
        exp.finish(reserved=6, produced=6)
    assert exp.reserved == 6 * 33


def test_has_room_answers_as_try_admit_without_counting():
    c = StalenessController(eta=0, global_batch=4)
    assert c.has_room(4) and c.try_admit(4)
    assert not c.has_room(1) and c.counters.refused == 0
    assert not c.try_admit(1) and c.counters.refused == 1


def test_unit_larger_than_window_still_starts_when_idle():
    c = StalenessController(eta=0, global_batch=4)
    assert c.try_admit(16)  # nothing outstanding: admit, or nothing could ever run
    assert not c.try_admit(1)


def test_short_units_never_deadlock_a_starving_trainer():
    """eta=0: groups reserve 15 but produce 9; the window fills with finished work that
    cannot complete the batch, so admission must go on until the trainer can step."""
    c = StalenessController(eta=0, global_batch=240)
    produced = 0
    for _ in range(100):
        if produced >= 240:
            break
        assert c.try_admit(15), f"deadlock: produced {produced}, reserved {c.reserved}"
        c.finish(reserved=15, produced=9)
        produced += 9
    assert produced >= 240
    assert c.reserved == produced
    assert not c.try_admit(15)  # batch can be filled: throttled again until the trainer steps
    c.set_version(1)
    assert c.try_admit(15)


def test_freshness_filter_counts_drops():
    c = StalenessController(eta=2, global_batch=4)
    c.set_version(5)
    mask = c.filter(np.array([5, 4, 3, 2, 1]))
    assert mask.tolist() == [True, True, True, False, False]
    assert c.counters.dropped_samples == 2 and c.counters.accepted_samples == 3
    c.set_version(6)
    assert c.filter([4, 3]).tolist() == [True, False] and c.counters.dropped_samples == 3


def test_eta_zero_is_on_policy():
    c = StalenessController(eta=0, global_batch=4)
    c.set_version(3)
    assert c.filter([3, 2]).tolist() == [True, False]


def test_version_cannot_go_backwards_and_bad_args():
    c = StalenessController(eta=1, global_batch=4)
    c.set_version(2)
    with pytest.raises(ValueError):
        c.set_version(1)
    with pytest.raises(ValueError):
        StalenessController(eta=-1, global_batch=4)
    with pytest.raises(ValueError):
        c.try_admit(0)


def test_in_order_stream_respects_bound():
    """Simulate producers admitted under the window and a trainer consuming in order:
    no sample is ever more than eta versions stale."""
    eta, B = 2, 8
    c = StalenessController(eta, B)
    stream, worst = [], 0
    for _ in range(200):
        while c.try_admit(1):
            stream.append(c.version)  # generated with the current policy
        batch, stream = stream[:B], stream[B:]
        worst = max(worst, max(c.version - v for v in batch))
        c.set_version(c.version + 1)
    assert worst == eta


@pytest.mark.parametrize("reserve", [15, 240])
def test_resumed_controller_admits_like_a_fresh_one(reserve):
    """A run resumed at version 50 (issue 22): the trainer has consumed 50 batches, so the
    window must hold eta + 1 batches beyond them, as on a fresh start (eta 1, B 240: 32
    groups of 15 samples, then a refusal), not 52 batches (832 groups)."""
    def admitted_before_refusal(c):
        n = 0
        while c.try_admit(reserve):
            n += 1
            assert n < 10_000, "never refused"
        return n

    fresh = StalenessController(eta=1, global_batch=240)
    resumed = StalenessController(eta=1, global_batch=240)
    resumed.set_version(50)
    assert admitted_before_refusal(resumed) == admitted_before_refusal(fresh) == 480 // reserve
    fresh.set_version(1)  # the next batch opens the same room in both
    resumed.set_version(51)
    assert admitted_before_refusal(resumed) == admitted_before_refusal(fresh) == 240 // reserve


def test_a_skipped_update_slides_the_window_without_a_new_version():
    c = StalenessController(eta=0, global_batch=4)
    assert c.try_admit(4) and not c.try_admit(4)
    c.update_done(0)  # every step of the update skipped: its batch is consumed all the same
    assert (c.version, c.position) == (0, 1)
    assert c.try_admit(4) and not c.try_admit(1)
    assert c.filter([0]).tolist() == [True]  # freshness is still counted in versions
    c.update_done(1)
    assert (c.version, c.position) == (1, 2)
    c.set_version(1)  # a version already held moves nothing
    assert c.position == 2


def test_skipped_updates_never_leave_admission_and_the_trainer_waiting_on_each_other():
    """Producers fill the window, the trainer takes a global batch whenever one waits, and one
    update in three is skipped (a non-finite loss: no new version). Sliding the window by
    versions alone stalled at the first skip (admission refused, fewer than B samples waiting)."""
    eta, B, group = 1, 8, 3
    c = StalenessController(eta, B)
    waiting = version = updates = 0
    for _ in range(2000):
        moved = False
        r = c.reservation(group)
        if c.try_admit(r):
            c.finish(r, group)  # the group ends at once with `group` samples
            waiting += group
            moved = True
        if waiting >= B:
            waiting -= B
            updates += 1
            version += 0 if updates % 3 == 0 else 1
            c.update_done(version)
            moved = True
        assert moved, f"stalled after {updates} updates: {waiting} samples waiting, {c.reserved} reserved"
    assert updates > 500 and c.position == updates and c.version == updates - updates // 3
