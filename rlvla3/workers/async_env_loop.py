"""Per-env asynchronous rollout inside one env worker.

Each slot sends its ActionRequest as soon as its chunk finishes and never waits for
another slot: the generator's reply completes a future whose callback schedules the
slot's next chunk on the worker's thread pool. A finished episode leaves at once and the
slot starts its next admitted assignment immediately (or idles until one arrives).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, List

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.core.router import Router
from rlvla3.core.types import ActionRequest


class AsyncSlotRunner:
    def __init__(self, worker, generators, router: str, num_generators: int):
        self.w = worker
        self.generators = generators
        self.router = Router(router, num_generators, worker.worker_id)
        self.outstanding = [0] * num_generators
        self.assignments: Deque[EpisodeAssignment] = deque()
        self.idle = set(range(worker.num_slots))
        self.lock = threading.Lock()
        self.stopping = False
        self.requests = 0
        self.failed_requests = 0
        self.episodes_dropped = 0
        self.slot_busy_s = 0.0  # time slots spent stepping/resetting (utilisation numerator)
        self.t_start = time.perf_counter()

    def start(self) -> None:
        self.t_start = time.perf_counter()

    # --- assignments -------------------------------------------------------------------
    def add(self, assignments: List[EpisodeAssignment]) -> int:
        with self.lock:
            self.assignments.extend(assignments)
            starts = []
            while self.idle and self.assignments and not self.stopping:
                starts.append((self.idle.pop(), self.assignments.popleft()))
        for slot, a in starts:
            self.w.pool.submit(self._guard, self._start_slot, slot, a)
        return len(self.assignments)

    def _take_assignment(self, slot: int):
        with self.lock:
            if self.assignments and not self.stopping:
                return self.assignments.popleft()
            self.idle.add(slot)
            return None

    # --- slot life cycle (runs on the worker's thread pool) ----------------------------------
    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # an env fault must not kill the runner; the slot's episode is dropped
            import traceback

            traceback.print_exc()
            slot = args[0]
            self.w.recorders[slot].clear()
            with self.lock:
                self.episodes_dropped += 1
            self._next_episode(slot)

    def _start_slot(self, slot: int, a: EpisodeAssignment) -> None:
        t0 = time.perf_counter()
        self.w._reset_slot(slot, a)
        self._add_busy(time.perf_counter() - t0)
        self._send(slot)

    def _next_episode(self, slot: int) -> None:
        a = self._take_assignment(slot)
        if a is not None:
            self._start_slot(slot, a)

    def _send(self, slot: int) -> None:
        obs = self.w._obs_batch([slot])
        with self.lock:
            g = self.router.pick(slot, self.outstanding)
            self.outstanding[g] += 1
            self.requests += 1
            rid = self.requests
        req = ActionRequest(rid, self.w.worker_id, slot, obs)
        fut = self.generators[g].infer.remote(req).future()
        fut.add_done_callback(lambda f, s=slot, g=g: self.w.pool.submit(self._guard, self._on_reply, s, g, f))

    def _on_reply(self, slot: int, g: int, fut) -> None:
        with self.lock:
            self.outstanding[g] -= 1
        try:
            reply = fut.result()
        except Exception:  # generator failed: drop this episode, count it, keep the slot going
            with self.lock:
                self.failed_requests += 1
                self.episodes_dropped += 1
            self.w.recorders[slot].clear()
            self._next_episode(slot)
            return
        t0 = time.perf_counter()
        done, _, _ = self.w.step_slot(slot, reply.actions[0], reply.tokens[0], reply.logp[0], float(reply.values[0]),
                                      reply.version)
        self._add_busy(time.perf_counter() - t0)
        if done:
            self._next_episode(slot)
        elif self.stopping:
            self.w.recorders[slot].clear()  # unfinished episode at shutdown: never reaches the trainer
            with self.lock:
                self.idle.add(slot)
        else:
            self._send(slot)

    def _add_busy(self, dt: float) -> None:
        with self.lock:
            self.slot_busy_s += dt

    # --- control -------------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            return {"queued_assignments": len(self.assignments), "idle_slots": len(self.idle),
                    "outstanding": sum(self.outstanding), "requests": self.requests,
                    "failed_requests": self.failed_requests, "episodes_dropped": self.episodes_dropped}

    def stop(self, timeout_s: float = 30.0) -> dict:
        """Stop starting episodes and sending requests; wait for in-flight replies."""
        with self.lock:
            self.stopping = True
            self.assignments.clear()
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with self.lock:
                if len(self.idle) == self.w.num_slots:
                    break
            time.sleep(0.01)
        wall = time.perf_counter() - self.t_start
        out = self.status()
        out["slot_utilization"] = self.slot_busy_s / (wall * self.w.num_slots) if wall > 0 else 0.0
        return out
