"""The experience stream: admission, in-flight accounting, group assembly, freshness, losses
and the final drain, without workers."""

import numpy as np
import pytest

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience_stream import ExperienceStream, StreamSettings, StreamStatus
from rlvla3.core.types import Episode


def stream(algo="ppo", group_size=2, horizon=5, eta=1, global_batch=8, version=0, **kw):
    settings = StreamSettings(algo, group_size, horizon, eta, global_batch, gamma=0.9, gae_lambda=1.0, **kw)
    return ExperienceStream(settings, GroupSampler(3, 4, settings.episodes_per_group, seed=0, prefix="a"), version)


def episode(key, n=3, success=True, version=0, episode_id=0):
    return Episode(0, 0, key, np.zeros((n, 4, 4, 3), np.uint8), np.zeros((n, 2), np.float32), "reach",
                   np.zeros((n, 2), np.int64), np.zeros((n, 2), np.float32), np.zeros(n, np.float32),
                   np.full(n, version, np.int64), np.r_[np.zeros(n - 1), float(success)].astype(np.float32),
                   success, True, 0.0, 4 * n, episode_id=episode_id)


def admitted(s, loads, target):
    """{group key: {worker: episodes}} of one admit call."""
    out = {}
    for w, items in s.admit(loads, target):
        for a in items:
            out.setdefault(a.group_key, {}).setdefault(w, 0)
            out[a.group_key][w] += 1
    return out


def test_settings_from_config_and_group_sizes():
    from types import SimpleNamespace

    algo = SimpleNamespace(name="grpo", staleness=2, global_batch=16, gamma=0.99, gae_lambda=0.95,
                           filter_degenerate_groups=False, grpo_discount=True)
    s = StreamSettings.from_config(algo, SimpleNamespace(group_size=4), horizon=7)
    assert (s.algo, s.group_size, s.horizon, s.staleness, s.global_batch) == ("grpo", 4, 7, 2, 16)
    assert s.episodes_per_group == 4 and not s.filter_degenerate_groups and s.grpo_discount
    assert StreamSettings("ppo", 4, 7, 2, 16).episodes_per_group == 1  # PPO: every episode its own group
    with pytest.raises(ValueError, match="groups of 1"):
        ExperienceStream(s, GroupSampler(1, 1, 1, seed=0))


def test_admission_fills_the_least_loaded_workers_within_the_window():
    """eta=1, B=8: the window holds 16 samples; a PPO episode reserves its horizon (5) until
    one has finished, so three are admitted; their assignments go to the emptiest workers."""
    s = stream()
    got = admitted(s, [2, 0], target=4)
    assert list(got.values()) == [{1: 1}, {1: 1}, {0: 1}]  # loads [2,0] -> [2,1] -> [2,2] -> [3,2]
    st = s.status()
    assert st.samples_reserved == 15 and st.groups_in_flight == 3 and st.episodes_in_flight == 3
    assert st.admission_refused == 1  # a fourth would pass 16: producers throttled
    assert admitted(s, [0, 0], target=4) == {} and s.status().admission_refused == 2
    assert s.admit([], target=4) == []  # no workers: nothing to do


def test_admission_stops_at_the_target_load():
    s = stream(eta=100)
    assert len(admitted(s, [0, 1], target=2)) == 3  # [0,1] -> [1,1] -> [2,1] -> [2,2]


def test_a_grpo_group_is_spread_and_released_when_its_last_episode_arrives():
    s = stream("grpo", group_size=3, eta=10)
    (key, workers), = admitted(s, [0, 1], target=1).items()
    assert workers == {0: 2, 1: 1}
    assert s.status().samples_reserved == 15  # 3 episodes x horizon 5, before any has finished
    stats = s.add_episodes([(0, episode(key, success=True, episode_id=1)),
                            (1, episode(key, success=False, episode_id=2))])
    assert stats.episodes == 2 and s.samples_waiting == 0  # incomplete: nothing released
    stats = s.add_episodes([(0, episode(key, success=False, episode_id=3))])
    assert stats.groups_kept == 1 and s.samples_waiting == 9
    st = s.status()
    assert st.groups_in_flight == 0 and st.samples_reserved == 9  # settled: what it produced
    assert st.samples_produced == 9


