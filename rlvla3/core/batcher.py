"""Dynamic batcher: group action requests into inference batches.

A batch fires when the pending *samples* reach `max_batch` or the oldest request has
waited `max_wait_s`. Requests are served first-in first-out and never split: a batch takes
whole requests while they fit (a request larger than `max_batch` is served alone).
Time is passed in, so the logic is pure and testable with a fake clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, List, Optional

from rlvla3.core.stats import percentiles


@dataclass
class Pending:
    item: Any
    num_samples: int
    t_arrival: float


@dataclass
class BatcherStats:
    batches: int = 0
    samples: int = 0
    requests: int = 0
    fired_by_size: int = 0
    fired_by_timeout: int = 0
    batch_sizes: List[int] = field(default_factory=list)
    queue_delays_s: List[float] = field(default_factory=list)
    # Timed-out batches: how long after both the oldest request's deadline and the moment the
    # server was free to serve it the batch left (the serving loop's own wake-up and turnaround,
    # which a busy CPU stretches; docs/scaling.md); not recorded where the server did not say when it was free
    late_s: List[float] = field(default_factory=list)
    max_kept: int = 10_000  # recent values kept for percentiles (bounded memory)

    def record(self, batch: List[Pending], now: float, by_size: bool, late_s: Optional[float] = None) -> None:
        n = sum(p.num_samples for p in batch)
        self.batches += 1
        self.samples += n
        self.requests += len(batch)
        self.fired_by_size += int(by_size)
        self.fired_by_timeout += int(not by_size)
        self.batch_sizes.append(n)
        self.queue_delays_s.extend(now - p.t_arrival for p in batch)
        if late_s is not None:
            self.late_s.append(late_s)
        for kept in (self.queue_delays_s, self.batch_sizes, self.late_s):
            del kept[:-self.max_kept]  # all but the most recent max_kept (none while fewer)

    def summary(self) -> dict:
        delays = percentiles([d * 1000 for d in self.queue_delays_s]) if self.queue_delays_s else {}
        return {
            "batches": self.batches, "samples": self.samples, "requests": self.requests,
            "mean_batch": self.samples / self.batches if self.batches else 0.0,
            "fired_by_size": self.fired_by_size, "fired_by_timeout": self.fired_by_timeout,
            **{f"queue_ms_{k}": v for k, v in delays.items()},
            **({"late_ms_mean": 1000 * sum(self.late_s) / len(self.late_s),
                **{f"late_ms_{k}": v for k, v in percentiles([x * 1000 for x in self.late_s]).items()}}
               if self.late_s else {}),
        }


class DynamicBatcher:
    def __init__(self, max_batch: int, max_wait_s: float):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: Deque[Pending] = deque()
        self.pending_samples = 0
        self.stats = BatcherStats()

    def add(self, item: Any, num_samples: int, now: float) -> None:
        if num_samples < 1:
            raise ValueError(f"a request needs >= 1 sample, got {num_samples}")
        self.queue.append(Pending(item, num_samples, now))
        self.pending_samples += num_samples

    def __len__(self) -> int:
        return len(self.queue)

    def _full(self) -> bool:
        return self.pending_samples >= self.max_batch

    def ready(self, now: float) -> bool:
        return bool(self.queue) and (self._full() or now - self.queue[0].t_arrival >= self.max_wait_s)

    def time_until_ready(self, now: float) -> Optional[float]:
        """Seconds until the oldest request times out (0 if ready now, None if empty)."""
        if not self.queue:
            return None
        if self._full():
            return 0.0
        return max(0.0, self.queue[0].t_arrival + self.max_wait_s - now)

    def pop_batch(self, now: float, free_since: Optional[float] = None) -> List[Any]:
        """Take whole requests FIFO up to max_batch samples; call only when `ready(now)`.
        `free_since`: when the server finished its previous batch (for `BatcherStats.late_s`)."""
        if not self.queue:
            return []
        by_size = self._full()
        late = None if by_size or free_since is None else \
            max(0.0, now - max(self.queue[0].t_arrival + self.max_wait_s, free_since))
        batch = [self.queue.popleft()]
        total = batch[0].num_samples
        while self.queue and total + self.queue[0].num_samples <= self.max_batch:
            p = self.queue.popleft()
            batch.append(p)
            total += p.num_samples
        self.pending_samples -= total
        self.stats.record(batch, now, by_size, late)
        return [p.item for p in batch]
