"""Env worker: one process owning several env slots, each with its own episode buffer.

Lock-step API (sync schedules): `reset` / `step` / `cut` driven by the schedule.
The asynchronous API (each slot asks a generator for actions when *it* is ready) lives in
`rlvla3/workers/slot_rollout.py` and drives the slots through their public operations
(`reset_slot`, `observe`, `step_slot`, `drop_slot`, ...).
"""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment, GroupSampler
from rlvla3.core.types import Episode, ObsBatch
from rlvla3.envs.config import TabletopConfig
from rlvla3.envs.factory import make_env
from rlvla3.envs.faults import EnvFaultConfig, injected_count, wrap_with_faults
from rlvla3.workers.env_guard import check_obs, check_step
from rlvla3.workers.episode_recorder import EpisodeRecorder
from rlvla3.workers.role import Role
from rlvla3.workers.slot_rollout import SlotRollout

AUTO_RESET = ("none", "filler", "keep")


@dataclass
class StepResult:
    obs: ObsBatch  # current observation of every slot (idle slots repeat their last obs)
    active: np.ndarray  # (n,) bool: slot still needs actions
    env_steps: int  # low-level steps simulated in this call
    finished: int  # episodes finished in this call


@dataclass
class WorkerStats:
    env_steps: int = 0
    step_time_s: float = 0.0
    reset_time_s: float = 0.0
    frames: Dict[int, List[np.ndarray]] = field(default_factory=dict)


