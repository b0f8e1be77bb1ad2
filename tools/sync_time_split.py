"""Where a lock-step run's iteration time went.

    python tools/sync_time_split.py RUN [RUN ...]   # sync runs; full runs are listed beside them

Sums the driver's `time/*` columns of each run's `metrics.jsonl` (docs/metrics.md). A `sync`
iteration is rollout (waiting for the env workers' chunk steps, for the generators' batched
inference, the rest) then training, one after the other. The last two columns give env steps
over the time `sync` waited for chunk steps, and its iteration time over that wait. That wait
is not what the simulators need alone (a process's slots step together and each step waits for
the slowest process): `rlvla3 bench` measures the simulators' own bound. Evaluations are outside
`time/iteration_s`. For a `full` run the table gives its env steps per second of iteration time.
"""

import json
import os
import sys
from collections import Counter


def split(run: str) -> dict:
    sums = Counter()
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            for k, v in json.loads(line).items():
                if k.startswith("time/"):
                    sums[k] += v
    summary_path = os.path.join(run, "summary.json")
    with open(summary_path) as f:
        summary = json.load(f)
    out = {"run": run, "mode": summary.get("mode", "?"), "env_steps": summary["env_steps"], "iteration_s": sums["time/iteration_s"]}
    rl_s = summary.get("rl_wall_s", 0.0) - summary.get("rl_eval_s", 0.0)
    if rl_s > 0 and out["iteration_s"] < 0.8 * rl_s:  # committed runs sometimes keep every 4th row only
        sys.exit(f"{run}: metrics.jsonl holds {out['iteration_s']:.0f} s of iterations against {rl_s:.0f} s of RL "
                 "time without evaluations: rows are missing (a thinned copy?), so the sums would be wrong")
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
    header = ("| run | mode | env steps | iteration s | env chunk steps s | inference s | other rollout s | "
              "training s | env steps/s | iteration / env wait |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        if not os.path.isfile(os.path.join(run, "metrics.jsonl")):
            sys.exit(f"{run}: no metrics.jsonl (pass run directories)")
        lines.append(row(split(run)))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(main(sys.argv[1:]))
