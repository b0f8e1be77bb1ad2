"""Env worker without Ray: slots reset in parallel and every step/reset is on the timeline."""

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.core.experience import ppo_samples
from rlvla3.core.types import ActionReply
from rlvla3.envs.config import LatencyConfig, TabletopConfig
from rlvla3.envs.tabletop import TabletopEnv
from rlvla3.runtime.backend import LocalBackend
from rlvla3.runtime.lockstep_rollout import lockstep_rollout
from rlvla3.workers.env_worker import EnvWorker


def _worker(slots=6, reset_ms=150.0):
    cfg = TabletopConfig(families=["reach"], num_init_states=8,
                         latency=LatencyConfig(kind="constant", reset_ms=reset_ms, mode="sleep"))
    w = EnvWorker(0, cfg, slots, seed=0)
    w.set_trace(True)
    return w


def test_lockstep_reset_runs_slots_in_parallel():
    w = _worker()
    w.reset([EpisodeAssignment(task_id=i % 3, init_id=i) for i in range(6)])
    resets = [s for s in w.timeline() if s.name == "reset"]
    assert sorted(s.track for s in resets) == [f"env0/slot{i}" for i in range(6)]
    # overlapping spans: every reset started before the first one finished
    assert max(s.start for s in resets) < min(s.end for s in resets)


def test_steps_are_recorded_with_their_simulator_steps():
    w = _worker(slots=2, reset_ms=0.0)
    w.reset([EpisodeAssignment(task_id=0, init_id=0), EpisodeAssignment(task_id=1, init_id=1)])
    chunk = np.zeros((2, 4, 3), np.float32)
    w.step(chunk, np.zeros((2, 12), np.int64), np.zeros((2, 12), np.float32), np.zeros(2, np.float32),
           np.zeros(2, np.int64), np.ones(2, bool))
    steps = [s for s in w.timeline() if s.name == "env_step"]
    assert len(steps) == 2 and all(s.args["steps"] == 4 for s in steps)
    w.set_trace(False)
    assert w.timeline() == []


def test_simulator_bound_cuts_episodes_at_the_given_lengths():
    """Random actions run every episode to the 60-step limit; given measured lengths, the
    bound resets after each of them in turn (7 steps = a chunk of 4 and one of 3)."""
    w = _worker(slots=2, reset_ms=0.0)
    full = w.bench_sim(0.3, 4, 3)
    assert full["env_steps"] / full["resets"] > 40  # the last, unfinished episodes count as resets too
    cut = w.bench_sim(0.3, 4, 3, episode_steps=[7, 13])
    per_episode = cut["env_steps"] / cut["resets"]
    # 10 on average, less the unfinished last episodes; each slot may have finished one more
    # 13-step than 7-step episode (+3 steps per slot above the average)
    assert 8.0 <= per_episode <= 10.0 + 3 * 2 / cut["resets"], cut


class _ClockFreeEnv:
    """An env whose observation has no time (like LIBERO's 8-D proprio): proprio[0] counts
    steps only so that the fake value function below can tell the states apart."""

    max_steps, num_tasks = 6, 3

    def reset(self, options=None):
        self.steps = 0
        return self._obs(), {}

    def chunk_step(self, actions):
        n = min(len(actions), self.max_steps - self.steps)
        self.steps += n
        truncated = self.steps >= self.max_steps
        return self._obs(), 0.0, False, truncated, {"success": False, "substeps": n}

    def _obs(self):
        return {"image": np.zeros((4, 4, 3), np.uint8), "proprio": np.array([self.steps, 0.0], np.float32),
                "instruction": "reach the red block"}


class _ClockEnv(_ClockFreeEnv):
    obs_has_time = True  # like tabletop, whose proprio holds t/T: a time-limit cut is terminal


class _ValueGenerator:
    """Lock-step generator: V(s) = proprio[0], chunks of 4 two-dimensional actions."""

    def infer_batch(self, obs, deterministic=False, temperature=1.0):
        n = len(obs)
        return ActionReply(0, np.zeros((n, 4, 2), np.float32), np.zeros((n, 8), np.int64),
                           np.zeros((n, 8), np.float32), obs.proprio[:, 0].copy(), 0)


def _lockstep_episode(env):
    backend = LocalBackend()
    w = EnvWorker(0, TabletopConfig(families=["reach"], num_init_states=8), 1, seed=0)
    w.envs = [env]
    res = lockstep_rollout(backend, [backend.actor(lambda: w)], [backend.actor(_ValueGenerator)],
                           [[EpisodeAssignment(task_id=0, init_id=0)]], "none", horizon=5, bootstrap=True)
    (ep,) = res.episodes
    return ep, ppo_samples([ep], gamma=0.9, lam=1.0)[0]


