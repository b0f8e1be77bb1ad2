"""The asynchronous schedule's collection without Ray: an episode reported both dropped and
delivered (issue 22) settles its group once and never drives a count below zero; drops are
reported to the stream before deliveries, and the workers' running totals to the supervisor."""

from types import SimpleNamespace

import numpy as np
import pytest

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience_stream import ExperienceStream, StreamSettings
from rlvla3.core.types import Episode, TrainResult
from rlvla3.runtime.async_schedule import AsyncSchedule, StreamStalled, _Interval


def _schedule(grpo: bool) -> AsyncSchedule:
    sched = object.__new__(AsyncSchedule)  # only the state collect() touches
    settings = StreamSettings("grpo" if grpo else "ppo", 4, 15, 1, 8, gamma=0.99, gae_lambda=0.95)
    sched.stream = ExperienceStream(settings, GroupSampler(1, 1, settings.episodes_per_group, seed=0))
    totals = {}
    sched.sup = SimpleNamespace(note_drain=lambda w, injected, steps: totals.update({w: (injected, steps)}),
                                totals=totals)
    return sched


def _episode(key: str, success: bool, n: int = 3, episode_id: int = 0) -> Episode:
    return Episode(0, 0, key, np.zeros((n, 8, 8, 3), np.uint8), np.zeros((n, 4), np.float32), "reach",
                   np.zeros((n, 2), np.int64), np.zeros((n, 2), np.float32), np.zeros(n, np.float32),
                   np.zeros(n, np.int64), np.r_[np.zeros(n - 1), float(success)].astype(np.float32), success, True, 0.0,
                   4 * n, episode_id=episode_id)


def _drain(dropped, episodes):
    return {"faults_injected": 1, "dropped_keys": dropped, "episodes": episodes, "outcomes": [], "env_steps": 12}


def test_ppo_an_episode_both_dropped_and_delivered_settles_its_group_once():
    d = _schedule(grpo=False)
    ((_, (a,)),) = d.stream.admit([0], 1)
    d.collect([_drain([a.group_key], [_episode(a.group_key, True)])], _Interval())
    st = d.stream.status()
    assert st.groups_in_flight == 0 and st.samples_reserved == 0 and st.episodes_dropped == 1
    assert d.sup.totals == {0: (1, 12)}


def test_grpo_an_episode_both_dropped_and_delivered_settles_its_group_once():
    """Group of 4, its first episode reported both ways: the group is broken (dropped) and
    settled exactly once; its last episode no longer finds a settled group's count."""
    d = _schedule(grpo=True)
    ((_, items),) = d.stream.admit([0], 1)
    key = items[0].group_key
    interval = _Interval()
    d.collect([_drain([key], [_episode(key, k % 2 == 0, episode_id=k) for k in range(4)]), None], interval)
    st = d.stream.status()
    assert st.groups_in_flight == 0 and st.samples_reserved == 0 and st.samples_waiting == 0
    assert interval.exp.episodes_dropped == 3 and st.episodes_late == 1
    assert d.stream.report_lost(0, key) == 0  # a late report for a settled group changes nothing
    assert d.stream.status().samples_reserved == 0


def test_an_update_whose_steps_were_all_skipped_still_slides_the_window():
    """A non-finite loss skips every step of an update: no new version, but its global batch is
    consumed, so the staleness window moves on by one batch (else admission stalls the run)."""
    d = _schedule(grpo=False)
    published = []
    d.session = SimpleNamespace(publish_weights_async=published.append)
    updates = iter([[TrainResult(1, 8, {})], [TrainResult(1, 8, {}, skipped=True)] * 2, [TrainResult(2, 8, {})]])
    d.feed = SimpleNamespace(finished_update=lambda: next(updates))
    for _ in range(3):
        assert d.update_policy(_Interval())
    assert (d.stream.version, d.stream.window.position) == (2, 3)
    assert published == [1, 2]  # nothing new to publish after the skipped update


def test_a_closed_stream_with_an_idle_trainer_stops_the_run_after_the_step_timeout():
    """Nothing in flight, the window full, the trainer idle: admission and the trainer would
    wait on each other for ever; after faults.step_timeout_s the run stops with the counts."""
    d = _schedule(grpo=False)
    d.cfg = SimpleNamespace(faults=SimpleNamespace(step_timeout_s=30.0))
    d.feed, d._closed_since = SimpleNamespace(busy=False), None
    d._check_stall(0.0)  # the window has room: not closed
    assert d._closed_since is None and not d.stream.closed()
    d.stream.window.reserved = d.stream.window.capacity()  # full, as the skipped updates left it
    assert d.stream.closed()
    d._check_stall(100.0)
    d.feed.busy = True  # the trainer is working: whatever the window, not a stall
    d._check_stall(200.0)
    assert d._closed_since is None
    d.feed.busy = False
    d._check_stall(300.0)
    d._check_stall(329.0)  # closed for 29 s: not yet
    with pytest.raises(StreamStalled, match="stalled for 31 s.*0 samples waiting"):
        d._check_stall(331.0)
