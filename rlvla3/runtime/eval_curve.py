"""Held-out success against env steps and against wall-clock time (issue 23).

Each evaluation of a run is one `EvalPoint`, in `summary.json -> eval_curve`, in
`metrics.jsonl` (the row with `eval/success_rate`) and in the checkpoint's counters.

The clock (`wall_s`) is the RL stage's: it starts when the schedule starts, so it excludes
the SFT stage, the start of the workers (simulators built, models loaded) and the SFT
policy's evaluation, which every mode pays alike. It includes the evaluations made during RL
and the checkpoints. `eval_s` is the time spent in those evaluations before the point, so
`wall_s - eval_s` is the RL time without evaluation. In the asynchronous modes the env
workers and the trainer keep working (up to the staleness bound) while the driver evaluates,
so there the subtraction removes some time that also trained; `wall_s` is the honest clock.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import List, Optional

CLOCK = ("wall_s: seconds since the RL stage started (excludes SFT, worker start and the SFT evaluation; "
         "includes in-RL evaluations and checkpoints), taken when the evaluation starts; eval_s: seconds of "
         "in-RL evaluations before it; wall_s - eval_s: RL time without evaluation")


@dataclass
class EvalPoint:
    env_steps: int
    wall_s: Optional[float]  # RL-stage clock at the evaluation's start; None: unknown (an older run)
    eval_s: float  # seconds of in-RL evaluations before this one
    duration_s: float  # this evaluation's own seconds
    success_rate: float
    train_steps: int = 0
    stem: str = ""  # eval_sft | eval_periodic | eval_final

    @property
    def train_wall_s(self) -> Optional[float]:
        return None if self.wall_s is None else self.wall_s - self.eval_s

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("wall_s", "eval_s", "duration_s"):
            d[k] = None if d[k] is None else round(d[k], 3)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EvalPoint":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _from_metrics(path: str) -> List[EvalPoint]:
    """Rows of metrics.jsonl with an evaluation. Older runs lack `eval/wall_s`: their wall is
    then the logger's clock (`wall_s`, from the run's start: SFT and worker start included)."""
    pts = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a run killed mid-write leaves a partial last line
                continue
            if "eval/success_rate" not in row:
                continue
            if "eval/wall_s" in row:
                pts.append(EvalPoint(int(row["env_steps"]), row["eval/wall_s"], row.get("eval/eval_s", 0.0),
                                     row.get("eval/duration_s", 0.0), row["eval/success_rate"], int(row["step"])))
            else:
                pts.append(EvalPoint(int(row["env_steps"]), row.get("wall_s"), 0.0, 0.0,
                                     row["eval/success_rate"], int(row["step"])))
    return pts


def load_eval_curve(run_dir: str) -> List[EvalPoint]:
    """A run's evaluations: summary.json's eval_curve, else metrics.jsonl (a run still going or
    stopped before its summary), else summary.json's older eval_points (no wall clock)."""
    summary = os.path.join(run_dir, "summary.json")
    s = {}
    if os.path.isfile(summary):
        with open(summary) as f:
            s = json.load(f)
        if s.get("eval_curve"):
            return [EvalPoint.from_json(p) for p in s["eval_curve"]]
    metrics = os.path.join(run_dir, "metrics.jsonl")
    if os.path.isfile(metrics):
        pts = _from_metrics(metrics)
        if pts:
            return pts
    return [EvalPoint(int(e), None, 0.0, 0.0, float(r)) for e, r in s.get("eval_points", [])]
