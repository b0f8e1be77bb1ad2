"""Env worker without Ray: slots reset in parallel and every step/reset is on the timeline."""

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.envs.config import LatencyConfig, TabletopConfig
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
    assert 8.0 <= per_episode <= 10.0, cut  # 10 on average, less the unfinished last episodes
