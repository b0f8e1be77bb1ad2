"""Latency profiles recorded from a benchmark, for `env.tabletop.latency.kind=replay`.

A profile is the measured cost of each low-level simulator step and of each reset, in
milliseconds, in the order they happened. A benchmark of a real simulator (LIBERO on the
GPU machine) writes one, so the 2-core machine can replay that simulator's timing, long tail
included, on the cheap built-in env. A step's cost is its chunk span divided by the chunk's
sub-steps: the spread inside a chunk is not recorded (the replay spends it per sub-step).
"""

from __future__ import annotations

from typing import Dict, List

from rlvla3.core.timeline import Span

MAX_VALUES = 20_000  # per list: enough for the tail, small enough to commit


def latency_profile(spans: List[Span], source: str = "") -> Dict:
    steps, resets = [], []
    for s in sorted(spans, key=lambda s: s.start):
        if s.name == "env_step" and s.args.get("steps", 0) > 0:
            steps.extend([s.dur * 1000.0 / s.args["steps"]] * int(s.args["steps"]))
        elif s.name == "reset":
            resets.append(s.dur * 1000.0)
    if not steps or not resets:
        raise ValueError("a latency profile needs env_step and reset spans; the window recorded "
                         f"{len(steps)} steps and {len(resets)} resets")
    return {"source": source, "unit": "ms per low-level step / per reset",
            "step_ms": [round(v, 3) for v in steps[:MAX_VALUES]],
            "reset_ms": [round(v, 3) for v in resets[:MAX_VALUES]]}
