"""Evaluation on the held-out initial states: per-task success table, JSON and markdown."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Dict, List

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment
from rlvla3.runtime.lockstep_rollout import lockstep_rollout


@dataclass
class EvalReport:
    success_rate: float
    episodes: int
    per_task: Dict[str, dict] = field(default_factory=dict)  # instruction -> {success_rate, episodes}
    mean_env_steps: float = 0.0
    policy_version: int = 0
    frames: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("frames")
        return d

    def to_markdown(self) -> str:
        lines = ["| task | episodes | success |", "|---|---:|---:|"]
        for name, row in self.per_task.items():
            lines.append(f"| {name} | {row['episodes']} | {100 * row['success_rate']:.1f}% |")
        lines.append(f"| **all** | {self.episodes} | **{100 * self.success_rate:.1f}%** |")
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str, stem: str = "eval") -> None:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
            json.dump(self.to_json(), f, indent=2)
        with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
            f.write(self.to_markdown())


def per_task_metrics(per_task: Dict[str, dict]) -> Dict[str, float]:
    """Each task's held-out success as a metric, `eval_task/<instruction>` (its words joined
    by underscores, so that TensorBoard tags and shell globs stay plain)."""
    return {"eval_task/" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_"): row["success_rate"]
            for name, row in per_task.items() if row.get("episodes")}


def evaluate(backend, workers, generators, slots_per_worker: int, instructions: List[str], num_init_states: int,
             horizon: int, deterministic: bool = True, video_slots: int = 0, split: str = "eval",
             policy_version: int = 0, guard=None, max_tries: int = 3, repeats: int = 1) -> EvalReport:
    """Run every (task, held-out init) pair `repeats` times, in waves over the available slots.
    Pairs whose episode was lost (a worker died or hung, or the env failed) are run again, up to
    `max_tries` times; the report counts only finished episodes."""
    pending = [(t, i) for t in range(len(instructions)) for i in range(num_init_states) for _ in range(repeats)]
    tries: Dict[tuple, int] = {}
    total_slots = len(workers) * slots_per_worker
    outcomes, frames, first = [], {}, True
    while pending:
        wave, pending = pending[:total_slots], pending[total_slots:]
        # Pad the last wave by repeating its pairs; padded outcomes are discarded by slot index.
        padded = wave + [wave[k % len(wave)] for k in range(total_slots - len(wave))]
        assignments = [[EpisodeAssignment(t, i, split, keep=True) for t, i in padded[w * slots_per_worker:
                                                                                    (w + 1) * slots_per_worker]]
                       for w in range(len(workers))]
        res = lockstep_rollout(backend, workers, generators, assignments, "none", horizon, deterministic,
                               video_slots=video_slots if first else 0, guard=guard)
        first = False
        done = set()
        for o in res.outcomes:
            pos = o["worker"] * slots_per_worker + o["slot"]  # its place in the wave; keep only real pairs
            if pos < len(wave) and pos not in done:
                done.add(pos)
                outcomes.append(o)
        for pos, pair in enumerate(wave):
            if pos not in done:
                tries[pair] = tries.get(pair, 0) + 1
                if tries[pair] < max_tries:
                    pending.append(pair)
        frames.update(res.frames)
    per_task = {}
    for t, name in enumerate(instructions):
        succ = [o["success"] for o in outcomes if o["task_id"] == t]
        per_task[name] = {"episodes": len(succ), "success_rate": float(np.mean(succ)) if succ else 0.0}
    succ_all = [o["success"] for o in outcomes]
    return EvalReport(
        success_rate=float(np.mean(succ_all)) if succ_all else 0.0, episodes=len(succ_all), per_task=per_task,
        mean_env_steps=float(np.mean([o["env_steps"] for o in outcomes])) if outcomes else 0.0,
        policy_version=policy_version, frames=frames,
    )
