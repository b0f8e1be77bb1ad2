"""The driver's FIFO of samples waiting for the trainer."""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Optional

import numpy as np

from rlvla3.core.types import SampleBatch


class SampleQueue:
    """FIFO of samples; takes exact-size batches, keeping leftovers for the next one."""

    def __init__(self):
        self.parts: Deque[SampleBatch] = deque()
        self.size = 0
        self.total_put = 0
        self.high_water = 0  # most samples ever waiting: bounded by admission (see queue_bound)

    def put(self, batch: SampleBatch) -> None:
        if len(batch):
            self.parts.append(batch)
            self.size += len(batch)
            self.total_put += len(batch)
            self.high_water = max(self.high_water, self.size)

    def put_front(self, batch: SampleBatch) -> None:
        """Give back samples taken too early: they are the next to be taken."""
        if len(batch):
            self.parts.appendleft(batch)
            self.size += len(batch)

    def take(self, n: int) -> SampleBatch:
        if not 0 < n <= self.size:
            raise ValueError(f"cannot take {n} samples from a queue of {self.size}")
        out, need = [], n
        while need > 0:
            head = self.parts.popleft()
            if len(head) <= need:
                out.append(head)
                need -= len(head)
            else:
                out.append(head.take(np.arange(need)))
                self.parts.appendleft(head.take(np.arange(need, len(head))))
                need = 0
        self.size -= n
        return SampleBatch.concat(out)

    def take_fresh(self, n: int, keep: Callable[[SampleBatch], SampleBatch]) -> Optional[SampleBatch]:
        """Exactly n samples that pass `keep` (the staleness filter), in queue order; the
        samples it drops are replaced by the next ones. None when the queue runs out first:
        what passed goes back to the front. Exact sizes give the trainer a few tensor shapes,
        not a new one at every drop: oneDNN keeps kernels and scratch memory per shape, and
        sizes that varied with the drops grew the trainer's heap for hours
        (docs/reliability/README.md, "Trainer heap and micro-batch shapes")."""
        parts, have = [], 0
        while have < n and self.size >= n - have:
            part = keep(self.take(n - have))
            if len(part):
                parts.append(part)
                have += len(part)
        batch = SampleBatch.concat(parts) if len(parts) > 1 else (parts[0] if parts else None)
        if have < n:
            if batch is not None:
                self.put_front(batch)
            return None
        return batch