def test_ppo_episodes_become_samples_at_once_and_settle_their_reservation():
    s = stream()
    keys = list(admitted(s, [0], target=2))
    stats = s.add_episodes([(0, episode(keys[0], n=2))])
    assert stats.episodes == 1 and stats.samples == 2 and s.samples_waiting == 2
    assert s.status().samples_reserved == 5 + 2  # the other episode still reserves its horizon
    batch = s.take(2)
    np.testing.assert_allclose(batch.returns, [0.9, 1.0])  # GAE with gamma 0.9, lambda 1


def segment(key, n=2, version=0, bootstrap=0.5, episode_id=0):
    """A part of a running episode (rollout.segment_chunks): no reward yet, not terminal."""
    ep = episode(key, n=n, success=False, version=version, episode_id=episode_id)
    ep.terminated, ep.bootstrap_value, ep.final = False, bootstrap, False
    return ep


def test_ppo_segments_queue_their_samples_and_the_last_part_settles_the_group():
    """A running episode's segments reach the queue at once, bootstrapped (returns 0.9² × 0.5 and
    0.9 × 0.5, no reward yet); the group stays in flight, reserving its horizon, and the episode is
    counted once, when its final part comes, which settles the reservation at all it produced."""
    s = stream()
    (key,) = admitted(s, [0], target=1)
    stats = s.add_episodes([(0, segment(key, episode_id=1))])
    assert stats.episodes == 0 and stats.samples == 2 and s.samples_waiting == 2
    st = s.status()
    assert st.groups_in_flight == 1 and st.episodes_in_flight == 1 and st.samples_reserved == 5
    np.testing.assert_allclose(s.take(2).returns, [0.405, 0.45], rtol=1e-6)
    stats = s.add_episodes([(0, segment(key, n=1, episode_id=2)), (0, episode(key, n=2, episode_id=3))])
    assert stats.episodes == 1 and stats.successes == 1 and stats.samples == 3
    st = s.status()
    assert st.groups_in_flight == 0 and st.samples_reserved == 5 and st.samples_produced == 5
    s.add_episodes([(0, segment(key, episode_id=4))])  # after its episode ended: late, ignored
    assert s.status().episodes_late == 1 and s.samples_waiting == 3


def test_a_segment_reaching_a_grpo_stream_is_refused():
    s = stream("grpo", group_size=2)
    (key,) = admitted(s, [0], target=2)
    with pytest.raises(ValueError, match="whole episodes"):
        s.add_episodes([(0, segment(key))])


def test_an_episode_from_a_worker_that_did_not_run_it_is_ignored_and_counted():
    s = stream()
    (key,) = admitted(s, [0, 5], target=1)
    s.add_episodes([(1, episode(key))])  # worker 1 never had it
    assert s.status().episodes_late == 1 and s.status().episodes_in_flight == 1 and s.samples_waiting == 0
    s.add_episodes([(0, episode(key)), (0, episode(key))])  # the second is a copy: counted once
    st = s.status()
    assert st.episodes_late == 2 and st.groups_in_flight == 0 and st.samples_produced == 3


def test_ppo_an_episode_both_dropped_and_delivered_settles_its_group_once():
    """Issue 22: an episode reported both dropped (env fault) and delivered."""
    s = stream()
    (key,) = admitted(s, [0], target=1)
    assert s.report_lost(0, key) == 1
    s.add_episodes([(0, episode(key))])
    st = s.status()
    assert st.groups_in_flight == 0 and st.samples_reserved == 0 and st.episodes_dropped == 1
    assert st.episodes_late == 1 and s.samples_waiting == 0


