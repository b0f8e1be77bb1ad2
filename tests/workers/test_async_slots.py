"""Per-slot asynchronous rollout without Ray: a fake generator answers at once, so the
slot rollout's bookkeeping (env sharding, idling, episode accounting) is tested directly."""

import time
from concurrent.futures import Future

import numpy as np
import pytest

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.core.types import ActionReply
from rlvla3.envs.config import TabletopConfig
from rlvla3.workers.env_worker import EnvWorker


class _Call:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, req):
        fut = Future()
        try:
            fut.set_result(self.fn(req))
        except Exception as e:  # like a Ray call whose task raised
            fut.set_exception(e)
        return type("Ref", (), {"future": lambda self_: fut})()


class FakeGenerator:
    """Random action chunks; records how many observations each request carried."""

    def __init__(self, chunk=4, action_dim=3, tokens=12):
        self.sizes = []
        self.rng = np.random.default_rng(0)
        self.shape = (chunk, action_dim, tokens)
        self.infer = _Call(self._infer)
        self.calls_many = []  # requests per infer_many call
        self.infer_many = _Call(self._infer_many)
        self.fail_many = False

    def _infer_many(self, reqs):
        self.calls_many.append(len(reqs))
        if self.fail_many:
            raise RuntimeError("injected generator failure")
        return [self._infer(r) for r in reqs]

    def _infer(self, req):
        n = len(req.obs)
        self.sizes.append(n)
        c, d, t = self.shape
        return ActionReply(req.request_id, self.rng.uniform(-1, 1, (n, c, d)).astype(np.float32),
                           np.zeros((n, t), np.int64), np.zeros((n, t), np.float32), np.zeros(n, np.float32), 3)


def _run(envs, envs_per_slot, episodes, coalesce_ms=0.0, gen=None):
    w = EnvWorker(0, TabletopConfig(families=["reach"], num_init_states=8, max_steps=12), envs, seed=0)
    gen = gen or FakeGenerator()
    w.start_async([gen], "round_robin", 1, envs_per_slot, coalesce_ms)
    w.rollout.add([EpisodeAssignment(task_id=i % 3, init_id=i % 8) for i in range(episodes)])
    deadline = time.time() + 20
    while len(w.finished) + w.rollout.episodes_dropped < episodes and time.time() < deadline:
        time.sleep(0.01)
    status = w.rollout.stop()
    return w, gen, status


def test_each_request_carries_the_envs_of_its_slot():
    w, gen, status = _run(envs=4, envs_per_slot=2, episodes=8)
    assert len(w.finished) == 8 and status["episodes_dropped"] == 0
    assert max(gen.sizes) == 2  # two envs per request while both run
    assert sum(gen.sizes) == sum(len(e) for e in w.finished)  # every decision asked for exactly once
    assert status["idle_slots"] == 2 and status["idle_envs"] == 4
    assert all(e.versions.tolist() == [3] * len(e) for e in w.finished)


def test_one_env_per_slot_sends_single_observations():
    w, gen, status = _run(envs=3, envs_per_slot=1, episodes=5)
    assert len(w.finished) == 5 and set(gen.sizes) == {1}


def test_envs_per_slot_must_divide_the_envs():
    w = EnvWorker(0, TabletopConfig(families=["reach"], num_init_states=8), 3, seed=0)
    with pytest.raises(ValueError, match="envs_per_slot"):
        w.start_async([FakeGenerator()], "round_robin", 1, 2)


def test_envs_of_a_slot_step_in_parallel():
    """Two envs per slot whose steps sleep 20 ms: one reply's chunk steps overlap in time."""
    from rlvla3.envs.config import LatencyConfig

    cfg = TabletopConfig(families=["reach"], num_init_states=8, max_steps=8,
                         latency=LatencyConfig(kind="constant", step_ms=20.0, mode="sleep"))
    w = EnvWorker(0, cfg, 2, seed=0)
    w.set_trace(True)
    w.start_async([FakeGenerator()], "round_robin", 1, 2)
    w.rollout.add([EpisodeAssignment(task_id=0, init_id=0), EpisodeAssignment(task_id=1, init_id=1)])
    deadline = time.time() + 20
    while len(w.finished) < 2 and time.time() < deadline:
        time.sleep(0.01)
    w.rollout.stop()
    steps = sorted((s for s in w.timeline() if s.name == "env_step"), key=lambda s: s.start)
    first = [s for s in steps if s.track == "env0/slot0"][0]
    other = [s for s in steps if s.track == "env0/slot1"][0]
    assert other.start < first.end and first.start < other.end  # overlapping, not one after the other


