"""Each task's held-out success at every evaluation of one or more runs, as a markdown table.

    python tools/eval_task_table.py runs/mt10/sync-s0 [runs/mt10/kl-s0 ...]

Reads `metrics.jsonl` (the `eval_task/*` columns, written since 2026-12-05; the final
evaluation is among them) and, for the first row, `eval_sft.json` where present (runs started
before the columns existed log the SFT evaluation without them): one row per evaluation, one
column per task, so that tasks trading against each other show over the run.
"""

import json
import os
import sys

from rlvla3.runtime.evaluation import per_task_metrics


def rows(run: str) -> list:
    out = []
    sft = os.path.join(run, "eval_sft.json")
    if os.path.isfile(sft):
        with open(sft) as f:
            r = json.load(f)
        out.append(("SFT", 0, r["success_rate"], per_task_metrics(r["per_task"])))
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            tasks = {k: v for k, v in m.items() if k.startswith("eval_task/")}
            if tasks and m.get("env_steps"):
                out.append((str(m["step"]), m["env_steps"], m["eval/success_rate"], tasks))
    return out


def table(run: str) -> str:
    found = rows(run)
    if not found:
        return f"{run}: no per-task evaluation in metrics.jsonl\n"
    names = list(found[0][3])
    short = [n[len("eval_task/"):].replace("_", " ") for n in names]
    lines = [f"### {run}", "", "| step | env steps | all | " + " | ".join(short) + " |",
             "|---|---:|---:|" + "---:|" * len(names)]
    for step, steps, rate, tasks in found:
        cells = " | ".join(f"{100 * tasks[n]:.0f}" if n in tasks else "" for n in names)
        lines.append(f"| {step} | {steps:,} | {100 * rate:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n".join(table(r) for r in sys.argv[1:]))