def test_grpo_a_lost_episode_drops_its_whole_group_once():
    """Group of 4, its first episode reported both lost and delivered: the group is broken,
    its other episodes are dropped (counted) and it settles exactly once; a late report for a
    settled group changes nothing."""
    s = stream("grpo", group_size=4, eta=10)
    (key,) = admitted(s, [0], target=1)
    s.add_episodes([(0, episode(key, episode_id=9))])  # waits in the assembler
    assert s.report_lost(0, key) == 1
    assert s.status().episodes_dropped_with_group == 1  # the waiting one, taken out of the assembler
    stats = s.add_episodes([(0, episode(key, success=k % 2 == 0, episode_id=k)) for k in range(3)])
    st = s.status()
    assert stats.episodes_dropped == 2 and st.episodes_dropped_with_group == 3 and st.episodes_late == 1
    assert st.groups_in_flight == 0 and st.samples_reserved == 0 and s.samples_waiting == 0
    assert s.report_lost(0, key) == 0 and s.status().episodes_dropped == 2  # counted, nothing in flight


def test_a_lost_worker_loses_every_episode_it_ran_and_only_those():
    s = stream("grpo", group_size=2, eta=10)
    groups = admitted(s, [0, 0], target=2)  # each group spread over both workers
    assert all(w == {0: 1, 1: 1} for w in groups.values())
    key = next(iter(groups))
    s.add_episodes([(1, episode(key))])  # delivered before worker 0 died
    assert s.report_lost(0) == len(groups)
    st = s.status()
    assert st.episodes_dropped == len(groups) and st.episodes_dropped_with_group == 1
    assert st.episodes_in_flight == len(groups) - 1  # worker 1's, of the other groups
    for other in list(groups)[1:]:
        s.add_episodes([(1, episode(other))])  # their groups are broken: dropped, settled
    st = s.status()
    assert st.groups_in_flight == 0 and st.samples_reserved == 0 and st.episodes_dropped_with_group == len(groups)


def test_take_drops_stale_samples_refunds_them_and_records_staleness():
    s = stream(eta=2, global_batch=2, horizon=2)  # a window of 6 samples: three episodes of 2
    keys = list(admitted(s, [0], target=3))
    s.add_episodes([(0, episode(keys[0], n=2, version=0)), (0, episode(keys[1], n=2, version=2)),
                    (0, episode(keys[2], n=2, version=3))])
    s.set_version(3)
    reserved = s.status().samples_reserved
    batch = s.take(3)  # the version-0 samples are 3 versions old: dropped, replaced by the next
    assert batch.versions.tolist() == [2, 2, 3]
    st = s.status()
    assert st.samples_dropped_stale == 2 and st.samples_reserved == reserved - 2
    assert st.staleness_hist == {0: 1, 1: 2} and st.staleness_mean == pytest.approx(2 / 3)
    assert s.take(2) is None and s.samples_waiting == 1  # too few: what passed waits at the front


def test_the_version_never_goes_back():
    s = stream(version=4)
    assert s.version == 4 and s.status().samples_reserved == 4 * 8  # a resumed run rebuilds the window
    with pytest.raises(ValueError, match="backwards"):
        s.set_version(3)


def test_queue_bound_covers_the_window_a_group_and_one_episode_per_env():
    assert stream(eta=2, global_batch=8, horizon=5).queue_bound(running_envs=4) == 3 * 8 + 5 + 4 * 5
    assert stream("grpo", group_size=3, eta=0, global_batch=8, horizon=5).queue_bound(0) == 8 + 15


def test_rollout_samples_keeps_complete_groups_of_this_sampler_only():
    s = stream("grpo", group_size=2)
    a, b = s.assign(2), s.assign(2)
    assert a[0].group_key == a[1].group_key != b[0].group_key and s.status().groups_in_flight == 0
    eps = [episode(a[0].group_key, success=True, episode_id=1), episode(a[0].group_key, success=False, episode_id=2),
           episode(b[0].group_key, episode_id=3), episode("other", episode_id=4)]
    batch, stats = s.rollout_samples(eps)
    assert len(batch) == 6 and stats.groups_kept == 1 and stats.episodes_dropped == 1  # b is incomplete
    assert s.assembler.num_pending_episodes == 0
    batch, stats = stream().rollout_samples(eps)  # PPO: every episode
    assert len(batch) == 12 and stats.episodes == 4


