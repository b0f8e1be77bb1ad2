"""Where a lock-step run's time went, and how fast any overlap of its stages could go.

    python tools/sync_time_split.py RUN [RUN ...]   # sync runs; full runs are listed for comparison

Sums the driver's `time/*` columns of each run's `metrics.jsonl` (docs/metrics.md). A `sync`
iteration is rollout (the env workers' chunk steps, the generators' batched inference, the
rest) then training, one after the other; an asynchronous mode can at best hide everything but
the slowest stage. With the env workers the slowest, the bound is the env-only rate: env steps
over the time `sync` waited for chunk steps, and `sync`'s iteration time over that wait is the
most an overlap can gain on this workload and layout. Evaluations are outside `time/iteration_s`
(they stop every mode alike). For a `full` run the table gives its env steps per second of
iteration time, to set beside the `sync` runs' env-only rate.
"""

import json
import os
import sys
from collections import Counter


def split(run: str) -> dict:
    sums, mode = Counter(), "?"
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            for k, v in json.loads(line).items():
                if k.startswith("time/"):
                    sums[k] += v
    summary_path = os.path.join(run, "summary.json")
    with open(summary_path) as f:
        summary = json.load(f)
    mode = summary.get("mode", mode)
    out = {"run": run, "mode": mode, "env_steps": summary["env_steps"], "iteration_s": sums["time/iteration_s"]}
    if "time/rollout_env_s" in sums:
        out.update(env_s=sums["time/rollout_env_s"], infer_s=sums["time/rollout_infer_s"],
                   rollout_s=sums["time/rollout_s"], train_s=sums["time/train_wait_s"])
    return out


def row(s: dict) -> str:
    it, steps = s["iteration_s"], s["env_steps"]
    if "env_s" not in s:
        return (f"| {s['run']} | {s['mode']} | {steps:,} | {it:.1f} | - | - | - | - | {steps / it:,.0f} | - |")
    other = s["rollout_s"] - s["env_s"] - s["infer_s"]
    share = lambda x: f"{x:.1f} ({100 * x / it:.0f}%)"  # noqa: E731
    return (f"| {s['run']} | {s['mode']} | {steps:,} | {it:.1f} | {share(s['env_s'])} | {share(s['infer_s'])} | "
            f"{share(other)} | {share(s['train_s'])} | {steps / s['env_s']:,.0f} (env only) | "
            f"{it / s['env_s']:.2f}x |")


def main(runs: list) -> str:
    lines = ["| run | mode | env steps | iteration s | env chunk steps s | inference s | other rollout s | "
             "training s | env steps/s | overlap bound |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        if not os.path.isfile(os.path.join(run, "metrics.jsonl")):
            sys.exit(f"{run}: no metrics.jsonl (pass run directories)")
        lines.append(row(split(run)))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(main(sys.argv[1:]))
