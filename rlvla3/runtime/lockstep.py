"""Lock-step rollout over env workers and generators (the synchronous schedules and eval).

Every chunk step is a barrier: all stepping slots send observations, one batched inference
(split across generators) answers, every worker executes its chunks, and the next step
waits for the slowest worker. This is RLinf's rollout semantics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.core.types import ActionReply, ObsBatch


@dataclass
class RolloutResult:
    episodes: list = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    env_steps: int = 0
    decisions: int = 0
    frames: dict = field(default_factory=dict)  # (worker, slot) -> list of frames
    infer_time_s: float = 0.0
    env_time_s: float = 0.0
    wall_s: float = 0.0
    episodes_dropped: int = 0  # env faults (raise / non-finite step): discarded in the worker
    faults_injected: int = 0  # running total over the workers (fault injection)


def _infer(backend, generators, obs: ObsBatch, deterministic: bool, temperature: float):
    """Split one batch evenly over the generators; returns the merged reply and the
    per-sample policy versions (generators may briefly hold different versions)."""
    n = len(obs)
    bounds = np.linspace(0, n, len(generators) + 1).astype(int)
    refs = []
    for g, lo, hi in zip(generators, bounds[:-1], bounds[1:]):
        if hi > lo:
            refs.append(g.infer_batch.remote(obs.take(np.arange(lo, hi)), deterministic, temperature))
    replies = backend.get(refs)
    cat = lambda name: np.concatenate([getattr(r, name) for r in replies])  # noqa: E731
    versions = np.concatenate([np.full(len(r.values), r.version, np.int64) for r in replies])
    reply = ActionReply(0, cat("actions"), cat("tokens"), cat("logp"), cat("values"), int(versions.min()),
                        batch_size=n)
    return reply, versions


def lockstep_rollout(backend, workers, generators, assignments: List[List[EpisodeAssignment]], auto_reset: str,
                     horizon: int, deterministic: bool = False, temperature: float = 1.0,
                     bootstrap: bool = False, video_slots: int = 0) -> RolloutResult:
    """Run `horizon` lock-step chunk steps (or until no slot is active)."""
    res = RolloutResult()
    t_start = time.perf_counter()
    if video_slots:
        backend.get([workers[0].set_video_slots.remote(list(range(video_slots)))])
    obs = backend.get([w.reset.remote(a, auto_reset) for w, a in zip(workers, assignments)])
    active = [np.ones(len(o), bool) for o in obs]
    for _ in range(horizon):
        idx = [np.flatnonzero(a) for a in active]
        sizes = [len(i) for i in idx]
        if sum(sizes) == 0:
            break
        t0 = time.perf_counter()
        batch = ObsBatch.concat([o.take(i) for o, i in zip(obs, idx) if len(i)])
        reply, versions = _infer(backend, generators, batch, deterministic, temperature)
        res.infer_time_s += time.perf_counter() - t0
        res.decisions += len(batch)
        t0 = time.perf_counter()
        refs, start = [], 0
        for w, o, i, n in zip(workers, obs, idx, sizes):
            full = lambda arr: _scatter(arr[start:start + n], i, len(o))  # noqa: E731
            refs.append(w.step.remote(full(reply.actions), full(reply.tokens), full(reply.logp), full(reply.values),
                                      full(versions), active[len(refs)]))
            start += n
        results = backend.get(refs)
        res.env_time_s += time.perf_counter() - t0
        obs = [r.obs for r in results]
        active = [r.active for r in results]
        res.env_steps += sum(r.env_steps for r in results)
    values = [np.zeros(len(o), np.float32) for o in obs]
    if bootstrap and any(a.any() for a in active):
        reply, _ = _infer(backend, generators, ObsBatch.concat(obs), True, temperature)
        values = np.split(reply.values, np.cumsum([len(o) for o in obs])[:-1])
    backend.get([w.cut.remote(v) for w, v in zip(workers, values)])
    for wi, d in enumerate(backend.get([w.drain.remote() for w in workers])):
        res.episodes.extend(d["episodes"])
        res.outcomes.extend(d["outcomes"])
        res.episodes_dropped += d.get("episodes_dropped", 0)
        res.faults_injected += d.get("faults_injected", 0)
        for slot, frames in d["frames"].items():
            res.frames[(wi, slot)] = frames
    if video_slots:
        backend.get([workers[0].set_video_slots.remote([])])
    res.wall_s = time.perf_counter() - t_start
    return res


def _scatter(values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + values.shape[1:], values.dtype)
    out[idx] = values
    return out
