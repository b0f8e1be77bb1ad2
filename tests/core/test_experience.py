import numpy as np
import pytest

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience import SAMPLE_ID_STRIDE, GroupAssembler, ppo_samples
from rlvla3.core.types import Episode


def ep(key, rewards, eid, version=0, success=None, terminated=True, bootstrap=0.0):
    n = len(rewards)
    return Episode(task_id=0, init_id=0, group_key=key, images=np.zeros((n, 4, 4, 3), np.uint8),
                   proprio=np.zeros((n, 4), np.float32), instruction="reach the red block",
                   tokens=np.zeros((n, 6), np.int64), logp=np.zeros((n, 6), np.float32),
                   values=np.full(n, 0.5, np.float32), versions=np.full(n, version, np.int64),
                   rewards=np.asarray(rewards, np.float32), success=bool(rewards[-1] > 0) if success is None else success,
                   terminated=terminated, bootstrap_value=bootstrap, env_steps=4 * n, episode_id=eid)


def test_group_released_only_when_complete_with_normalised_advantages():
    g = GroupAssembler(group_size=2, gamma=1.0)
    batch, st = g.add(ep("a", [0, 1], 1))
    assert batch is None and st.episodes == 1 and g.num_pending_episodes == 1
    batch, st = g.add(ep("a", [0, 0, 0], 2))
    assert st.groups_kept == 1 and g.num_pending_episodes == 0
    # returns [1, 0] -> advantages [+1, -1] (population std 0.5), broadcast to every decision
    np.testing.assert_allclose(batch.advantages, [1, 1, -1, -1, -1], atol=1e-5)
    np.testing.assert_allclose(batch.returns, [1, 1, 0, 0, 0])
    assert batch.sample_ids.tolist() == [SAMPLE_ID_STRIDE, SAMPLE_ID_STRIDE + 1, 2 * SAMPLE_ID_STRIDE,
                                         2 * SAMPLE_ID_STRIDE + 1, 2 * SAMPLE_ID_STRIDE + 2]


def test_degenerate_groups_are_dropped_and_counted():
    g = GroupAssembler(group_size=2)
    g.add(ep("b", [0, 1], 1))
    batch, st = g.add(ep("b", [1], 2))  # both succeed (gamma=1): no signal
    assert batch is None and st.groups_dropped_degenerate == 1
    keep = GroupAssembler(group_size=2, filter_degenerate=False)
    keep.add(ep("c", [1], 3))
    batch, _ = keep.add(ep("c", [1], 4))
    np.testing.assert_allclose(batch.advantages, [0, 0])


def test_grpo_outcome_does_not_depend_on_episode_length():
    """Issue 22: the schedules pass algo.gamma (0.99); returns discounted by it made an
    all-success group of lengths 8-15 non-degenerate (advantages -1.5..+1.5)."""
    lengths = [8, 11, 13, 15]
    g = GroupAssembler(4, 0.99, True)  # as the schedules build it
    for i, n in enumerate(lengths):
        batch, st = g.add(ep("s", [0] * (n - 1) + [1], i + 1))
    assert batch is None and st.groups_dropped_degenerate == 1  # all succeed: no signal
    keep = GroupAssembler(4, 0.99, False)
    for i, n in enumerate(lengths):
        batch, _ = keep.add(ep("k", [0] * (n - 1) + [1], i + 1))
    np.testing.assert_allclose(batch.advantages, 0.0)
    # mixed group: the advantage follows success alone (two successes, two failures)
    mixed = GroupAssembler(4, 0.99, True)
    outcomes = [(8, 1), (15, 1), (9, 0), (14, 0)]
    for i, (n, r) in enumerate(outcomes):
        batch, _ = mixed.add(ep("m", [0] * (n - 1) + [r], i + 1))
    per_episode = np.split(batch.advantages, np.cumsum([n for n, _ in outcomes])[:-1])
    for adv, (_, r) in zip(per_episode, outcomes):
        np.testing.assert_allclose(adv, 1.0 if r else -1.0, atol=1e-5)
    np.testing.assert_allclose(batch.returns, np.repeat([1, 1, 0, 0], [n for n, _ in outcomes]))


def test_grpo_length_discount_is_opt_in():
    g = GroupAssembler(2, 0.5, True, discount=True)  # algo.grpo_discount: faster successes score higher
    g.add(ep("d", [0, 1], 1))
    batch, _ = g.add(ep("d", [0, 0, 1], 2))
    np.testing.assert_allclose(batch.returns, [0.5, 0.5, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(batch.advantages[[0, -1]], [1, -1], atol=1e-5)


def test_groups_do_not_mix_and_incomplete_are_dropped():
    g = GroupAssembler(group_size=2)
    g.add(ep("x", [1], 1))
    batch, _ = g.add(ep("y", [0], 2))
    assert batch is None and g.num_pending_episodes == 2
    assert g.drop_incomplete() == 2 and g.num_pending_episodes == 0
    with pytest.raises(ValueError):
        GroupAssembler(group_size=1)


def test_ppo_samples_bootstrap_cut_segments():
    terminal = ep("p", [0, 1], 1)
    cut = ep("q", [0, 0], 2, terminated=False, bootstrap=2.0)
    batch, st = ppo_samples([terminal, cut], gamma=1.0, lam=1.0)
    # lam=gamma=1: advantage = return - value; the cut segment's return includes V(s_L)=2
    np.testing.assert_allclose(batch.returns, [1, 1, 2, 2])
    np.testing.assert_allclose(batch.advantages, [0.5, 0.5, 1.5, 1.5])
    assert st.episodes == 2 and st.successes == 1 and st.samples == 4


def test_ppo_samples_need_the_bootstrap_of_a_time_limit_cut_first():
    from rlvla3.core.experience import pending_bootstrap, set_bootstrap
    from rlvla3.core.types import ObsBatch

    final = ObsBatch(np.ones((1, 4, 4, 3), np.uint8), np.ones((1, 4), np.float32), ["reach the red block"])
    cut = ep("t", [0, 0], 1, terminated=False)
    cut.bootstrap_obs = final
    done = ep("u", [0, 1], 2)
    with pytest.raises(ValueError, match="bootstrap"):
        ppo_samples([cut, done], gamma=1.0, lam=1.0)  # V(s_T) = 0 would make the cut terminal
    waiting, obs = pending_bootstrap([cut, done])
    assert waiting == [cut] and len(obs) == 1
    set_bootstrap(waiting, [3.0])
    batch, _ = ppo_samples([cut, done], gamma=1.0, lam=1.0)
    np.testing.assert_allclose(batch.returns[:2], [3, 3])
    assert pending_bootstrap([cut, done]) == ([], None)


def test_group_sampler_shares_task_and_init_within_a_group():
    s = GroupSampler(num_tasks=5, num_init_states=7, group_size=3, seed=0)
    draws = s.draw(9)
    for k in range(3):
        grp = draws[3 * k:3 * k + 3]
        assert len({(a.task_id, a.init_id, a.group_key) for a in grp}) == 1
    assert len({a.group_key for a in draws}) == 3
