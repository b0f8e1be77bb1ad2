"""Lock-step rollout over env workers and generators (the synchronous schedules and eval).

Every chunk step is a barrier: all stepping slots send observations, one batched inference
(split across generators) answers, every worker executes its chunks, and the next step
waits for the slowest worker. This is RLinf's rollout semantics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.core.experience import pending_bootstrap, set_bootstrap
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
    watch_done_at: Optional[float] = None  # perf_counter when the watched call was first seen done

    def add(self, other: "RolloutResult") -> None:
        """Another rollout of the same iteration (`rollout.rollout_epochs`): lists and times add up,
        the running totals and the first sighting of the watched call are kept."""
        self.episodes += other.episodes
        self.outcomes += other.outcomes
        self.frames.update(other.frames)
        for name in ("env_steps", "decisions", "infer_time_s", "env_time_s", "wall_s", "episodes_dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.faults_injected = other.faults_injected
        self.watch_done_at = self.watch_done_at or other.watch_done_at


def _infer(backend, generators, obs: ObsBatch, deterministic: bool, temperature: float, guard=None):
    """Split one batch evenly over the generators; returns the merged reply and the
    per-sample policy versions (generators may briefly hold different versions). With a
    guard watching generators, a dead one is replaced and its part asked again."""
    n = len(obs)
    bounds = np.linspace(0, n, len(generators) + 1).astype(int)
    parts = [(g, obs.take(np.arange(lo, hi))) for g, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])) if hi > lo]
    if guard is not None and guard.session is not None:
        asks = [(g, lambda gen, p=part: gen.infer_batch.remote(p, deterministic, temperature)) for g, part in parts]
        refs = [ask(generators[g]) for g, ask in asks]
        replies = guard.replies(refs, asks)  # a dead or wedged generator is replaced and asked again
    else:
        replies = backend.get([generators[g].infer_batch.remote(part, deterministic, temperature)
                               for g, part in parts])
    cat = lambda name: np.concatenate([getattr(r, name) for r in replies])  # noqa: E731
    versions = np.concatenate([np.full(len(r.values), r.version, np.int64) for r in replies])
    reply = ActionReply(0, cat("actions"), cat("tokens"), cat("logp"), cat("values"), int(versions.min()),
                        batch_size=n)
    return reply, versions


def lockstep_rollout(backend, workers, generators, assignments: List[List[EpisodeAssignment]], auto_reset: str,
                     horizon: int, deterministic: bool = False, temperature: float = 1.0,
                     bootstrap: bool = False, video_slots: int = 0, guard=None, watch=None) -> RolloutResult:
    """Run `horizon` lock-step chunk steps (or until no slot is active). `bootstrap` (PPO):
    episodes still running at the horizon are cut with V(s_L), and episodes cut by a time
    limit their observation does not show get V(s_T). With a `guard`
    (runtime.lockstep_guard), a worker that dies or hangs is dropped from the rollout with
    its episodes (counted) and replaced before returning. `watch` (Ray backend): a call in
    flight elsewhere (async-train's update), looked at after every chunk step: when it was
    first seen done is `watch_done_at`."""
    res = RolloutResult()
    t_start = time.perf_counter()
    lost = [False] * len(workers)
    undrained = [0] * len(workers)  # episodes that ended in a worker and wait for drain()

    def look_at_watch() -> None:
        if watch is not None and res.watch_done_at is None and backend.ray.wait([watch], timeout=0)[0]:
            res.watch_done_at = time.perf_counter()

    def call(make, slow_ok=False):
        """make(w, i) -> ref for each live worker; results per worker (None when lost)."""
        refs = [None if lost[i] else make(w, i) for i, w in enumerate(workers)]
        out = guard.gather(refs, slow_ok) if guard else backend.get([r for r in refs if r is not None])
        if guard is None:  # no guard: every worker answered or the run failed
            it = iter(out)
            out = [None if r is None else next(it) for r in refs]
        for i, o in enumerate(out):
            if o is None and not lost[i]:  # its running and finished-but-undrained episodes die with it
                lost[i] = True
                running = len(assignments[i]) if active[i] is None else int(active[i].sum())
                res.episodes_dropped += running + undrained[i]
        return out

    if video_slots:
        backend.get([workers[0].set_video_slots.remote(list(range(video_slots)))])
    active: list = [None] * len(workers)
    obs = call(lambda w, i: w.reset.remote(assignments[i], auto_reset), slow_ok=True)
    n_slots = max((len(o) for o in obs if o is not None), default=0)
    active = [np.ones(len(o), bool) if o is not None else np.zeros(n_slots, bool) for o in obs]
    for _ in range(horizon):
        idx = [np.flatnonzero(a) for a in active]
        sizes = [len(i) for i in idx]
        if sum(sizes) == 0:
            break
        t0 = time.perf_counter()
        batch = ObsBatch.concat([o.take(i) for o, i in zip(obs, idx) if len(i)])
        reply, versions = _infer(backend, generators, batch, deterministic, temperature, guard)
        res.infer_time_s += time.perf_counter() - t0
        res.decisions += len(batch)
        t0 = time.perf_counter()
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

        def step(w, k):
            lo, n, i = starts[k], sizes[k], idx[k]
            full = lambda arr: _scatter(arr[lo:lo + n], i, len(obs[k]))  # noqa: E731
            return w.step.remote(full(reply.actions), full(reply.tokens), full(reply.logp), full(reply.values),
                                 full(versions), active[k])

        results = call(step)
        res.env_time_s += time.perf_counter() - t0
        for k, r in enumerate(results):
            if r is None:
                active[k] = np.zeros(n_slots, bool)
                continue
            obs[k], active[k] = r.obs, r.active
            undrained[k] += r.finished
            res.env_steps += r.env_steps
        look_at_watch()
    live = [k for k in range(len(workers)) if not lost[k]]
    values = {k: np.zeros(len(obs[k]), np.float32) for k in live}
    if bootstrap and any(active[k].any() for k in live):
        reply, _ = _infer(backend, generators, ObsBatch.concat([obs[k] for k in live]), True, temperature, guard)
        values = dict(zip(live, np.split(reply.values, np.cumsum([len(obs[k]) for k in live])[:-1])))
    call(lambda w, k: w.cut.remote(values[k]), slow_ok=True)
    for wi, d in enumerate(call(lambda w, k: w.drain.remote(), slow_ok=True)):
        if d is None:
            continue
        res.episodes.extend(d["episodes"])
        res.outcomes.extend(d["outcomes"])
        res.episodes_dropped += d.get("episodes_dropped", 0)
        res.faults_injected += d.get("faults_injected", 0)
        res.frames.update({(wi, slot): frames for slot, frames in d["frames"].items()})
    waiting, final_obs = pending_bootstrap(res.episodes)
    if bootstrap and waiting:  # time limits the observation does not show: V(s_T), one inference
        set_bootstrap(waiting, _infer(backend, generators, final_obs, True, temperature, guard)[0].values)
    if video_slots and not lost[0]:
        backend.get([workers[0].set_video_slots.remote([])])
    if guard is not None:
        guard.replace_lost()
    look_at_watch()
    res.wall_s = time.perf_counter() - t_start
    return res


def _scatter(values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + values.shape[1:], values.dtype)
    out[idx] = values
    return out
