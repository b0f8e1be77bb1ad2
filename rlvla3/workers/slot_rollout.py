"""The asynchronous rollout of one env worker, slot by slot.

A slot holds `envs_per_slot` envs (env sharding: one env when the simulator is costly, a
few when it is cheap so that one request carries several observations). Each slot sends
its ActionRequest as soon as its chunk finishes and never waits for another slot: the
generator's answer schedules the slot's next chunk on the worker's thread pool. A finished
episode leaves at once and its env starts the next admitted assignment immediately (or
idles until one arrives); the slot goes on with its other envs meanwhile. The envs are
driven only through the env worker's public slot operations. Requests go out one way,
`channel.submit`, to a `RayChannel` or an `ActionClient` (socket); each gets an `Answer`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from functools import partial
from typing import Deque, List, Optional, Set

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.core.router import Router
from rlvla3.core.types import ActionRequest
from rlvla3.workers.action_channel import CONNECT_TIMEOUT_S, ActionClient, Answer
from rlvla3.workers.request_coalescer import RequestCoalescer


class RayChannel:
    """Action requests to one generator as Ray calls: `infer` for one, `infer_many` for several."""

    def __init__(self, generator):
        self.generator = generator

    def submit(self, requests: List[ActionRequest], callbacks: List) -> None:
        def answer(fut) -> None:
            try:
                replies = [fut.result()] if len(requests) == 1 else fut.result()
                answers = [Answer(r.request_id, reply=rep) for r, rep in zip(requests, replies)]
            except Exception as e:  # a failed call, or one that could not even be made
                answers = [Answer(r.request_id, error=e) for r in requests]
            for cb, a in zip(callbacks, answers):
                cb(a)

        fut, gen = Future(), self.generator
        try:
            fut = (gen.infer.remote(requests[0]) if len(requests) == 1 else gen.infer_many.remote(requests)).future()
        except Exception as e:
            fut.set_exception(e)
        fut.add_done_callback(answer)


class SlotRollout:
    def __init__(self, worker, generators, router: str, num_generators: int, envs_per_slot: int = 1,
                 coalesce_ms: float = 0.0, transport: str = "ray"):
        if envs_per_slot < 1 or worker.num_slots % envs_per_slot:
            raise ValueError(f"rollout.envs_per_slot ({envs_per_slot}) must be >= 1 and divide the envs of a worker "
                             f"({worker.num_slots})")
        self.worker = worker
        self.generators = list(generators)
        self.router = Router(router, num_generators, worker.worker_id)
        self.outstanding = [0] * num_generators
        self.assignments: Deque[EpisodeAssignment] = deque()
        k = envs_per_slot
        self.slot_envs: List[List[int]] = [list(range(s * k, (s + 1) * k)) for s in range(worker.num_slots // k)]
        self.running: List[Set[int]] = [set() for _ in self.slot_envs]  # envs of each slot with an episode on
        self.assigned = {}  # env -> the assignment whose reset has not completed (reported if it fails)
        self.idle_slots = set(range(len(self.slot_envs)))  # slots with no episode on and no request out
        self.lock = threading.Lock()
        self.stopping = False
        self.requests = self.failed_requests = self.episodes_dropped = 0
        self.env_faults = 0  # env errors / non-finite steps caught in this worker
        self.sent = {}  # request id -> (generator, monotonic send time) of requests awaiting a reply
        self.step_started = [0.0] * len(self.slot_envs)  # monotonic start of the step/reset in progress; 0 = none
        self.step_what = ["chunk step"] * len(self.slot_envs)  # what is in progress (the supervisor's limit)
        self.slot_started_once = [False] * len(self.slot_envs)  # a first reset may build EGL contexts: startup
        self.slot_busy_s = 0.0  # time slots spent stepping/resetting (utilisation numerator)
        # Benchmark timelines (worker.spans on): when each slot's last chunk/reset ended, and
        # request id -> (that time, when its request was built); see `_trace`.
        self.t_free = [0.0] * len(self.slot_envs)
        self.traced = {}
        self.t_start = time.perf_counter()
        # Requests ready within coalesce_ms of each other share one Ray call (0 = one call each).
        self.coalescer = RequestCoalescer(coalesce_ms / 1000.0, self._call) if coalesce_ms > 0 else None
        self.socket = transport == "socket"  # one direct connection per generator (action_channel.py)
        self.channels: List[Optional[object]] = [None if self.socket else RayChannel(h) for h in self.generators]
        self.retry_at = [0.0] * len(generators)  # socket: when a lost connection may be retried
        if self.socket:
            self._connect(range(len(generators)), strict=True)  # at start, a generator out of reach is an error

    def _connect(self, which, strict: bool = False) -> None:
        """(Re)open the connections to these generators, each within its deadline. Not strict
        (a generator was just replaced): one that cannot be reached stays None, its requests
        fail and the next request tries again."""
        import ray

        for g in which:
            old, self.channels[g] = self.channels[g], None
            if old is not None:
                old.close()
            try:
                address = ray.get(self.generators[g].channel_address.remote(), timeout=CONNECT_TIMEOUT_S)
                self.channels[g] = ActionClient(address, timeout_s=CONNECT_TIMEOUT_S)
            except Exception as e:
                msg = f"env worker {self.worker.worker_id}: cannot connect to generator {g}: {e!r}"
                if strict:
                    raise RuntimeError(msg) from e
                print(msg, flush=True)

    def _may_reconnect(self, g: int) -> bool:
        """At most one reconnection attempt per generator every few seconds (requests to it
        fail meanwhile), so a generator out of reach does not stall every slot in turn."""
        now = time.monotonic()
        with self.lock:
            if now < self.retry_at[g]:
                return False
            self.retry_at[g] = now + 5.0
        return True

    def set_generators(self, generators) -> None:
        old, self.generators = self.generators, list(generators)
        if not self.socket:
            self.channels = [RayChannel(h) for h in self.generators]
            return
        self._connect([g for g in range(len(generators)) if _actor_id(generators[g]) != _actor_id(old[g])
                       or self.channels[g] is None or self.channels[g].broken is not None])

    # --- assignments -------------------------------------------------------------------
    def add(self, assignments: List[EpisodeAssignment]) -> int:
        with self.lock:
            self.assignments.extend(assignments)
            starts = []
            while self.idle_slots and self.assignments and not self.stopping:
                starts.append(self.idle_slots.pop())
        for slot in starts:
            self.worker.submit(self._guard, self._fill_and_send, slot)
        return len(self.assignments)

    def _take_assignment(self):
        with self.lock:
            if self.assignments and not self.stopping:
                return self.assignments.popleft()
            return None

    # --- slot life cycle (runs on the worker's thread pool) ----------------------------------
    def _guard(self, fn, slot: int, *args) -> None:
        try:
            fn(slot, *args)
        except Exception as e:  # an env fault must not end the rollout; the slot's episodes are dropped
            self.step_started[slot] = 0.0
            lost = 0
            for i in self.slot_envs[slot]:  # every env of the slot has settled (_each waits for all)
                if self.worker.has_episode(i):  # its episode was running
                    self.worker.drop_slot(i, repr(e))
                elif i in self.assigned:  # its reset failed: the episode never started
                    self.worker.drop_assignment(self.assigned.pop(i), repr(e))
                else:  # idle, or its episode ended in this very step and was delivered: not a drop
                    continue
                lost += 1
            with self.lock:
                self.episodes_dropped += lost
                self.env_faults += 1
            self.running[slot].clear()
            self.worker.submit(self._guard, self._fill_and_send, slot)  # guarded: a failing reset is caught too

    def _fill_and_send(self, slot: int) -> None:
        """Start admitted episodes on the slot's idle envs, then ask for actions (or idle)."""
        t0 = time.perf_counter()
        starts = []
        for i in self.slot_envs[slot]:
            if i not in self.running[slot]:
                a = self._take_assignment()
                if a is None:
                    break
                starts.append((i, a))
        self.assigned.update(starts)
        self.running[slot].update(i for i, _ in starts)  # before the resets: a failing one is counted as dropped
        if starts:  # a reset that hangs is caught like a hung chunk step (the first one has the startup limit)
            self.step_what[slot] = "reset" if self.slot_started_once[slot] else "first reset"
            self.step_started[slot] = time.monotonic()
        self._each(self._start_episode, starts)
        self.step_started[slot] = 0.0
        if starts:
            self.t_free[slot] = time.time()
        self.slot_started_once[slot] = self.slot_started_once[slot] or bool(starts)
        self._add_busy(time.perf_counter() - t0)
        if self.running[slot] and not self.stopping:
            self._send(slot)
            return
        for i in self.running[slot]:  # stopping: unfinished episodes never reach the trainer
            self.worker.discard_slot(i)
        self.running[slot].clear()
        with self.lock:
            self.idle_slots.add(slot)
        if not self.stopping and self.assignments:  # an assignment arrived while going idle
            with self.lock:
                if slot in self.idle_slots and self.assignments:
                    self.idle_slots.discard(slot)
                    self.worker.submit(self._guard, self._fill_and_send, slot)

    def _start_episode(self, env_assignment) -> None:
        i, a = env_assignment
        self.worker.reset_slot(i, a)
        self.assigned.pop(i, None)  # started: from now on it ends delivered or dropped by drop_slot

    def _send(self, slot: int) -> None:
        t_ready = time.time()
        envs = sorted(self.running[slot])
        obs = self.worker.observe(envs)
        with self.lock:
            g = self.router.pick(slot, self.outstanding)
            self.outstanding[g] += 1
            self.requests += 1
            rid = self.requests
            self.sent[rid] = (g, time.monotonic())
            if self.worker.spans.enabled:
                self.traced[rid] = (self.t_free[slot], t_ready)
        item = (ActionRequest(rid, self.worker.worker_id, slot, obs), slot, envs)
        if self.coalescer is not None:
            self.coalescer.put(g, item)
        else:
            self._call(g, [item])

    def _call(self, g: int, items: list) -> None:
        """Send these (request, slot, envs) items to generator g in one message; each slot's
        answer is handled on the worker's pool."""
        channel = self.channels[g]
        if channel is None and self.socket and self._may_reconnect(g):
            self._connect([g])
            channel = self.channels[g]
        requests = [req for req, _, _ in items]
        callbacks = [partial(self._received, slot, g, envs) for _, slot, envs in items]
        if self.worker.spans.enabled:
            t_sent = time.time()
            for req in requests:
                req.t_sent = t_sent
        if channel is None:
            for req, cb in zip(requests, callbacks):
                cb(Answer(req.request_id, error=ConnectionError(f"no connection to generator {g}")))
        else:
            channel.submit(requests, callbacks)

    def _received(self, slot: int, g: int, envs: List[int], answer: Answer) -> None:
        """An answer arrived (on the channel's thread): handle it on the worker's pool."""
        t_recv = time.time() if self.worker.spans.enabled else 0.0
        self.worker.submit(self._guard, self._on_answer, slot, g, envs, answer, t_recv)

    def _on_answer(self, slot: int, g: int, envs: List[int], answer: Answer, t_recv: float = 0.0) -> None:
        t_begin = time.time()
        with self.lock:
            self.outstanding[g] -= 1
            self.sent.pop(answer.request_id, None)
            traced = self.traced.pop(answer.request_id, None)
        if traced is not None and answer.error is None:
            self._trace(envs[0], traced, answer.reply, t_recv, t_begin)
        if answer.error is not None:  # generator failed: drop these episodes, count them, keep the slot going
            with self.lock:
                self.failed_requests += 1
                self.episodes_dropped += len(envs)
            for i in envs:
                self.worker.drop_slot(i, "generator request failed")
            self.running[slot].clear()
            self._fill_and_send(slot)
            return
        reply = answer.reply
        t0 = time.perf_counter()
        self.step_what[slot] = "chunk step"
        self.step_started[slot] = time.monotonic()  # a hang shows as an old start (see status)
        done = self._each(lambda k: self.worker.step_slot(envs[k], reply.actions[k], reply.tokens[k], reply.logp[k],
                                                          float(reply.values[k]), reply.version)[0], range(len(envs)))
        self.running[slot].difference_update(i for i, d in zip(envs, done) if d)
        self.step_started[slot] = 0.0
        self.t_free[slot] = time.time()
        self._add_busy(time.perf_counter() - t0)
        self._fill_and_send(slot)

    def _trace(self, env: int, traced: tuple, reply, t_recv: float, t_begin: float) -> None:
        """One decision's round trip as an `action_rt` span on the slot's track, from the end of its
        last chunk (or reset) to the start of handling the answer; args are the offsets (ms) of
        each stage from that start (bench/round_trip.py reads them)."""
        t_free, t_ready = traced
        if not t_free:
            return
        marks = {"ready": t_ready, **(reply.timing or {}), "recv": t_recv, "begin": t_begin}
        marks = {k: round((v - t_free) * 1000.0, 3) for k, v in marks.items() if v}
        self.worker.spans.record(self.worker.track(env), "action_rt", t_free, t_begin - t_free,
                                 batch=reply.batch_size, **marks)

    def _each(self, fn, items) -> list:
        """Run fn over a slot's envs, in parallel when there are several (a simulator that
        sleeps or releases the GIL overlaps): the calling slot thread takes the first, the
        worker's pool the others. The pool has a thread per env, so with every slot busy here
        there are still k - 1 threads free per slot."""
        items = list(items)
        futs = [self.worker.submit(fn, x) for x in items[1:]]
        out, error = [], None
        for k in range(len(items)):  # wait for every env before raising: a fault handled while a
            try:  # slot-mate still steps would drop an episode that then ends, or is half recorded
                out.append(fn(items[0]) if k == 0 else futs[k - 1].result())
            except Exception as e:
                error = error or e
        if error is not None:
            raise error
        return out

    def _add_busy(self, dt: float) -> None:
        with self.lock:
            self.slot_busy_s += dt

    # --- control -------------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            idle_envs = self.worker.num_slots - sum(len(r) for r in self.running)
            now = time.monotonic()
            ages = {"first reset": [0.0], "reset": [0.0], "chunk step": [0.0]}  # of what is in progress
            for t, what in zip(self.step_started, self.step_what):
                if t:
                    ages[what].append(now - t)
            oldest = [0.0] * len(self.outstanding)  # per generator: age of its oldest unanswered request
            for g, t in self.sent.values():
                oldest[g] = max(oldest[g], now - t)
            return {"longest_step_s": max(ages["chunk step"]), "longest_reset_s": max(ages["reset"]),
                    "longest_first_reset_s": max(ages["first reset"]),
                    "env_faults": self.env_faults,
                    "oldest_request_s": oldest,
                    "queued_assignments": len(self.assignments), "idle_slots": len(self.idle_slots),
                    "idle_envs": idle_envs, "outstanding": sum(self.outstanding), "requests": self.requests,
                    "failed_requests": self.failed_requests, "episodes_dropped": self.episodes_dropped,
                    "calls": self.coalescer.calls if self.coalescer is not None else self.requests}

    def stop(self, timeout_s: float = 30.0) -> dict:
        """Stop starting episodes and sending requests; wait for in-flight replies."""
        with self.lock:
            self.stopping = True
            self.assignments.clear()
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with self.lock:
                if len(self.idle_slots) == len(self.slot_envs):
                    break
            time.sleep(0.01)
        if self.coalescer is not None:
            self.coalescer.close()
        for channel in self.channels if self.socket else []:
            if channel is not None:
                channel.close()
        wall = time.perf_counter() - self.t_start
        out = self.status()
        out["slot_utilization"] = self.slot_busy_s / (wall * len(self.slot_envs)) if wall > 0 else 0.0
        return out


def _actor_id(handle):
    return getattr(handle, "_actor_id", id(handle))  # handles arrive as new objects after each Ray call

