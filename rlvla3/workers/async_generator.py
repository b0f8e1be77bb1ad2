"""Asynchronous generator: a policy replica behind a dynamic batcher (a Ray async actor).

Env slots call `infer(request)` whenever they are ready; requests queue in the batcher,
which fires on `max_batch` samples or `max_wait_ms`. The forward pass runs in a worker
thread so new requests keep queueing meanwhile. New weights arrive in the background
(`set_weights` unpacks them onto the device in the receive thread and stores them) and are
swapped in between two batches as one device-side copy, so inference never stops for the
transfer of a weight update; every reply carries the version that produced it.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import List, Optional

from rlvla3.core.batcher import DynamicBatcher
from rlvla3.core.types import ActionReply, ActionRequest, ObsBatch, WeightsMessage
from rlvla3.workers.action_channel import ActionServer, Answer
from rlvla3.workers.fault_hooks import crash_process_if, hang_if
from rlvla3.workers.generator import Generator, StagedWeights
from rlvla3.workers.role import Role


class AsyncGenerator(Role):
    def __init__(self, gen_id: int, policy_cfg, seed: int, torch_threads: int, max_batch: int, max_wait_ms: float,
                 temperature: float = 1.0, crash_after_requests: int = 0, hang_after_requests: int = 0,
                 nice: int = 0, hang_at_start: bool = False, cuda_graph_batch: int = 0, own_stream: bool = False):
        self.crash_after_requests = crash_after_requests  # fault injection; 0 = off
        self.hang_after_requests = hang_after_requests
        self.requests = 0
        self.replica = Generator(gen_id, policy_cfg, seed, torch_threads, nice=nice, hang_at_start=hang_at_start,
                                 cuda_graph_batch=cuda_graph_batch, own_stream=own_stream)
        super().__init__(torch_threads, spans=self.replica.spans)  # the replica applied process.nice; one timeline
        self.batcher = DynamicBatcher(max_batch, max_wait_ms / 1000.0)
        self.temperature = temperature
        self.pending_weights: Optional[StagedWeights] = None
        self.swaps, self.busy_s = 0, 0.0
        self.t_created = time.perf_counter()
        self._free_since = self.t_created  # when the last forward returned (the batcher's late-firing stat)
        self._wakeup: Optional[asyncio.Event] = None
        self._task = None
        self._model_lock: Optional[asyncio.Lock] = None  # no weight swap during any forward
        self._receive_thread = ThreadPoolExecutor(1, thread_name_prefix="weights")  # receives in call order
        self._server = None  # request socket, opened on the first channel_address call

    def _ensure_loop(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._model_lock = asyncio.Lock()
            self._task = asyncio.get_running_loop().create_task(self._serve())

    async def infer(self, request: ActionRequest) -> ActionReply:
        return await self._enqueue(request)

    async def infer_many(self, requests: List[ActionRequest]) -> List[ActionReply]:
        """Several slots' requests in one call (an env worker's coalescer): each joins the
        batcher on its own, so they may be served in different batches."""
        futs = [self._enqueue(r) for r in requests]
        return [await f for f in futs]

    async def channel_address(self) -> tuple:
        """((host, port), authkey) of this replica's request socket (generator.request_transport=socket)."""
        self._ensure_loop()
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = ActionServer(lambda reqs, reply: loop.call_soon_threadsafe(self._submit, reqs, reply,
                                                                                      time.time()))
        return self._server.address

    def _submit(self, requests: List[ActionRequest], reply, t_read: float = 0.0) -> None:
        """Requests from a socket (on the event loop): into the batcher; each reply goes back by id.
        `t_read`: wall clock when the socket's reader thread had them."""
        for r in requests:
            try:
                fut = self._enqueue(r, t_read)
            except Exception as e:
                reply(Answer(r.request_id, error=e))
                continue
            fut.add_done_callback(lambda f, rid=r.request_id: reply(_answer(rid, f)))

    def _enqueue(self, request: ActionRequest, t_read: float = 0.0) -> asyncio.Future:
        self._ensure_loop()
        self.requests += 1
        crash_process_if(self.crash_after_requests, self.requests)
        fut = asyncio.get_running_loop().create_future()
        t_queued = time.time() if self.spans.enabled else 0.0  # (benchmark timelines)
        self.batcher.add((request, fut, t_read, t_queued), request.num_samples, time.perf_counter())
        self._wakeup.set()
        return fut

    async def infer_batch(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0) -> ActionReply:
        """A whole batch, bypassing the batcher (lock-step evaluation on the same replica)."""
        self._ensure_loop()
        async with self._model_lock:
            return await asyncio.get_running_loop().run_in_executor(
                None, self.replica.infer_batch, obs, deterministic, temperature)

    async def set_weights(self, msg: WeightsMessage) -> int:
        """Stage new weights on the device (receive thread; inference goes on) and store them;
        the serving loop swaps them in before its next batch. Older than what is held: dropped."""
        self._ensure_loop()
        if msg.version <= self._newest_held():
            return msg.version
        staged = await asyncio.get_running_loop().run_in_executor(self._receive_thread, self.replica.stage_weights,
                                                                  msg)
        if staged.version > self._newest_held():
            self.pending_weights = staged
            self._wakeup.set()
        return msg.version

    def _newest_held(self) -> int:
        pending = self.pending_weights
        return max(self.replica.version, pending.version if pending is not None else -1)

    async def weights_join(self, addr: str, port: int, rank: int, world: int, epoch: int, backend: str,
                           timeout_s: float) -> None:
        # Its own thread: joining blocks until every member joins, and a receive of the old
        # epoch may hold the receive thread (the join abandons it).
        await asyncio.get_running_loop().run_in_executor(
            None, self.replica.weights_join, addr, port, rank, world, epoch, backend, timeout_s)

    async def weights_receive(self, epoch: int, bucket_mb: float) -> int:
        """Receive the next send in the background (one receive thread, in call order) and
        queue it for the swap between two batches; inference goes on meanwhile."""
        msg = await asyncio.get_running_loop().run_in_executor(self._receive_thread, self.replica.weights_fetch,
                                                               epoch, bucket_mb)
        if msg is not None:
            await self.set_weights(msg)
        return self.replica.version

    async def ping(self) -> bool:
        return True

    async def get_version(self) -> int:
        return self.replica.version

    async def stats(self) -> dict:
        wall = time.perf_counter() - self.t_created
        return {"version": self.replica.version, "swaps": self.swaps, "busy_s": self.busy_s,
                "utilization": self.busy_s / wall if wall > 0 else 0.0, **self.batcher.stats.summary(),
                **self.replica.graph_stats()}

    def bench_forward(self, batches: List[ObsBatch], seconds: float) -> dict:
        return self.replica.bench_forward(batches, seconds)

    def _swap_weights(self) -> None:
        staged, self.pending_weights = self.pending_weights, None
        if staged is not None and staged.version > self.replica.version:
            self.replica.swap_in(staged)
            self.swaps += 1

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = time.perf_counter()
            wait = self.batcher.time_until_ready(now)
            if wait is None or wait > 0:
                if self.pending_weights is not None:
                    async with self._model_lock:
                        self._swap_weights()  # idle: a good moment to swap
                    continue
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
                self._wakeup.clear()
                continue
            if hang_if(self.hang_after_requests, self.requests):
                await asyncio.sleep(10**6)  # serving stuck; the actor still answers pings
            items = self.batcher.pop_batch(now, self._free_since)
            t_popped = time.time()
            requests = [r for r, *_ in items]
            obs = ObsBatch.concat([r.obs for r in requests])
            try:
                async with self._model_lock:
                    self._swap_weights()  # between two batches, never during one
                    t0 = time.perf_counter()
                    out = await loop.run_in_executor(None, partial(self.replica.infer_batch, obs, False,
                                                                   self.temperature, requests=len(items)))
            except Exception as e:  # fail the waiting requests, keep serving
                self._free_since = time.perf_counter()
                for _, fut, *_ in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self._free_since = time.perf_counter()
            self.busy_s += self._free_since - t0
            start = 0
            t_done = time.time()
            for req, fut, t_read, t_queued in items:
                sl = slice(start, start + req.num_samples)
                start += req.num_samples
                timing = None if out.timing is None else {"sent": req.t_sent, "read": t_read, "queued": t_queued,
                                                          "popped": t_popped, **out.timing, "done": t_done}
                if not fut.done():
                    fut.set_result(ActionReply(req.request_id, out.actions[sl], out.tokens[sl], out.logp[sl],
                                               out.values[sl], out.version, batch_size=len(obs), timing=timing))


def _answer(request_id: int, fut: asyncio.Future) -> Answer:
    if fut.cancelled():
        return Answer(request_id, error=RuntimeError("request cancelled"))
    e = fut.exception()
    return Answer(request_id, error=e) if e is not None else Answer(request_id, reply=fut.result())