def test_a_time_limit_the_observation_does_not_show_is_bootstrapped():
    """Issue 22: LIBERO's proprio has no time, so its time-limit cut is not terminal: the last
    step's return is r + gamma * V(s_T) (= 0.9 * 6), not r alone. Decisions at s_0 and s_4."""
    ep, batch = _lockstep_episode(_ClockFreeEnv())
    assert not ep.terminated and ep.executed.tolist() == [4, 2]
    np.testing.assert_allclose(batch.returns, [0.9 * 0.9 * 6, 0.9 * 6], rtol=1e-6)
    np.testing.assert_allclose(batch.advantages[-1], 0.9 * 6 - 4, rtol=1e-6)
    assert batch.executed.tolist() == [4, 2]  # the second chunk ran 2 of its 4 sub-actions


def test_a_time_limit_the_observation_shows_stays_terminal():
    ep, batch = _lockstep_episode(_ClockEnv())
    assert ep.terminated and ep.bootstrap_obs is None
    np.testing.assert_allclose(batch.returns, [0.0, 0.0])
    assert TabletopEnv.obs_has_time is True


def test_the_async_driver_bootstraps_the_ticks_time_limit_cuts_or_drops_them():
    """`full` / `async-rollout`: the schedule asks a generator for V(s_T) of a tick's episodes
    in one call; without an answer in faults.step_timeout_s they are reported lost to the stream."""
    from types import SimpleNamespace

    from rlvla3.runtime.async_schedule import AsyncSchedule

    def episodes():
        w = EnvWorker(0, TabletopConfig(families=["reach"], num_init_states=8), 1, seed=0)
        w.envs = [_ClockFreeEnv()]
        w.reset_slot(0, EpisodeAssignment(task_id=0, init_id=0, group_key="a1"))
        for _ in range(2):
            w.step_slot(0, np.zeros((4, 2), np.float32), np.zeros(8, np.int64), np.zeros(8, np.float32), 1.0, 0)
        return w.finished

    backend, dropped = LocalBackend(), []
    for answers in (True, False):
        ray = SimpleNamespace(wait=lambda refs, timeout, ok=answers: (refs if ok else [], []))
        schedule = SimpleNamespace(session=SimpleNamespace(generators=[backend.actor(_ValueGenerator)],
                                                           backend=SimpleNamespace(ray=ray, get=backend.get)),
                                   cfg=SimpleNamespace(faults=SimpleNamespace(step_timeout_s=1.0)),
                                   stream=SimpleNamespace(report_lost=lambda w, key: dropped.append((w, key))))
        kept = [ep for _, ep in AsyncSchedule._bootstrap(schedule, [(3, ep) for ep in episodes()])]
        if answers:
            (ep,) = kept
            assert ep.bootstrap_value == 6.0 and not ep.terminated
            np.testing.assert_allclose(ppo_samples(kept, 0.9, 1.0)[0].returns[-1], 0.9 * 6)
        else:
            assert kept == [] and dropped == [(3, "a1")]


def test_segments_hand_over_a_running_episode_every_k_decisions():
    """rollout.segment_chunks=2: at the third decision the slot hands over its first two, with
    that decision's value as their bootstrap, and goes on; the episode is reported once, at its
    end, with all its env steps. The lock-step API turns segments off."""
    w = _worker(slots=1, reset_ms=0.0)
    w.segment_chunks = 2
    w.reset_slot(0, EpisodeAssignment(task_id=0, init_id=0, group_key="g"))
    decisions, done, value = 0, False, 0.0
    while not done:
        value += 1.0
        done = w.step_slot(0, np.zeros((4, 3), np.float32), np.zeros(12, np.int64), np.zeros(12, np.float32),
                           value, 0)[0]
        decisions += 1
    *segments, last = w.finished
    assert decisions > 4 and len(segments) == (decisions - 1) // 2
    assert all(not s.final and not s.terminated and len(s) == 2 and s.group_key == "g" for s in segments)
    assert [s.bootstrap_value for s in segments] == [3.0 + 2 * k for k in range(len(segments))]
    assert last.final and len(last) == decisions - 2 * len(segments)
    assert len({s.episode_id for s in w.finished}) == len(w.finished)  # sample ids stay unique
    (outcome,) = w.outcomes
    assert outcome["env_steps"] == sum(s.env_steps for s in w.finished) == 4 * decisions
    w.reset([EpisodeAssignment(task_id=0, init_id=0)])
    assert w.segment_chunks == 0