def test_drain_returns_what_was_left_and_empties_the_stream():
    s = stream("grpo", group_size=2, eta=10)
    keys = list(admitted(s, [0], target=4))
    s.add_episodes([(0, episode(keys[0], success=True, episode_id=1)),
                    (0, episode(keys[0], success=False, episode_id=2))])
    left = s.drain()
    assert isinstance(left, StreamStatus) and left.samples_reserved == 6 + 10  # produced + reserved
    assert (left.samples_waiting, left.groups_in_flight, left.episodes_in_flight) == (6, 1, 2)
    st = s.status()
    assert (st.samples_waiting, st.groups_in_flight, st.episodes_in_flight, st.samples_reserved) == (0, 0, 0, 0)
    assert st.samples_produced == 6  # the record of what was produced stays


def filled(version_lists, version=5, eta=1):
    """A PPO stream at `version` whose queue holds one episode per list, with samples of
    those policy versions."""
    s = stream(eta=eta, horizon=16, global_batch=100, version=version)  # room for every episode
    keys = list(admitted(s, [0], target=len(version_lists)))
    assert len(keys) == len(version_lists)
    for key, versions in zip(keys, version_lists):
        ep = episode(key, n=len(versions))
        ep.versions = np.asarray(versions, np.int64)
        s.add_episodes([(0, ep)])
    return s


def ids(batch):
    return (batch.sample_ids % 4096).tolist()  # the step within its episode


def test_take_splits_episodes_and_keeps_the_rest_in_order():
    s = filled([[5, 5, 5], [5, 5]])
    assert ids(s.take(4)) == [0, 1, 2, 0]
    assert s.samples_waiting == 1 and ids(s.take(1)) == [1]
    assert s.take(1) is None and s.samples_waiting == 0


def test_take_replaces_stale_samples_with_the_next_ones():
    s = filled([[5, 3, 5, 3, 5, 5], [5, 5, 5, 5]])  # eta 1 at version 5: steps 1 and 3 are stale
    batch = s.take(4)
    assert ids(batch) == [0, 2, 4, 5] and batch.versions.tolist() == [5, 5, 5, 5]  # exactly 4, in order
    assert s.samples_waiting == 4 and ids(s.take(4)) == [0, 1, 2, 3]
    assert s.status().samples_dropped_stale == 2


def test_take_gives_back_what_it_took_when_the_queue_runs_short():
    s = filled([[5, 3, 5, 5]])
    assert s.take(4) is None
    st = s.status()
    assert st.samples_waiting == 3 and st.samples_produced == 4  # the 3 fresh ones wait at the front
    assert st.queue_high_water == 4 and st.staleness_hist == {}  # nothing was taken
    assert ids(s.take(3)) == [0, 2, 3]


def test_take_when_everything_is_stale_empties_the_queue():
    s = filled([[1] * 5])
    assert s.take(2) is None
    assert s.samples_waiting == 1  # two rounds of 2 dropped; the last sample cannot make a batch of 2 alone


def test_a_throttled_window_spreads_its_admissions_over_every_worker():
    """Four idle workers at every admission, the window with room for fewer episodes (the
    trainer binds): ties of load rotate, so no worker is starved (the lowest index always won)."""
    s, version, counts = stream(eta=1, global_batch=8), 0, [0, 0, 0, 0]
    for _ in range(8):
        got = s.admit([0, 0, 0, 0], target=2)
        assert 0 < len(got) < 4  # throttled: room for some, not all
        for w, items in got:
            counts[w] += len(items)
            s.add_episodes([(w, episode(a.group_key, n=5, version=version)) for a in items])
        version += 1
        s.update_done(version)
    assert max(counts) - min(counts) <= 1, counts
    s = stream(eta=100)
    got = [w for w, _ in s.admit([1, 0, 0, 1], target=2)]
    assert got[:2] == [1, 2] and sorted(got) == [0, 1, 1, 2, 2, 3]  # the least loaded first, then in turn