def test_a_failing_reset_drops_every_episode_of_the_slot(monkeypatch):
    w = EnvWorker(0, TabletopConfig(families=["reach"], num_init_states=8, max_steps=12), 2, seed=0)
    w.start_async([FakeGenerator()], "round_robin", 1, 2)
    real = w.envs[1].reset
    calls = {"n": 0}

    def flaky(**kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected reset failure")
        return real(**kw)

    monkeypatch.setattr(w.envs[1], "reset", flaky)
    w.rollout.add([EpisodeAssignment(task_id=i % 3, init_id=i) for i in range(4)])
    deadline = time.time() + 20
    while len(w.finished) + w.rollout.episodes_dropped < 4 and time.time() < deadline:
        time.sleep(0.01)
    status = w.rollout.stop()
    assert status["episodes_dropped"] == 2  # the env that failed and its slot-mate
    assert len(w.finished) == 2 and not w.active.any()


def test_coalesced_requests_share_calls_and_each_slot_gets_its_own_reply():
    """8 slots, a 30 ms window: slots ready together go out in one infer_many call."""
    w, gen, status = _run(envs=8, envs_per_slot=1, episodes=16, coalesce_ms=30.0)
    assert len(w.finished) == 16 and status["episodes_dropped"] == 0
    assert gen.calls_many and max(gen.calls_many) > 1
    assert status["calls"] < status["requests"]  # fewer Ray calls than requests
    assert sum(gen.sizes) == sum(len(e) for e in w.finished) == status["requests"]  # each decision asked once


def test_a_failed_coalesced_call_drops_the_episodes_of_every_slot_in_it():
    gen = FakeGenerator()
    gen.fail_many = True
    w, gen, status = _run(envs=4, envs_per_slot=1, episodes=4, coalesce_ms=30.0, gen=gen)
    assert status["failed_requests"] >= 2 and status["episodes_dropped"] >= 2
    assert status["failed_requests"] == status["episodes_dropped"]  # one env per slot
    assert len(w.finished) + status["episodes_dropped"] >= 4 and not w.active.any()


@pytest.mark.parametrize("finisher,raiser", [(0, 1), (1, 0)])
def test_an_episode_ending_beside_a_failing_env_is_delivered_not_dropped(monkeypatch, finisher, raiser):
    """Issue 22: in one chunk step of a 2-env slot one env ends its episode and the other
    raises. The ended episode is delivered and only the failing env's is dropped: each
    episode is reported once (it was also dropped, and the driver's count went negative)."""
    w = EnvWorker(0, TabletopConfig(families=["reach"], num_init_states=8, max_steps=12), 2, seed=0)
    w.start_async([FakeGenerator()], "round_robin", 1, 2)
    ends = w.envs[finisher].chunk_step

    def ending(actions):
        time.sleep(0.05)  # still stepping when its slot-mate raises
        obs, r, term, trunc, info = ends(actions)
        return obs, r, True, trunc, info

    def failing(actions):
        raise RuntimeError("injected step failure")

    monkeypatch.setattr(w.envs[finisher], "chunk_step", ending)
    monkeypatch.setattr(w.envs[raiser], "chunk_step", failing)
    keys = {finisher: "ends", raiser: "fails"}  # the first assignment goes to env 0
    w.rollout.add([EpisodeAssignment(task_id=0, init_id=i, group_key=keys[i]) for i in range(2)])
    deadline = time.time() + 20
    while len(w.finished) + w.rollout.episodes_dropped < 2 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # anything counted late would show now
    status = w.rollout.stop()
    assert [e.group_key for e in w.finished] == ["ends"]
    assert w.dropped_keys == ["fails"] and status["episodes_dropped"] == w.episodes_dropped == 1
    assert not w.active.any()
