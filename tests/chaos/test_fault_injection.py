"""Fault injection schedule, its config validation, and the env worker's handling of a
raising or non-finite simulator (no Ray: the worker object is driven directly)."""

import numpy as np
import pytest

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.envs.faults import EnvFaultConfig, FaultyEnv, InjectedFault, wrap_with_faults
from rlvla3.runtime.config import ConfigError, load_config
from rlvla3.workers.env_guard import EnvFault, check_step
from rlvla3.workers.env_worker import EnvWorker


class CountingEnv:
    num_tasks = 1

    def __init__(self):
        self.steps = 0

    def chunk_step(self, actions):
        self.steps += 1
        return {"proprio": np.zeros(4, np.float32), "image": np.zeros((2, 2, 3), np.uint8)}, 0.0, False, False, {}


def fire_steps(cfg: EnvFaultConfig, n: int = 50, incarnation: int = 0) -> list:
    env = FaultyEnv(CountingEnv(), cfg, worker_id=0, slot=0, incarnation=incarnation)
    fired = []
    for k in range(1, n + 1):
        try:
            env.chunk_step(None)
        except InjectedFault:
            fired.append(k)
    return fired


def test_fires_once_after_n_steps():
    assert fire_steps(EnvFaultConfig(enabled=True, kind="raise", after_chunk_steps=7)) == [8]


def test_probability_is_seeded_and_bounded():
    cfg = EnvFaultConfig(enabled=True, kind="raise", after_chunk_steps=0, probability=0.3, max_faults=0, seed=4)
    a, b = fire_steps(cfg, 200), fire_steps(cfg, 200)
    assert a == b and 30 < len(a) < 90
    assert fire_steps(cfg, 200, incarnation=1) != a  # a restarted worker draws a fresh schedule


def test_max_faults_limits_the_count():
    cfg = EnvFaultConfig(enabled=True, kind="raise", after_chunk_steps=0, probability=1.0, max_faults=3)
    assert fire_steps(cfg) == [1, 2, 3]


def test_wrap_targets_one_worker_slot_and_life():
    envs = [CountingEnv() for _ in range(3)]
    cfg = EnvFaultConfig(enabled=True, worker=1, slot=2, lives=1)
    assert wrap_with_faults(envs, cfg, worker_id=0) == envs
    wrapped = wrap_with_faults(envs, cfg, worker_id=1)
    assert [isinstance(e, FaultyEnv) for e in wrapped] == [False, False, True]
    assert wrap_with_faults(envs, cfg, worker_id=1, incarnation=1) == envs  # later lives are healthy
    assert wrap_with_faults(envs, EnvFaultConfig(enabled=False), worker_id=1) == envs


@pytest.mark.parametrize("kind,field", [("nan_obs", "proprio"), ("nan_reward", "reward"), ("inf_reward", "reward")])
def test_non_finite_kinds_are_caught_by_the_step_check(kind, field):
    env = FaultyEnv(CountingEnv(), EnvFaultConfig(enabled=True, kind=kind, after_chunk_steps=0), 0, 0)
    obs, reward, *_ = env.chunk_step(None)
    with pytest.raises(EnvFault, match=field):
        check_step(obs, reward, "w0/s0")


@pytest.mark.parametrize("override,key", [
    ("faults.env.kind=melt", "faults.env.kind"), ("faults.env.probability=0", "faults.env.probability"),
    ("faults.env.after_chunk_steps=-1", "faults.env.after_chunk_steps"), ("faults.step_timeout_s=0", "faults.step_timeout_s"),
    ("faults.env.slot=-2", "faults.env.slot"), ("faults.generator_crash_after_requests=-1", "faults.generator_crash"),
    ("faults.env.nope=1", "faults.env.nope"),
])
def test_bad_fault_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(["preset=tiny-test", override])


def test_faults_are_off_by_default():
    cfg = load_config(["preset=tiny-test"])
    assert not cfg.faults.env.enabled and cfg.faults.generator_crash_after_requests == 0
    assert cfg.faults.trainer_crash_after_steps == 0 and cfg.faults.step_timeout_s <= 30


@pytest.mark.parametrize("kind", ["raise", "nan_obs", "nan_reward", "inf_reward"])
def test_lockstep_worker_drops_the_faulty_episode_and_goes_on(kind):
    cfg = load_config(["preset=tiny-test"])
    fault = EnvFaultConfig(enabled=True, kind=kind, worker=0, slot=1, after_chunk_steps=2)
    w = EnvWorker(0, cfg.env.tabletop, 2, seed=1, faults=fault)
    w.reset([EpisodeAssignment(0, 0, group_key="g0"), EpisodeAssignment(0, 1, group_key="g1")], auto_reset="none")
    chunk, n = cfg.policy.tiny.chunk_size, 2
    for _ in range(40):
        if not w.active.any():
            break
        w.step(np.zeros((n, chunk, 3), np.float32), np.zeros((n, chunk, 3), np.int64), np.zeros((n, chunk), np.float32),
               np.zeros(n, np.float32), np.zeros(n, np.int64), w.active.copy())
    out = w.drain()
    assert out["episodes_dropped"] == 1 and out["dropped_keys"] == ["g1"] and out["faults_injected"] == 1
    assert [e.group_key for e in out["episodes"]] == ["g0"]  # the healthy slot finished its episode
    for ep in out["episodes"]:
        assert np.isfinite(ep.rewards).all() and np.isfinite(ep.proprio).all()
    assert all(np.isfinite(o["proprio"]).all() for o in w.obs)  # the faulty observation was never kept


def test_random_kind_draws_from_the_mix():
    cfg = EnvFaultConfig(enabled=True, kind="random", mix=["raise", "nan_reward"], after_chunk_steps=0, max_faults=0)
    env = FaultyEnv(CountingEnv(), cfg, 0, 0)
    seen = set()
    for _ in range(40):
        try:
            _, reward, *_ = env.chunk_step(None)
            seen.add("nan_reward" if np.isnan(reward) else "none")
        except InjectedFault:
            seen.add("raise")
    assert seen == {"raise", "nan_reward"}
    with pytest.raises(ConfigError, match=r"faults\.env\.mix"):
        load_config(["preset=tiny-test", "faults.env.kind=random", "faults.env.mix=[melt]"])
