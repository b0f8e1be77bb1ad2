"""Span timeline: record what each worker track is doing and when (stdlib only).

Spans carry wall-clock (`time.time()`) starts so spans recorded by different
processes on one machine line up without clock translation. The recorder is
bounded so a long run cannot grow memory without limit, and a disabled recorder
costs one attribute check per call so it can stay wired into hot loops.
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator


@dataclass(frozen=True)
class Span:
    """One timed interval on one track (e.g. "env0/slot3", "trainer")."""

    track: str
    name: str
    start: float  # seconds, wall clock
    dur: float  # seconds, >= 0
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.dur


class SpanRecorder:
    """Thread-safe bounded span buffer; oldest spans are dropped when full."""

    def __init__(self, capacity: int = 200_000, enabled: bool = True) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.enabled = enabled
        self.dropped = 0
        self._buf: deque[Span] = deque(maxlen=capacity)
        # A lock (not just atomic deque appends) so `dropped` stays exact.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buf)

    def record(self, track: str, name: str, start: float, dur: float, **args: Any) -> None:
        if not self.enabled:
            return
        span = Span(track, name, float(start), max(0.0, float(dur)), args)
        with self._lock:
            if len(self._buf) == self.capacity:
                self.dropped += 1  # deque(maxlen) evicts the oldest on append
            self._buf.append(span)

    @contextmanager
    def span(self, track: str, name: str, **args: Any) -> Iterator[None]:
        """Time the body with time.time(); recorded even if the body raises."""
        if not self.enabled:
            yield
            return
        t0 = time.time()
        try:
            yield
        finally:
            self.record(track, name, t0, time.time() - t0, **args)

    def spans(self, since: float = 0.0) -> list[Span]:
        """Snapshot of spans that end strictly after `since`, oldest first."""
        with self._lock:
            snap = list(self._buf)
        return [s for s in snap if s.start + s.dur > since]

    def clear(self) -> None:
        with self._lock:
            self._buf.clear()
            self.dropped = 0


def busy_fraction(spans: Iterable[Span], track: str, t0: float, t1: float, names: Iterable[str] | None = None) -> float:
    """Fraction of [t0, t1] covered by the union of `track`'s spans.

    Spans are clipped to the window and merged first, so overlapping spans
    (e.g. nested or concurrent ones on one track) are not double-counted.
    """
    if t1 <= t0:
        return 0.0
    wanted = None if names is None else set(names)
    ivs = sorted((max(s.start, t0), min(s.start + s.dur, t1))
                 for s in spans if s.track == track and (wanted is None or s.name in wanted))
    covered = 0.0
    cur_a = cur_b = None
    for a, b in ivs:
        if b <= a:
            continue  # outside the window or zero length
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                covered += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        covered += cur_b - cur_a
    return covered / (t1 - t0)


def track_sort_key(track: str) -> tuple:
    """Natural order, so "env0/slot2" sorts before "env0/slot10"."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", track))


def to_chrome_trace(groups: dict[str, list[Span]]) -> dict[str, Any]:
    """Chrome trace / Perfetto JSON: one process per group, one thread per track.

    Timestamps are µs relative to each group's earliest start, so groups
    recorded at different times (e.g. "sync" vs "full" runs) line up at 0.
    """
    events: list[dict[str, Any]] = []
    for pid, (group, spans) in enumerate(groups.items(), start=1):
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": group}})
        tracks = sorted({s.track for s in spans}, key=track_sort_key)
        tids = {t: i for i, t in enumerate(tracks, start=1)}
        for t, tid in tids.items():
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": t}})
        origin = min((s.start for s in spans), default=0.0)
        for s in spans:
            events.append({"ph": "X", "name": s.name, "cat": s.name, "ts": (s.start - origin) * 1e6,
                           "dur": s.dur * 1e6, "pid": pid, "tid": tids[s.track], "args": dict(s.args)})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
