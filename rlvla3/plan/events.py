"""The discrete-event core: a clock with a heap of timed callbacks, FIFO servers, busy-time meters.

Kept apart from the pipeline model (`simulate.py`) so that it can be tested on its own against
closed-form queues.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, List, Optional, Tuple


class Clock:
    """`at(t, fn, *args)` runs fn(*args) at time t; `run(until)` advances the clock."""

    def __init__(self):
        self.now = 0.0
        self._heap: List[Tuple[float, int, Callable, tuple]] = []
        self._seq = 0

    def at(self, t: float, fn: Callable, *args) -> None:
        self._seq += 1  # ties run in scheduling order: the model stays deterministic
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn, args))

    def after(self, dt: float, fn: Callable, *args) -> None:
        self.at(self.now + dt, fn, *args)

    def run(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            t, _, fn, args = heapq.heappop(heap)
            self.now = t
            fn(*args)
        self.now = until


@dataclass
class Meter:
    """Busy time and counts inside the measurement window [t0, t1]; intervals are added when they end."""

    t0: float
    t1: float
    busy_s: float = 0.0

    def busy(self, start: float, end: float) -> None:
        lo, hi = max(start, self.t0), min(end, self.t1)
        if hi > lo:
            self.busy_s += hi - lo

    def counts(self, t: float) -> bool:
        """An event at t counts in the window (as the benchmark counts a span by its end)."""
        return self.t0 <= t <= self.t1

    def utilization(self) -> float:
        return self.busy_s / (self.t1 - self.t0)


@dataclass
class Server:
    """One device that runs jobs one at a time, first come first served (a GPU, a trainer
    process): actors that share it queue behind each other. With a `pool`, a process on the CPU:
    a job's duration is its CPU work, stretched by what else runs on the cores."""

    clock: Clock
    meter: Meter
    pool: Optional[Any] = None  # a cpu.CpuPool: jobs are CPU work shared with the other processes
    weight: float = 1.0  # the process's share of the cores against the others' (its nice)
    queue: Deque[Tuple[float, Callable, tuple, Optional[Meter]]] = field(default_factory=deque)
    busy: bool = False

    def submit(self, duration: float, done: Callable, *args, meter: Optional[Meter] = None) -> None:
        """Run a job of `duration` when the device is free, then done(*args); `meter` also
        records the job's busy time (the actor's own utilisation on a shared device)."""
        self.queue.append((duration, done, args, meter))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if not self.queue:
            self.busy = False
            return
        duration, done, args, meter = self.queue.popleft()
        self.busy = True
        if self.pool is not None:
            self.pool.run(duration, self._finish, self.clock.now, done, args, meter, weight=self.weight)
        else:
            self.clock.after(duration, self._finish, self.clock.now, done, args, meter)

    def _finish(self, start: float, done: Callable, args: tuple, meter: Optional[Meter]) -> None:
        self.meter.busy(start, self.clock.now)
        if meter is not None:
            meter.busy(start, self.clock.now)
        done(*args)
        self._next()
