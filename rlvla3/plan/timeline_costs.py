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
import tarfile
import tempfile
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


def load_kept_spans(folder: str, repeats: Dict[str, int]) -> Dict[str, List[TSpan]]:
    """Mode -> its spans from what `rlvla3 bench --keep-spans` kept (modes/RUN/spans.jsonl.gz, or
    the modes.tar.gz the device scripts pack them into), for a bench without a timeline.json.
    `repeats`: the repeat each mode's bench.json entry reports (its median run; runs of a bench
    with repeats are named RUN_rK)."""
    from rlvla3.bench.span_file import NAME, load_spans

    def pick(runs) -> Dict[str, str]:  # mode -> the run folder that holds its spans (as bench/runner.py names it)
        runs, run_name = set(runs), lambda m: m.replace(" +", "_").replace("@", "-")  # noqa: E731
        return {m: r for m in repeats for r in (f"{run_name(m)}_r{repeats[m]}", run_name(m)) if r in runs}

    def as_tspans(path: str) -> List[TSpan]:
        return sorted((TSpan(s.name, s.track, s.start, s.dur) for s in load_spans(path)), key=lambda s: s.start)

    out: Dict[str, List[TSpan]] = {}
    packed = os.path.join(folder, "modes.tar.gz")
    if os.path.isdir(os.path.join(folder, "modes")):
        for mode, run in pick(os.listdir(os.path.join(folder, "modes"))).items():
            path = os.path.join(folder, "modes", run, NAME)
            if os.path.isfile(path):
                out[mode] = as_tspans(path)
    elif os.path.isfile(packed):
        with tarfile.open(packed) as tar, tempfile.TemporaryDirectory() as tmp:
            members = {m.name.split("/")[-2]: m for m in tar.getmembers() if m.name.endswith("/" + NAME)}
            for mode, run in pick(members).items():
                path = os.path.join(tmp, run + ".gz")
                with open(path, "wb") as f:
                    f.write(tar.extractfile(members[run]).read())
                out[mode] = as_tspans(path)
    return out


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


def after_pack_s(spans: List[TSpan]) -> Optional[float]:
    """Median time from the end of the trainer's `weight_pack` to its next span: what returning
    the packed weights to the driver cost it (the object store copies them out of the trainer's
    process before its next call runs: 0.5 s for oft-1b's 2.3 GB in gpu-dec07f). None without one."""
    trainer = [s for s in spans if s.track == "trainer"]
    gaps = [b.start - a.end for a, b in zip(trainer, trainer[1:]) if a.name == "weight_pack"]
    return float(np.median(gaps)) if gaps else None


def alone_chunk_ms(spans: List[TSpan], share: float, limit: int = 4000, name: str = "env_step") -> List[float]:
    """Chunk steps as one slot would take them alone on its env process: a step whose `share` is
    work on the process's one core ran at rate 1 / (1 - share + share * n(t)) while n of that
    process's steps and resets ran at once (processor sharing), so its work alone is the
    integral of that rate over its span. Tracks are `env{w}/slot{i}`: w is the process.
    `name="reset"`: the resets, priced the same way."""
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
        out += [(s.start, 1000.0 * (cum[s.end] - cum[s.start])) for s in proc if s.name == name]
    return [round(v, 3) for _, v in sorted(out)[:limit]]
