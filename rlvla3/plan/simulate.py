"""The asynchronous schedules (`async-rollout`, `full`) as a discrete-event model.

What it models, after runtime/async_schedule.py, core/experience_stream.py, core/staleness.py,
core/batcher.py and runtime/trainer_feed.py:
- env slots: reset, then request -> dynamic batcher -> forward -> reply -> chunk step, until the
  episode's length; a finished episode waits in its worker for the driver's next poll; the slot
  starts its worker's next admitted assignment at once, or idles until one is admitted;
- the driver polls every `poll_ms`: delivers finished episodes (samples to the queue, the
  reservation settled against what they produced), admits episodes while a worker holds fewer
  than 2 x its envs and the staleness window has room, feeds the trainer;
- one dynamic batcher per generator (fires at `max_batch` samples or `max_wait_ms`), requests
  routed round-robin (held `coalesce_ms` in their worker first, when set), a batch carries the
  generator's policy version;
- the trainer: whole global batches (`async-rollout`) or two micro-batches in flight and one step
  per global batch (`full`); a new version reaches the generators `publish_s` later; samples more
  than eta versions old are dropped at `take` (refunded) and replaced.
Stragglers: a fraction of slots, spread over the workers, with every cost multiplied.
A trainer on the generators' GPU (`layout.trainer_shares_gpu`, plan/device_share.py) advances
at 1 / (1 + forwards running) of its speed alone.
CPU contention (`prof.cpu`, plan/cpu.py): the generator and the trainer on the CPU run their jobs
as CPU work shared with the env workers' and the driver's per-decision CPU, by weighted
processor sharing. With `env.process_share`, each env process's slots also share its one core
for their chunk steps and its other per-decision CPU.
Not modelled: GRPO groups (one episode per admission), weight swaps inside the generator.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

import numpy as np

from rlvla3.plan.cpu import CpuPool
from rlvla3.plan.device_share import IN_PROCESS_SLOWDOWN, SharedDevice
from rlvla3.plan.events import Clock, Meter, Server
from rlvla3.plan.profile import StageProfile
from rlvla3.plan.sim_common import SimResult, episode_lengths, straggler_slots


def _nothing() -> None:
    pass


class _Slot:
    __slots__ = ("i", "worker", "slow", "left", "versions", "reserved")

    def __init__(self, i: int, worker: int, slow: float):
        self.i, self.worker, self.slow = i, worker, slow
        self.left, self.versions, self.reserved = 0, [], 0


class AsyncPipeline:
    def __init__(self, prof: StageProfile, mode: str, seconds: float = 60.0, warmup: float = 20.0, seed: int = 0,
                 shared_gpu: bool = False):
        if mode not in ("async-rollout", "full"):
            raise ValueError(f"AsyncPipeline models async-rollout and full, not {mode!r}")
        self.p, self.mode, self.rng = prof, mode, np.random.default_rng(seed)
        L, env = prof.layout, prof.env
        self.clock = Clock()
        self.t0, self.t1 = warmup, warmup + seconds
        self.k = L.envs_per_slot
        slow = straggler_slots(L.slots, L.num_env_workers, L.straggler_fraction)
        self.slots = [_Slot(i, i // L.slots_per_worker, L.straggler_slowdown if i in slow else 1.0)
                      for i in range(L.slots)]
        self.env_meter = Meter(self.t0, self.t1)
        self.gen_meters = [Meter(self.t0, self.t1) for _ in range(L.num_generators)]
        self.train_meter = Meter(self.t0, self.t1)
        # shared_gpu: every generator and the trainer queue on one device (a colocated GPU)
        gpu = Server(self.clock, Meter(self.t0, self.t1))
        cpu = prof.cpu
        self.pool = CpuPool(self.clock, cpu.cores, cpu.background_cores) if cpu.cores > 0 else None
        on_cpu = lambda flag: self.pool if flag and not shared_gpu else None  # noqa: E731
        self.gen_gpu = [gpu if shared_gpu else Server(self.clock, Meter(self.t0, self.t1), on_cpu(cpu.generator_on_cpu),
                                                      cpu.rollout_weight) for _ in self.gen_meters]
        # One GPU time-sliced by the trainer and the generators (not the FIFO device of shared_gpu).
        self.device = SharedDevice(self.clock, IN_PROCESS_SLOWDOWN if L.trainer_hosts_generator else 1.0) \
            if L.trainer_shares_gpu and not shared_gpu else None
        self.train_gpu = gpu if shared_gpu else Server(self.clock, Meter(self.t0, self.t1),
                                                       self.device or on_cpu(cpu.trainer_on_cpu), cpu.trainer_weight)
        # CPU the trainer and the generator spend beyond their work alone (receiving samples,
        # decoding requests): it holds their process and the cores. The trainer's threads receive
        # while it trains (inside its metered spans); a request decoded during a forward counts too.
        alone_ms = 1000.0 / (prof.trainer.streaming_samples_per_s if mode == "full" else prof.trainer.samples_per_s)
        self.train_extra_s = max(0.0, cpu.trainer_ms_per_sample - alone_ms) / 1000.0 \
            if self.train_gpu.pool is self.pool and self.pool else 0.0
        self.request_cpu_s = cpu.generator_ms_per_request / 1000.0 if self.gen_gpu[0].pool else 0.0
        # Env workers and the driver: single processes whose CPU competes for the cores; their work
        # does not hold a slot (its latency is in the measured request round trip).
        self.env_procs = [Server(self.clock, Meter(self.t0, self.t1), self.pool, cpu.rollout_weight)
                          for _ in range(L.num_env_workers)] if self.pool and cpu.env_ms_per_decision > 0 else None
        self.driver = Server(self.clock, Meter(self.t0, self.t1), self.pool, cpu.driver_weight) \
            if self.pool and cpu.driver_ms_per_decision > 0 else None
        # Each env process's one core, shared by its slots' chunk steps (EnvCosts.process_share).
        self.proc_cores = [CpuPool(self.clock, 1.0) for _ in range(L.num_env_workers)] \
            if env.process_share > 0 else None
        # The process's other CPU per decision (building observations, requests, replies) takes its
        # core too: the accounted CPU per decision beyond the chunk step's own and its share of a reset.
        core_ms = env.process_share * (env.chunk.mean_ms() + env.reset.mean_ms() / max(env.episode_decisions_mean, 1.0))
        self.proc_extra_s = max(0.0, cpu.env_ms_per_decision - core_ms) / 1000.0 if self.proc_cores else 0.0
        self.undriven = 0  # decisions since the driver's last poll
        # Each generator: its batcher queue of (arrival, slot), whether a batch is running, its version.
        self.pending: List[Deque] = [deque() for _ in range(L.num_generators)]
        self.running = [False] * L.num_generators
        self.gen_version = [0] * L.num_generators
        self.timer_at = [None] * L.num_generators
        self.free_at = [0.0] * L.num_generators  # when each generator's last forward ended
        self.rr = 0
        self.boxes = {}  # (worker, generator) -> slots whose requests wait for the coalescing window
        # Driver side: per worker, admitted assignments waiting, idle slots, finished episodes.
        self.queued: List[Deque[int]] = [deque() for _ in range(L.num_env_workers)]  # their reservations
        self.idle: List[List[_Slot]] = [[] for _ in range(L.num_env_workers)]
        for s in reversed(self.slots):  # every slot waits for its first assignment (popped from the end)
            self.idle[s.worker].append(s)
        self.done: List[list] = [[] for _ in range(L.num_env_workers)]
        self.running_eps = [0] * L.num_env_workers
        # The staleness window and the sample queue (core/staleness.py, core/experience_stream.py).
        self.version, self.reserved, self.mean_group = 0, 0, None
        self.queue: Deque[np.ndarray] = deque()
        self.waiting = 0
        self.micro_in_flight, self.held, self.update_in_flight = 0, 0, False
        self.batch_sizes: List[int] = []
        self.counts = dict(env_steps=0.0, decisions=0, trained=0, steps=0, dropped=0, refused=0)
        self.max_group = env.horizon * self.k

    # --- env slots -------------------------------------------------------------------------
    def _start_episode(self, s: _Slot, reserved: int) -> None:
        env = self.p.env
        s.reserved = reserved
        s.left = int(episode_lengths(self.rng, env.horizon, env.episode_decisions_mean, 1)[0])
        s.versions = []
        self.running_eps[s.worker] += 1
        dur = float(np.max(env.reset.draw_s(self.rng, self.k))) * s.slow
        self._on_process(s, dur, self._request)

    def _env_busy(self, s: _Slot, dur: float, then) -> None:
        start = self.clock.now
        self.clock.after(dur, self._env_done, s, start, then)

    def _env_done(self, s: _Slot, start: float, then) -> None:
        self.env_meter.busy(start, self.clock.now)
        then(s)

    def _request(self, s: _Slot) -> None:
        g = self.rr % len(self.pending)
        self.rr += 1
        if self.p.layout.coalesce_ms > 0:  # workers/request_coalescer.py: one call per window
            box = self.boxes.setdefault((s.worker, g), [])
            if not box:
                self.clock.after(self.p.layout.coalesce_ms / 1000.0, self._send_box, s.worker, g)
            box.append(s)
            return
        self.clock.after(self.p.generator.request_rtt_ms / 2000.0, self._arrive, g, s)

    def _send_box(self, worker: int, g: int) -> None:  # one call: its requests reach the batcher together
        self.clock.after(self.p.generator.request_rtt_ms / 2000.0, self._arrive, g, *self.boxes.pop((worker, g)))

    # --- generators --------------------------------------------------------------------------
    def _arrive(self, g: int, *slots: _Slot) -> None:
        for s in slots:
            if self.request_cpu_s:  # decoded by another thread; during a forward it stretches that span (GIL)
                self.gen_gpu[g].submit(self.request_cpu_s, _nothing,
                                       meter=self.gen_meters[g] if self.running[g] else None)
            self.pending[g].append((self.clock.now, s))
        self._try_fire(g)

    def _try_fire(self, g: int) -> None:
        if self.running[g] or not self.pending[g]:
            return
        L, now = self.p.layout, self.clock.now
        due = self.pending[g][0][0] + L.max_wait_ms / 1000.0  # the oldest request's deadline
        if self.p.generator.late_ms > 0:  # the serving loop wakes late (measured): after due or the last forward
            due = max(due, self.free_at[g]) + self.p.generator.late_ms / 1000.0
        if len(self.pending[g]) * self.k < L.max_batch and now < due - 1e-12:
            if self.timer_at[g] != due:
                self.timer_at[g] = due
                self.clock.at(due, self._try_fire, g)
            return
        batch = []
        while self.pending[g] and (len(batch) + 1) * self.k <= max(L.max_batch, self.k):
            batch.append(self.pending[g].popleft()[1])
        self.running[g] = True
        if self.device:
            self.device.forward_started()
        n = len(batch) * self.k
        if self.env_meter.counts(now):
            self.batch_sizes.append(n)
        self.gen_gpu[g].submit(self.p.generator.act_s(n, len(batch)), self._served, g, batch, meter=self.gen_meters[g])

    def _served(self, g: int, batch: List[_Slot]) -> None:
        self.running[g] = False
        self.free_at[g] = self.clock.now
        if self.device:
            self.device.forward_ended()
        if self.env_meter.counts(self.clock.now):
            self.counts["decisions"] += len(batch) * self.k
        v = self.gen_version[g]
        for s in batch:
            self.clock.after(self.p.generator.request_rtt_ms / 2000.0, self._step, s, v)
        self._try_fire(g)

    def _step(self, s: _Slot, version: int) -> None:
        s.versions.append(version)
        dur = float(np.max(self.p.env.chunk.draw_s(self.rng, self.k))) * s.slow
        self._on_process(s, dur, self._stepped)

    def _on_process(self, s: _Slot, dur: float, then) -> None:
        """A chunk step or a reset of `dur` alone; with `env.process_share`, that share of it is work on
        the process's one core (as `timeline_costs.alone_chunk_ms` priced the measured spans)."""
        if self.proc_cores is None:
            self._env_busy(s, dur, then)
            return
        share, start = self.p.env.process_share, self.clock.now  # the core's part first, then the rest
        self.proc_cores[s.worker].run(share * dur, self.clock.after, (1.0 - share) * dur, self._env_done, s, start,
                                      then)

    def _stepped(self, s: _Slot) -> None:
        if self.env_meter.counts(self.clock.now):
            self.counts["env_steps"] += self.p.env.steps_per_decision * self.k
        if self.env_procs:
            self.env_procs[s.worker].submit(self.k * self.p.cpu.env_ms_per_decision / 1000.0, _nothing)
        if self.proc_extra_s:
            self.proc_cores[s.worker].run(self.k * self.proc_extra_s, _nothing)
        self.undriven += self.k
        s.left -= 1
        if s.left > 0:
            self._request(s)
            return
        self.running_eps[s.worker] -= 1
        self.done[s.worker].append((np.repeat(np.asarray(s.versions), self.k), s.reserved))
        self._next_assignment(s)

    def _next_assignment(self, s: _Slot) -> None:
        if self.queued[s.worker]:
            self._start_episode(s, self.queued[s.worker].popleft())
        else:
            self.idle[s.worker].append(s)

    # --- the driver --------------------------------------------------------------------------
    def _reservation(self) -> int:
        if self.mean_group is None:
            return self.max_group
        return max(1, min(self.max_group, int(round(self.mean_group))))

    def _poll(self) -> None:
        L = self.p.layout
        if self.driver:
            self.driver.submit(self.undriven * self.p.cpu.driver_ms_per_decision / 1000.0, _nothing)
        self.undriven = 0
        for w in range(L.num_env_workers):  # deliver: samples join the queue, reservations settle
            for versions, reserved in self.done[w]:
                produced = len(versions)
                self.reserved += produced - reserved
                self.mean_group = produced if self.mean_group is None else 0.95 * self.mean_group + 0.05 * produced
                self.queue.append(versions)
                self.waiting += produced
            self.done[w] = []
        self._admit()
        self._feed()
        self.clock.after(L.poll_ms / 1000.0, self._poll)

    def _admit(self) -> None:
        L = self.p.layout
        envs = L.slots_per_worker  # admission units are slots (a slot's envs share their episodes' timing)
        loads = [len(self.queued[w]) + self.running_eps[w] for w in range(L.num_env_workers)]
        while min(loads) < 2 * envs:
            r = self._reservation()
            capacity = (self.version + L.staleness + 1) * L.global_batch
            starving = self.reserved < (self.version + 1) * L.global_batch
            if self.reserved + r > capacity and not starving:
                self.counts["refused"] += 1
                break
            self.reserved += r
            w = int(np.argmin(loads))
            loads[w] += 1
            if self.idle[w]:
                self._start_episode(self.idle[w].pop(), r)
            else:
                self.queued[w].append(r)

    def _take(self, n: int) -> Optional[int]:
        """n fresh samples from the queue (stale ones dropped and refunded), else None."""
        L, have, parts = self.p.layout, 0, []
        while have < n and self.waiting >= n - have:
            need = n - have
            part = []
            while need > 0:
                head = self.queue.popleft()
                if len(head) > need:
                    self.queue.appendleft(head[need:])
                    head = head[:need]
                part.append(head)
                need -= len(head)
                self.waiting -= len(head)
            vs = np.concatenate(part)
            fresh = vs[self.version - vs <= L.staleness]
            dropped = len(vs) - len(fresh)
            if dropped:
                self.reserved -= dropped
                if self.env_meter.counts(self.clock.now):  # drops inside the window, as a rate's numerator
                    self.counts["dropped"] += dropped
            if len(fresh):
                parts.append(fresh)
                have += len(fresh)
        if have < n:
            if parts:
                back = np.concatenate(parts)
                self.queue.appendleft(back)
                self.waiting += len(back)
            return None
        return n

    def _feed(self) -> None:
        L, tr = self.p.layout, self.p.trainer
        if self.update_in_flight:
            return
        if self.mode == "async-rollout":
            if self.waiting >= L.global_batch and self._take(L.global_batch):
                self.update_in_flight = True
                dur = L.global_batch / tr.samples_per_s + tr.step_overhead_s
                self._train_extra(L.global_batch)
                self.train_gpu.submit(dur, self._updated, L.global_batch, meter=self.train_meter)
            return
        per_sample = 1.0 / tr.streaming_samples_per_s
        first = per_sample / L.update_epochs  # the first pass as micro-batches arrive, the rest at the step
        need = min(L.micro_batch, L.global_batch - self.held)
        while self.micro_in_flight < 2 and self.held < L.global_batch and self.waiting >= need:
            if not self._take(need):
                break
            self.micro_in_flight += 1
            self.held += need
            self._train_extra(need)
            self.train_gpu.submit(need * first, self._accumulated, need, meter=self.train_meter)
            need = min(L.micro_batch, L.global_batch - self.held)
        if self.held >= L.global_batch:
            self.update_in_flight = True
            dur = L.global_batch * (per_sample - first) + tr.step_overhead_s
            self.train_gpu.submit(dur, self._updated, 0, meter=self.train_meter)
            self.held = 0

    def _train_extra(self, n: int) -> None:
        if self.train_extra_s:
            self.train_gpu.submit(n * self.train_extra_s, _nothing, meter=self.train_meter)

    def _accumulated(self, n: int) -> None:
        self.micro_in_flight -= 1
        if self.train_meter.counts(self.clock.now):
            self.counts["trained"] += n
        self._feed()

    def _updated(self, new_samples: int) -> None:
        if self.train_meter.counts(self.clock.now):
            self.counts["trained"] += new_samples
            self.counts["steps"] += self.p.layout.update_epochs  # one optimizer step per global batch and pass
        self.micro_in_flight = 0
        self.version += 1
        self.reserved = max(self.reserved, self.version * self.p.layout.global_batch)
        self.clock.after(self.p.trainer.publish_s, self._published, self.version)
        # The trainer packs the new weights before its next micro-batch (measured in-pipeline:
        # not slowed again by the forwards, and not in its metered training time).
        self.clock.after(self.p.trainer.pack_s, self._packed)

    def _packed(self) -> None:
        self.update_in_flight = False
        self._feed()

    def _published(self, version: int) -> None:
        for g in range(len(self.gen_version)):
            self.gen_version[g] = max(self.gen_version[g], version)

    # --- run --------------------------------------------------------------------------------
    def run(self) -> SimResult:
        self._poll()  # the first admission starts the slots
        self.clock.run(self.t1)
        dt, c = self.t1 - self.t0, self.counts
        return SimResult(self.mode, dt, c["env_steps"] / dt, c["trained"] / dt, c["decisions"] / dt, c["steps"] / dt,
                         self.env_meter.busy_s / (dt * len(self.slots)), [float(m.utilization()) for m in self.gen_meters],
                         self.train_meter.utilization(),
                         float(np.mean(self.batch_sizes)) if self.batch_sizes else 0.0, c["dropped"], c["refused"])
