"""Costs that no stage bound measures, read from a benchmark's timeline.json (Chrome trace).

- the lock-step overhead: time inside a lock-step rollout when no stage is busy (the driver
  gathering observations, its calls to the env workers and the generator);
- the per-iteration overhead of the lock-step schedules: idle time outside the rollouts (cut,
  drain, advantages, handing the batch to the trainer, the publication's own round trips);
- the request round trip of the asynchronous modes: twice the time from the end of the forward
  pass that answered a slot to the start of that slot's chunk step (the reply half, assumed to
  equal the request half, which the trace cannot separate from the batcher's wait);
- the chunk-step and reset durations themselves, as empirical samples.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

STAGE = ("env_step", "reset", "infer_batch", "micro_batch", "optimizer_step", "weight_sync", "weight_swap")


@dataclass(frozen=True)
class TSpan:
    name: str
    track: str
    start: float  # s
    dur: float  # s

    @property
    def end(self) -> float:
        return self.start + self.dur


def find_timeline(folder: str) -> Optional[str]:
    """The bench's timeline.json in `folder`, or its gzipped copy (as some results are committed)."""
    for name in ("timeline.json", "timeline.json.gz"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def load_timeline(path: str) -> Dict[str, List[TSpan]]:
    """Mode (the trace's process name) -> its spans, sorted by start."""
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    procs = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    out: Dict[str, List[TSpan]] = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e["pid"] in procs:
            out[procs[e["pid"]]].append(TSpan(e["name"], threads.get((e["pid"], e["tid"]), ""), e["ts"] / 1e6,
                                              e["dur"] / 1e6))
    return {k: sorted(v, key=lambda s: s.start) for k, v in out.items()}


def durations_ms(spans: List[TSpan], name: str, limit: int = 4000) -> List[float]:
    return [round(s.dur * 1000.0, 3) for s in spans if s.name == name][:limit]


def _idle_gaps(spans: List[TSpan]):
    """(gap start, gap end, span before, span after): times when no stage span is running."""
    stage = [s for s in spans if s.name in STAGE]
    gaps, reach, last = [], None, None
    for s in stage:
        if reach is not None and s.start > reach:
            gaps.append((reach, s.start, last, s))
        if reach is None or s.end > reach:
            reach, last = s.end, s
    return gaps


@dataclass
class LockstepOverheads:
    per_step_ms: float  # median idle time between a chunk step's phases (inference <-> env)
    per_iteration_s: float  # other idle time, per iteration
    iterations: int


def lockstep_overheads(spans: List[TSpan]) -> Optional[LockstepOverheads]:
    """From a lock-step mode's spans; None when the trace holds no whole iteration."""
    gaps = _idle_gaps(spans)
    inner = {"env_step", "infer_batch"}
    step_gaps = [b - a for a, b, x, y in gaps if x.name in inner and y.name in inner and x.name != y.name]
    other = [b - a for a, b, x, y in gaps if not (x.name in inner and y.name in inner and x.name != y.name)]
    iterations = sum(1 for s in spans if s.name == "weight_sync")
    if not step_gaps or iterations == 0:
        return None
    per_step = float(np.median(step_gaps))
    # Steps without an idle gap still paid the overhead inside overlapping spans: only the other
    # gaps (between rollouts, training and publication) are charged per iteration.
    return LockstepOverheads(per_step * 1000.0, float(np.sum(other)) / iterations, iterations)


def request_rtt_ms(spans: List[TSpan]) -> Optional[float]:
    """Async modes: 2 x median(time from the end of the forward that answered a slot to that
    slot's next chunk step). The answering forward is the last one to end before the step starts."""
    infer_ends = np.array(sorted(s.end for s in spans if s.name == "infer_batch"))
    if len(infer_ends) < 10:
        return None
    halves = []
    by_track: Dict[str, List[TSpan]] = defaultdict(list)
    for s in spans:
        if s.name in ("env_step", "reset"):
            by_track[s.track].append(s)
    for track_spans in by_track.values():
        for prev, nxt in zip(track_spans, track_spans[1:]):
            if nxt.name != "env_step":
                continue
            i = np.searchsorted(infer_ends, nxt.start) - 1
            if i >= 0 and infer_ends[i] >= prev.end:
                halves.append(nxt.start - infer_ends[i])
    return 2000.0 * float(np.median(halves)) if halves else None


def alone_chunk_ms(spans: List[TSpan], share: float, limit: int = 4000) -> List[float]:
    """Chunk steps as one slot would take them alone on its env process: a step whose `share` is
    work on the process's one core ran at rate 1 / (1 - share + share * n(t)) while n of that
    process's steps and resets ran at once (processor sharing), so its work alone is the
    integral of that rate over its span. Tracks are `env{w}/slot{i}`: w is the process."""
    by_proc: Dict[str, List[TSpan]] = defaultdict(list)
    for s in spans:
        if s.name in ("env_step", "reset"):
            by_proc[s.track.split("/")[0]].append(s)
    out: List[tuple] = []  # (start, work alone in ms): the first `limit` by start, as durations_ms takes them
    for proc in by_proc.values():
        delta = defaultdict(int)  # change of n(t) at each span edge
        for s in proc:
            delta[s.start] += 1
            delta[s.end] -= 1
        edges = sorted(delta)
        # One sweep: n(t) between consecutive edges, and the work a lone job does up to each edge.
        cum, acc, level = {}, 0.0, 0
        for a, b in zip(edges, edges[1:] + edges[-1:]):
            cum[a] = acc
            level += delta[a]
            acc += (b - a) / (1.0 - share + share * max(level, 1))
        out += [(s.start, 1000.0 * (cum[s.end] - cum[s.start])) for s in proc if s.name == "env_step"]
    return [round(v, 3) for _, v in sorted(out)[:limit]]
