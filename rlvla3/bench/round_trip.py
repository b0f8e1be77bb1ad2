"""Where one decision's action round trip goes (async modes), from the `action_rt` spans.

An env slot records one `action_rt` span per answered request (`SlotRollout._trace`): it starts
when the slot's chunk (or reset) ended and ends when the slot begins handling the answer (the
next chunk starts right after). Its args are the offsets (ms) from that start at which the
request passed each stage; the generator's marks travel back in `ActionReply.timing`. All are
wall-clock times of processes on one machine.

Stages, in order (a mark that a transport does not have, e.g. `read` over Ray, is skipped and its
time goes to the next stage):

- slot: the chunk's end to the request being built (recording the outcome, starting resets);
- build: observing and routing the request, up to its send (includes `transport.coalesce_ms`);
- to generator: the socket and the generator's reader thread;
- to batcher: the reader thread's hand-off to the generator's event loop;
- batcher wait: queued in the dynamic batcher until its batch fired;
- to forward: the batch's hand-off to the forward thread (and the weight-swap lock);
- forward: the policy's forward pass on the whole batch;
- to reply: the forward thread back to the event loop;
- to writer: the answer to the generator's writer thread (socket transport);
- reply: the answer through the socket to the env worker's reader thread (over Ray: the whole
  way back from the event loop);
- to slot: the env worker's thread pool picking the answer up.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import numpy as np

from rlvla3.core.stats import percentiles
from rlvla3.core.timeline import Span

MARKS = ("ready", "sent", "read", "queued", "popped", "fwd0", "fwd1", "done", "written", "recv", "begin")
STAGES = ("slot", "build", "to generator", "to batcher", "batcher wait", "to forward", "forward", "to reply",
          "to writer", "reply", "to slot")  # STAGES[k] ends at MARKS[k]


def stage_times(args: dict) -> Dict[str, float]:
    """One span's args -> ms per stage (a missing mark merges its stage into the next)."""
    out, last = {}, 0.0
    carry = []
    for stage, mark in zip(STAGES, MARKS):
        if mark not in args:
            carry.append(stage)
            continue
        t = float(args[mark])
        out[stage] = t - last
        for c in carry:
            out[c] = 0.0
        carry, last = [], t
    return {st: out.get(st, 0.0) for st in STAGES}


def slot_time(spans: List[Span], t0: float, t1: float) -> Dict[str, float]:
    """Where the slots' time goes over [t0, t1] (fractions, summing to 1): a chunk step, a reset,
    an action round trip, or `waiting` (no episode on: the slot waits for an admitted one)."""
    tracks = {s.track for s in spans if s.name == "action_rt"}
    parts = {"env_step": 0.0, "reset": 0.0, "action_rt": 0.0}
    for s in spans:
        if s.track in tracks and s.name in parts:
            parts[s.name] += max(0.0, min(s.end, t1) - max(s.start, t0))
    total = (t1 - t0) * len(tracks)
    out = {k: round(v / total, 4) for k, v in parts.items()}
    out["waiting"] = round(1.0 - sum(out.values()), 4)
    return out


def _summary(values: List[float]) -> Dict[str, float]:
    """p50, p90 and mean (ms, 2 decimals)."""
    q = percentiles(values, (50, 90))
    return {"p50": round(q["p50"], 2), "p90": round(q["p90"], 2), "mean": round(float(np.mean(values)), 2)}


def breakdown(spans: Iterable[Span], t0: float = float("-inf"), t1: float = float("inf")) -> Optional[dict]:
    """Median, p90 and mean ms of each stage and of the whole round trip over the `action_rt`
    spans that end in [t0, t1]; with the median chunk step and the busy fraction a slot could
    reach if only the round trip came between its chunks, and where the slots' time went
    (`slot_time`). None without such spans."""
    spans = list(spans)
    rts = [s for s in spans if s.name == "action_rt" and t0 <= s.end <= t1]
    if not rts:
        return None
    rows = [stage_times(s.args) for s in rts]
    total = [s.dur * 1000.0 for s in rts]
    stages = {st: _summary([r.get(st, 0.0) for r in rows]) for st in STAGES}
    chunks = [s.dur * 1000.0 for s in spans if s.name == "env_step" and t0 <= s.end <= t1]
    chunk = float(np.median(chunks)) if chunks else None
    out = {"requests": len(rts), "stages_ms": stages,
           "total_ms": _summary(total),
           "batch_mean": round(float(np.mean([s.args.get("batch", 0) for s in rts])), 2),
           "chunk_ms_p50": round(chunk, 2) if chunk else None}
    if chunk:
        out["slot_busy_cap"] = round(chunk / (chunk + float(np.mean(total))), 3)
    # Over the whole window: a slot that went quiet (no episode admitted to it) counts as waiting.
    # Without a window (a trace cut to its first seconds), over the seconds the slots' spans cover.
    slot_spans = [s for s in spans if s.name in ("env_step", "reset", "action_rt")]
    lo = t0 if np.isfinite(t0) else min(s.start for s in slot_spans)
    hi = t1 if np.isfinite(t1) else max(s.end for s in slot_spans)
    if hi > lo:
        out["slot_time"] = slot_time(spans, lo, hi)
    return out


def to_lines(b: Optional[dict]) -> List[str]:
    """Markdown lines for table.md."""
    if not b:
        return []
    lines = [f"Action round trip, chunk end to next chunk ({b['requests']} requests, served in batches of "
             f"{b['batch_mean']} on average; "
             f"median chunk step {b['chunk_ms_p50']} ms, so at most {b.get('slot_busy_cap', 0):.0%} busy):", "",
             "| stage | p50 ms | p90 ms | mean ms |", "|---|---:|---:|---:|"]
    for st, v in b["stages_ms"].items():
        lines.append(f"| {st} | {v['p50']:.2f} | {v['p90']:.2f} | {v['mean']:.2f} |")
    t = b["total_ms"]
    lines.append(f"| **total** | {t['p50']:.2f} | {t['p90']:.2f} | {t['mean']:.2f} |")
    if b.get("slot_time"):
        st = b["slot_time"]
        lines += ["", f"A slot's time: chunk steps {st['env_step']:.1%}, resets {st['reset']:.1%}, action round trips "
                      f"{st['action_rt']:.1%}, waiting for an episode {st['waiting']:.1%}."]
    return lines
