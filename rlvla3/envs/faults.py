"""Fault injection: make a chosen env misbehave on a seeded schedule (chaos testing).

`FaultyEnv` wraps any env with `chunk_step` and, when its schedule fires, raises, returns
non-finite observations or rewards, hangs (sleeps past the worker's step timeout) or kills
its whole process with `os._exit` (what a segfaulting simulator looks like from outside).
Off by default; configured by `faults.env.*` in the run config (see `EnvFaultConfig`).
Detection and recovery live elsewhere (`rlvla3/workers/env_guard.py`, the schedules): this
module only breaks things, so that the handling can be tested and measured.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np

from rlvla3.core.config_checks import check, check_at_least, check_choice

FAULT_KINDS = ("raise", "nan_obs", "nan_reward", "inf_reward", "hang", "crash", "hang_first_reset")
RESET_KINDS = ("hang_first_reset",)  # fire in the env's first reset of a process life, not in a chunk step
RANDOM_KIND = "random"  # each fault draws its kind from `EnvFaultConfig.mix` (chaos runs)
CRASH_EXIT_CODE = 13


class InjectedFault(RuntimeError):
    """Raised by a FaultyEnv scheduled to raise."""


@dataclass
class EnvFaultConfig:
    """One injected env fault. `worker` / `slot` pick the env (-1 = every one); the fault
    fires on a chunk step after `after_chunk_steps` steps of that env, with `probability`
    per step (1.0 = the first eligible step), at most `max_faults` times per process life."""

    enabled: bool = False
    # raise | nan_obs | nan_reward | inf_reward | hang | crash | random (drawn from mix) | hang_first_reset
    # (the env's first reset never returns: a simulator or EGL context that wedges at start)
    kind: str = "raise"
    mix: List[str] = field(default_factory=lambda: ["raise", "nan_obs", "nan_reward", "hang", "crash"])
    worker: int = 0  # env worker index hit by the fault; -1 = every worker
    slot: int = 0  # env index within the worker; -1 = every env of the worker
    after_chunk_steps: int = 10  # chunk steps of the env before it may fire
    probability: float = 1.0  # chance per eligible chunk step (seeded)
    max_faults: int = 1  # per env and process life (a restarted worker starts over); 0 = no limit
    lives: int = 0  # only the first `lives` process lives of the worker misbehave (0 = every life)
    hang_s: float = 3600.0  # hang: how long the env sleeps inside chunk_step
    seed: int = 0

    def validate(self, prefix: str = "faults.env") -> None:
        check_choice(self.kind, FAULT_KINDS + (RANDOM_KIND,), f"{prefix}.kind")
        bad = [k for k in self.mix if k not in FAULT_KINDS]
        check(self.kind != RANDOM_KIND or bool(self.mix and not bad),
              f"{prefix}.mix must be a non-empty list of {list(FAULT_KINDS)}, got {self.mix}")
        check(self.worker >= -1, f"{prefix}.worker must be >= -1 (-1 = every worker), got {self.worker}")
        check(self.slot >= -1, f"{prefix}.slot must be >= -1 (-1 = every env), got {self.slot}")
        check_at_least(self, prefix, 0, "after_chunk_steps", "max_faults", "lives")
        check(0.0 < self.probability <= 1.0, f"{prefix}.probability must be in (0, 1], got {self.probability}")
        check(self.hang_s > 0, f"{prefix}.hang_s must be > 0, got {self.hang_s}")


@dataclass
class FaultsConfig:
    """`faults.*`: what to break (injection, off by default) and how long to wait for a
    simulator before calling it hung (detection, always on)."""

    env: EnvFaultConfig = field(default_factory=EnvFaultConfig)
    generator_crash_after_requests: int = 0  # generator 0 exits after this many requests (first life only); 0 = off
    generator_hang_after_requests: int = 0  # generator 0 stops answering (alive, forward stuck) after this many; 0 = off
    trainer_crash_after_steps: int = 0  # the trainer exits after this many optimizer updates; 0 = off
    step_timeout_s: float = 30.0  # a chunk step or a policy request older than this is hung (worker restarted)
    start_timeout_s: float = 300.0  # a worker not built after this (simulators, models, CUDA) stops the run
    first_reset_timeout_s: float = 120.0  # an env slot's first reset (EGL contexts, caches) older than this is hung
    call_timeout_s: float = 600.0  # any other wait on a worker (train step, save, publish, drain); then exit 4
    generator_hang_at_start: bool = False  # generator 0's first life never finishes starting (chaos tests)
    max_worker_restarts: int = 20  # async modes: env worker restarts allowed before the run fails

    def validate(self, prefix: str = "faults") -> None:
        self.env.validate(f"{prefix}.env")
        check_at_least(self, prefix, 0, "generator_crash_after_requests", "generator_hang_after_requests",
                       "trainer_crash_after_steps", "max_worker_restarts")
        for name, high in [("step_timeout_s", 600), ("start_timeout_s", 3600), ("first_reset_timeout_s", 3600),
                           ("call_timeout_s", 86400)]:
            check(0 < getattr(self, name) <= high, f"{prefix}.{name} must be in (0, {high}], got {getattr(self, name)}")


class FaultyEnv:
    """Delegates to `env`; `chunk_step` misbehaves when the schedule fires."""

    def __init__(self, env, cfg: EnvFaultConfig, worker_id: int, slot: int, incarnation: int = 0):
        self.env, self.cfg = env, cfg
        # A restarted worker gets a fresh stream, so a probabilistic fault does not replay identically.
        self.rng = np.random.default_rng([cfg.seed, worker_id, slot, incarnation])
        self.chunk_steps = self.resets = self.injected = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _fires(self) -> bool:
        self.chunk_steps += 1
        c = self.cfg
        if self.chunk_steps <= c.after_chunk_steps or (c.max_faults and self.injected >= c.max_faults):
            return False
        return bool(self.rng.random() < c.probability)

    def reset(self, *args, **kwargs):
        if self.cfg.kind in RESET_KINDS and not self.resets:
            self.resets += 1
            self.injected += 1
            hang_forever("an env's first reset")
        self.resets += 1
        return self.env.reset(*args, **kwargs)

    def chunk_step(self, actions):
        if self.cfg.kind in RESET_KINDS or not self._fires():
            return self.env.chunk_step(actions)
        self.injected += 1
        kind = self.cfg.kind
        if kind == RANDOM_KIND:
            kind = str(self.rng.choice(self.cfg.mix))
        if kind == "raise":
            raise InjectedFault(f"injected simulator error after {self.chunk_steps} chunk steps")
        if kind == "crash":
            os._exit(CRASH_EXIT_CODE)
        if kind == "hang":
            time.sleep(self.cfg.hang_s)
        obs, reward, terminated, truncated, info = self.env.chunk_step(actions)
        if kind == "nan_obs":
            obs = dict(obs, proprio=np.full_like(obs["proprio"], np.nan))
        elif kind == "nan_reward":
            reward = float("nan")
        elif kind == "inf_reward":
            reward = float("inf")
        return obs, reward, terminated, truncated, info


def hang_forever(where: str) -> None:
    """Injected hang: this thread sleeps for good (the process stays alive)."""
    print(f"fault injection: process {os.getpid()} hangs in {where}", flush=True)
    while True:
        time.sleep(3600)


def wrap_with_faults(envs: List, cfg: EnvFaultConfig, worker_id: int, incarnation: int = 0) -> List:
    """Wrap the targeted envs of one worker; the others are returned untouched."""
    if cfg is None or not cfg.enabled or cfg.worker not in (-1, worker_id) or (cfg.lives and incarnation >= cfg.lives):
        return envs
    return [FaultyEnv(e, cfg, worker_id, i, incarnation) if cfg.slot in (-1, i) else e for i, e in enumerate(envs)]


def injected_count(envs: List) -> int:
    return sum(e.injected for e in envs if isinstance(e, FaultyEnv))
