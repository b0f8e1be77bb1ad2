"""Scripted-expert demonstrations for the SFT warm start, collected in parallel processes.

Every episode has its own seed, (seed, task, demo index), so the demonstrations are the same
whatever the number of processes. Episodes execute noisy actions but are labelled with the
clean expert chunk, so the clone learns to recover from its own mistakes (DART-style)."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from rlvla3.envs.config import TabletopConfig
from rlvla3.envs.factory import expert_chunk, make_env

UNIT_EPISODES = 8  # episodes per unit of work: progress is reported, and deadlines kept, per unit
_ENV: dict = {}  # this process's env for collecting, by config: built once, reused by its units


@dataclass
class DemoSet:
    images: np.ndarray  # (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, P)
    instructions: List[str]
    actions: np.ndarray  # (N, chunk, action_dim) clean expert action chunks
    episodes: int
    successes: int
    env_steps: int

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def _release_env() -> None:
    for env in _ENV.values():
        env.close()
    _ENV.clear()


def _collect_unit(env_cfg, episodes: Sequence[Tuple[int, int]], noise_std: float, chunk_size: int,
                  seed: int) -> DemoSet:
    """The given (task, demo index) episodes, in one process (the env is built once per process)."""
    key = repr(env_cfg)
    if key not in _ENV:
        _release_env()
        _ENV[key] = make_env(env_cfg, seed=seed)
    env = _ENV[key]
    imgs, props, instrs, chunks = [], [], [], []
    successes = steps = 0
    for task, d in episodes:
        rng = np.random.default_rng([seed, task, d])
        obs, _ = env.reset(options={"task_id": task, "init_id": d % env_cfg.num_init_states, "split": "train"})
        done, info = False, {"success": False}
        while not done:
            clean = np.asarray(expert_chunk(env, chunk_size, rng, 0.0), np.float32)
            imgs.append(obs["image"])
            props.append(obs["proprio"])
            instrs.append(obs["instruction"])
            chunks.append(clean)
            noisy = np.clip(clean + rng.normal(0.0, noise_std, clean.shape), -1.0, 1.0)
            obs, _, term, trunc, info = env.chunk_step(noisy.astype(np.float32))
            steps += int(info["substeps"])
            done = term or trunc
        successes += int(info["success"])
    return DemoSet(np.stack(imgs), np.stack(props).astype(np.float32), instrs, np.stack(chunks), len(episodes),
                   successes, steps)


def _concat(parts: List[DemoSet]) -> DemoSet:
    return DemoSet(np.concatenate([p.images for p in parts]), np.concatenate([p.proprio for p in parts]),
                   [s for p in parts for s in p.instructions], np.concatenate([p.actions for p in parts]),
                   sum(p.episodes for p in parts), sum(p.successes for p in parts), sum(p.env_steps for p in parts))


def collect_demos(env_cfg, demos_per_task: int, noise_std: float, chunk_size: int, seed: int, workers: int = 1,
                  unit_timeout_s: float = 600.0, progress: Optional[Callable[[int, int, DemoSet], None]] = None,
                  _unit_fn: Callable[..., DemoSet] = None) -> DemoSet:
    """`demos_per_task` noisy scripted-expert episodes on the train initial states of every
    task, in any env with an expert (the tabletop planner, MetaWorld's `metaworld.policies`),
    spread over `workers` processes. `progress(done_episodes, total, so_far)` after each unit.
    (`_unit_fn` replaces the per-unit collection in tests of the deadline.)"""
    unit_fn = _unit_fn or _collect_unit
    if isinstance(env_cfg, TabletopConfig):
        # The latency model emulates a remote simulator for the RL workers; demonstrations need not wait for it.
        env_cfg = replace(env_cfg, latency=replace(env_cfg.latency, kind="none"))
    if demos_per_task < 1:
        raise ValueError(f"sft.demos_per_task must be >= 1, got {demos_per_task}")
    _release_env()
    # Built here to count the tasks; the one-process path below collects with this same env.
    env = _ENV[repr(env_cfg)] = make_env(env_cfg, seed=seed)
    work = [(t, d) for t in range(env.num_tasks) for d in range(demos_per_task)]
    units = [work[i:i + UNIT_EPISODES] for i in range(0, len(work), UNIT_EPISODES)]
    parts: List[DemoSet] = []

    def _done(part: DemoSet) -> None:
        parts.append(part)
        if progress:
            progress(sum(p.episodes for p in parts), len(work), part)

    if min(workers, len(units)) <= 1:
        try:
            for unit in units:
                _done(unit_fn(env_cfg, unit, noise_std, chunk_size, seed))
        finally:
            _release_env()
        return _concat(parts)
    _release_env()  # the collecting processes build their own
    # spawn: a forked child would inherit the parent's torch threads and GL state
    pool = mp.get_context("spawn").Pool(min(workers, len(units)))
    try:
        pending = [pool.apply_async(unit_fn, (env_cfg, unit, noise_std, chunk_size, seed)) for unit in units]
        for unit, res in zip(units, pending):
            try:
                _done(res.get(timeout=unit_timeout_s))
            except mp.TimeoutError:
                raise TimeoutError(f"demo collection: episodes {unit[0]}..{unit[-1]} (task, demo) not collected "
                                   f"within {unit_timeout_s:g}s of waiting for them: an env or the expert is stuck, "
                                   "or a collecting process died (see its output above)") from None
    finally:
        pool.terminate()  # a stuck or unfinished process is stopped, not waited for
        pool.join()
    return _concat(parts)