class EnvWorker(Role):
    def __init__(self, worker_id: int, env_cfg: TabletopConfig, num_slots: int, seed: int,
                 slow_slots: Optional[Dict[int, float]] = None, torch_threads: int = 1,
                 faults: Optional[EnvFaultConfig] = None, incarnation: int = 0, nice: int = 0):
        super().__init__(torch_threads, nice)
        self.worker_id = worker_id
        self.incarnation = incarnation  # restarts of this worker: keeps episode ids unique across them
        self.envs: list = []
        for i in range(num_slots):
            cfg = env_cfg
            if slow_slots and i in slow_slots:  # straggler slots: same task, slower simulator (tabletop latency model)
                cfg = copy.deepcopy(env_cfg)
                cfg.latency.slow_factor *= float(slow_slots[i])
            self.envs.append(make_env(cfg, seed=seed * 1000 + i))
        self.envs = wrap_with_faults(self.envs, faults, worker_id, incarnation)
        self.dropped_keys: List[str] = []  # group keys of kept episodes dropped on an env fault (since last drain)
        self.episodes_dropped = 0
        self.recorders = [EpisodeRecorder() for _ in range(num_slots)]
        self.obs: List[dict] = [None] * num_slots
        self.active = np.zeros(num_slots, bool)
        self.auto_reset = "none"
        self.segment_chunks = 0  # async PPO: hand over a running episode every this many decisions (0: whole)
        self.filler = GroupSampler(self.envs[0].num_tasks, env_cfg.num_init_states, 1, seed + 7919 * worker_id)
        self.finished: List[Episode] = []
        self.outcomes: List[dict] = []  # (task, init, success, steps) of every finished kept episode
        self.stats = WorkerStats()
        self._episode_counter = 0
        self.record_video_slots: Sequence[int] = ()
        # Slots step in threads: a simulator that sleeps (runs elsewhere) or releases the
        # GIL overlaps with the others, in lock-step and asynchronous schedules alike.
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=num_slots, thread_name_prefix=f"envw{worker_id}")
        self.rollout = None  # SlotRollout when an asynchronous schedule drives this worker

    @property
    def num_slots(self) -> int:
        return len(self.envs)

    @property
    def num_tasks(self) -> int:
        return self.envs[0].num_tasks

    def task_instructions(self) -> List[str]:
        return [t.instruction for t in self.envs[0].tasks]

    # --- slot operations (the lock-step API below and SlotRollout use these) --------------
    def _track(self, i: int) -> str:
        return f"env{self.worker_id}/slot{i}"

    def track(self, i: int) -> str:
        """Env i's timeline track (a benchmark's spans)."""
        return self._track(i)

    def submit(self, fn, *args):
        """Run fn(*args) on the slots' thread pool (one thread per slot); returns its future."""
        return self.pool.submit(fn, *args)

    def has_episode(self, i: int) -> bool:
        """Slot i holds an unfinished episode (running, or already recorded into)."""
        return bool(self.active[i]) or len(self.recorders[i]) > 0

    def discard_slot(self, i: int) -> None:
        """Forget slot i's unfinished episode without counting it (a stopping rollout)."""
        self.recorders[i].clear()
        self.active[i] = False

    def reset_slot(self, i: int, a: EpisodeAssignment) -> None:
        t0, w0 = time.perf_counter(), time.time()
        obs, info = self.envs[i].reset(options={"task_id": a.task_id, "init_id": a.init_id, "split": a.split})
        check_obs(obs, f"env worker {self.worker_id} slot {i} reset")
        self.spans.record(self._track(i), "reset", w0, time.time() - w0)
        with self._lock:
            self.stats.reset_time_s += time.perf_counter() - t0
        self.obs[i] = obs
        self.recorders[i].start(a.task_id, a.init_id, a.group_key, obs["instruction"], keep=a.keep)
        self.active[i] = True
        if i in self.record_video_slots:
            self.stats.frames.setdefault(i, []).append(obs["image"])

    def _close_slot(self, i: int, success: bool, terminated: bool, bootstrap_value: float = 0.0,
                    bootstrap_obs: Optional[ObsBatch] = None) -> None:
        rec = self.recorders[i]
        ep = rec.build(success, terminated, bootstrap_value, self.worker_id, i, self._next_episode_id(), bootstrap_obs)
        with self._lock:
            if rec.keep:
                self.outcomes.append({"task_id": rec.task_id, "init_id": rec.init_id, "success": bool(success),
                                      "env_steps": rec.env_steps, "slot": i, "worker": self.worker_id})
                if ep is not None:
                    self.finished.append(ep)
        self.discard_slot(i)

    def _hand_over_segment(self, i: int, bootstrap_value: float) -> None:
        """Slot i's decisions so far go to the experience stream as one segment of its running
        episode, so that their samples reach the trainer before the episode ends (fresher, and
        counted in the staleness window sooner); the episode goes on in the slot."""
        # each segment has its own id, so its samples' ids stay unique
        seg = self.recorders[i].cut_segment(bootstrap_value, self.worker_id, i, self._next_episode_id())
        if seg is not None:
            with self._lock:
                self.finished.append(seg)

    def _next_episode_id(self) -> int:
        """A new id, unique per run (episodes and segments, across this worker's restarts)."""
        with self._lock:
            self._episode_counter += 1
            return (self.worker_id << 32) + (self.incarnation << 24) + self._episode_counter

    def drop_slot(self, i: int, reason: str = "") -> None:
        """Discard slot i's unfinished episode (env fault): counted, never handed over."""
        rec = self.recorders[i]
        if self.has_episode(i):
            self._count_drop(rec.keep, rec.group_key)
            print(f"env worker {self.worker_id} slot {i}: episode dropped ({reason})", flush=True)
        self.discard_slot(i)

    def drop_assignment(self, a: EpisodeAssignment, reason: str = "") -> None:
        """An admitted episode that never started (its reset failed): counted like a drop."""
        self._count_drop(a.keep, a.group_key)
        print(f"env worker {self.worker_id}: episode {a.group_key} dropped before it started ({reason})", flush=True)

    def _count_drop(self, keep: bool, group_key: str) -> None:
        """One episode dropped; a kept one's group key goes to the driver (`drain`)."""
        with self._lock:
            self.episodes_dropped += 1
            if keep:
                self.dropped_keys.append(group_key)

    def observe(self, slots: Sequence[int]) -> ObsBatch:
        """The current observations of these slots, as one batch."""
        return ObsBatch(np.stack([self.obs[i]["image"] for i in slots]),
                        np.stack([self.obs[i]["proprio"] for i in slots]).astype(np.float32),
                        [self.obs[i]["instruction"] for i in slots])

    def step_slot(self, i: int, actions, tokens, logp, value: float, version: int) -> tuple:
        """Execute one action chunk on slot i; returns (done, success, substeps)."""
        obs = self.obs[i]
        if self.segment_chunks and self.recorders[i].keep and len(self.recorders[i]) >= self.segment_chunks:
            self._hand_over_segment(i, value)  # `value` is V(obs), the segment's bootstrap
        self.recorders[i].record_decision(obs["image"], obs["proprio"], tokens, logp, value, version)
        t0, w0, c0 = time.perf_counter(), time.time(), time.thread_time()
        obs, reward, terminated, truncated, info = self.envs[i].chunk_step(np.asarray(actions))
        check_step(obs, reward, f"env worker {self.worker_id} slot {i}")  # before anything is recorded
        substeps = int(info["substeps"])
        # cpu: this thread's CPU in the chunk; the rest of its wall time waited (for the GIL beside
        # the process's other slots, a GPU that renders, the machine's scheduler)
        self.spans.record(self._track(i), "env_step", w0, time.time() - w0, steps=substeps,
                          cpu=time.thread_time() - c0)
        with self._lock:
            self.stats.step_time_s += time.perf_counter() - t0
            self.stats.env_steps += substeps
        self.recorders[i].record_outcome(reward, substeps)
        self.obs[i] = obs
        if i in self.record_video_slots:
            self.stats.frames.setdefault(i, []).extend(info.get("frames", [obs["image"]]))
        done = bool(terminated or truncated)
        if done:
            # A time-limit cut is terminal only where the observation holds the time (tabletop's
            # proprio has t/T). Elsewhere (LIBERO) the state could go on: the episode closes
            # non-terminal with s_T, whose value the schedule computes (this worker runs no policy).
            terminal = bool(terminated or getattr(self.envs[i], "obs_has_time", False))
            self._close_slot(i, bool(info["success"]), terminal, bootstrap_obs=None if terminal else self.observe([i]))
        return done, bool(info["success"]), substeps

    # --- lock-step API -------------------------------------------------------------------
    def reset(self, assignments: List[EpisodeAssignment], auto_reset: str = "none") -> ObsBatch:
        """Start one episode per slot. auto_reset: what a slot does after its episode ends
        within a lock-step rollout: none (go idle), filler (keep simulating discarded
        episodes, RLinf's fixed-horizon behaviour), keep (new kept episodes)."""
        if len(assignments) != self.num_slots:
            raise ValueError(f"worker {self.worker_id}: {len(assignments)} assignments for {self.num_slots} slots")
        if auto_reset not in AUTO_RESET:
            raise ValueError(f"auto_reset must be one of {AUTO_RESET}, got {auto_reset!r}")
        self.auto_reset = auto_reset
        self.segment_chunks = 0  # lock-step rollouts cut their episodes at the horizon instead
        # In parallel, like steps: a simulator's reset can cost as much as many steps.
        list(self.pool.map(lambda ia: self.reset_slot(*ia), enumerate(assignments)))
        return self.observe(range(self.num_slots))

    def step(self, actions: np.ndarray, tokens: np.ndarray, logp: np.ndarray, values: np.ndarray,
             versions: np.ndarray, stepping: np.ndarray) -> StepResult:
        """One chunk on every slot flagged in `stepping` (arrays are per slot)."""
        steps0 = self.stats.env_steps
        idx = np.flatnonzero(stepping)
        fillers = [self.filler.next() if self.auto_reset != "none" else None for _ in idx]

        def one(k: int) -> bool:
            i = idx[k]
            try:
                done, _, _ = self.step_slot(i, actions[i], tokens[i], logp[i], values[i], int(versions[i]))
            except Exception as e:  # env fault: drop this episode, the slot idles to the end of the rollout
                self.drop_slot(i, repr(e))
                return False
            if done and fillers[k] is not None:
                a = fillers[k]
                self.reset_slot(i, EpisodeAssignment(a.task_id, a.init_id, keep=self.auto_reset == "keep",
                                                      group_key=f"w{self.worker_id}f"))
            return done

        finished = sum(self.pool.map(one, range(len(idx))))
        return StepResult(self.observe(range(self.num_slots)), self.active.copy(),
                          self.stats.env_steps - steps0, finished)

    def cut(self, bootstrap_values: np.ndarray) -> int:
        """End every unfinished episode at the rollout horizon (bootstrapped segments)."""
        n = 0
        for i in np.flatnonzero(self.active):
            if self.recorders[i].keep and len(self.recorders[i]) > 0:
                ep = self.recorders[i].build(False, False, float(bootstrap_values[i]), self.worker_id, i,
                                             self._next_episode_id())
                self.finished.append(ep)
                n += 1
            self.discard_slot(i)
        return n

    def drain(self) -> dict:
        """Hand over finished episodes, outcomes and counters since the last drain."""
        out = {"episodes": self.finished, "outcomes": self.outcomes, "env_steps": self.stats.env_steps,
               "step_time_s": self.stats.step_time_s, "reset_time_s": self.stats.reset_time_s,
               "frames": self.stats.frames, "dropped_keys": self.dropped_keys,
               "episodes_dropped": self.episodes_dropped, "faults_injected": injected_count(self.envs)}
        self.finished, self.outcomes, self.dropped_keys = [], [], []
        self.episodes_dropped = 0  # per drain, like the episodes
        self.stats.frames = {}
        return out

    # --- asynchronous API (see slot_rollout.py) ---------------------------------------------
    def start_async(self, generators, router: str, num_generators: int, envs_per_slot: int = 1,
                    coalesce_ms: float = 0.0, transport: str = "ray", segment_chunks: int = 0) -> bool:
        if segment_chunks < 0:
            raise ValueError(f"rollout.segment_chunks must be >= 0, got {segment_chunks}")
        self.segment_chunks = segment_chunks
        self.rollout = SlotRollout(self, generators, router, num_generators, envs_per_slot, coalesce_ms, transport)
        return True

    def set_generators(self, generators) -> bool:
        """Use these generator handles from now on (one was re-created after dying)."""
        self.rollout.set_generators(generators)
        return True

    def add_assignments(self, assignments: List[EpisodeAssignment]) -> int:
        return self.rollout.add(assignments)

    def async_status(self) -> dict:
        return self.rollout.status()

    def poll(self) -> dict:
        """`async_status` and `drain` in one round trip: the driver's tick (one Ray call per
        worker instead of two; on a 2-core machine the calls themselves cost CPU)."""
        return {"status": self.rollout.status(), "drain": self.drain()}

    def stop_async(self) -> dict:
        return self.rollout.stop() if self.rollout is not None else {}

    # --- benchmarks ------------------------------------------------------------------------
    def bench_sim(self, seconds: float, chunk: int, action_dim: int,
                  episode_steps: Optional[Sequence[int]] = None) -> dict:
        """Stage bound: the simulators alone. Every slot runs random action chunks (resets
        included) as fast as it can for `seconds`, after one untimed reset per slot (building a
        simulator's model is start-up, not throughput). Episodes run to their time limit, or,
        given `episode_steps` (lengths measured in a real run), are cut at those lengths in
        turn, so that resets weigh as much as in the run: random actions never succeed early."""
        list(self.pool.map(lambda i: self.envs[i].reset(options={"task_id": i % self.num_tasks, "init_id": 0}),
                           range(self.num_slots)))
        lengths = [int(n) for n in episode_steps or [] if n > 0]
        deadline = time.perf_counter() + seconds

        def run(i: int) -> tuple:
            rng = np.random.default_rng(i)
            env, steps, resets = self.envs[i], 0, 0
            k = (i * len(lengths)) // self.num_slots  # each slot starts at its own place in the list
            while time.perf_counter() < deadline:
                env.reset(options={"task_id": int(rng.integers(self.num_tasks)), "init_id": 0})
                resets += 1
                left = lengths[k % len(lengths)] if lengths else None
                k += 1
                done = False
                while not done and time.perf_counter() < deadline:
                    n = chunk if left is None else min(chunk, left)
                    _, _, term, trunc, info = env.chunk_step(rng.uniform(-1, 1, (n, action_dim)))
                    steps += int(info["substeps"])
                    left = None if left is None else left - int(info["substeps"])
                    done = term or trunc or left == 0
            return steps, resets

        t0 = time.perf_counter()
        out = list(self.pool.map(run, range(self.num_slots)))
        wall = time.perf_counter() - t0
        return {"env_steps": sum(o[0] for o in out), "resets": sum(o[1] for o in out), "seconds": wall}

    def set_video_slots(self, slots: Sequence[int]) -> None:
        self.record_video_slots = tuple(slots)
        self.stats.frames = {}
