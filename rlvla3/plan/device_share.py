"""One GPU time-sliced between the trainer and the generators that share it.

Without MPS, CUDA runs the kernels of one process's context at a time and alternates between
the contexts that have work, so the trainer's work advances at 1 / (1 + f) of its speed alone
while f forward passes are running on the same device. With the generator in the trainer's
process (generator.in_trainer_process) the two share one context and their kernels run side by
side: the trainer advances at 1 / (1 + k f), k = IN_PROCESS_SLOWDOWN. The share check of
docs/benchmarks/gpu-dec07f-libero-oft1b-pinned (oft-1b, H100, no simulators) gave k = 0.124 (0.91
of its speed alone beside a generator busy 0.80; two processes there: 0.60 while a forward ran,
against this rule's 0.5). A LIBERO run did not keep it (docs/benchmarks/gpu-dec07g-libero-oft1b-host,
28 envs rendering on the same GPU through EGL): a micro-batch took 315 ms in one process and 347 ms
in two, against 203 ms alone, with forwards running 0.76 and 0.81 of the time, so k = 0.88 and
1.05. The run's value is the one used. The forward passes are not slowed
here: their in-pipeline cost is read from the asynchronous mode's own forward spans
(`profile_from_bench`), which already hold their share of the device.

The trainer's `events.Server` takes a `SharedDevice` as its `pool`: `run` is the same call as
`cpu.CpuPool.run`, for one job at a time (the trainer runs one job at a time).
"""

from __future__ import annotations

from typing import Callable, Optional

from rlvla3.plan.events import Clock

EPS = 1e-12  # seconds of work: a job this close to done is done (float error)
# gpu-dec07g `full@host`: a micro-batch at 203 / 315 = 0.644 of its speed alone beside forwards running
# 0.76 of the time, so at r = (0.644 - 0.24) / 0.76 = 0.53 while one runs; k = 1/r - 1 (the share check,
# without simulators: 0.124)
IN_PROCESS_SLOWDOWN = 0.88


class SharedDevice:
    def __init__(self, clock: Clock, slowdown: float = 1.0):
        """`slowdown`: k of 1 / (1 + k f): 1 for two processes, IN_PROCESS_SLOWDOWN for one."""
        self.clock = clock
        self.slowdown = slowdown
        self.forwards = 0  # forward passes running on the device now
        self._job: Optional[list] = None  # [work left s, done, args]
        self._t = 0.0
        self._gen = 0  # a completion event of an older rate is ignored

    def rate(self) -> float:
        return 1.0 / (1 + self.slowdown * self.forwards)

    def run(self, work_s: float, done: Callable, *args, weight: float = 1.0) -> None:
        if self._job is not None:
            raise RuntimeError("SharedDevice runs one trainer job at a time (its Server queues the rest)")
        if work_s <= 0:
            self.clock.after(0.0, done, *args)
            return
        self._t = self.clock.now
        self._job = [work_s, done, args]
        self._reschedule()

    def forward_started(self) -> None:
        self._advance()
        self.forwards += 1
        self._reschedule()

    def forward_ended(self) -> None:
        self._advance()
        self.forwards -= 1
        self._reschedule()

    def _advance(self) -> None:
        if self._job is not None:
            self._job[0] -= (self.clock.now - self._t) * self.rate()
        self._t = self.clock.now

    def _reschedule(self) -> None:
        self._gen += 1
        if self._job is not None:
            self.clock.after(max(self._job[0], 0.0) / self.rate(), self._complete, self._gen)

    def _complete(self, gen: int) -> None:
        if gen != self._gen:
            return
        self._advance()
        if self._job[0] > EPS:  # float error left a sliver: finish it at the current rate
            self._reschedule()
            return
        _, done, args = self._job
        self._job = None
        done(*args)
