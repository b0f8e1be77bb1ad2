"""Predict committed benchmark results from their stage costs and compare (docs/scaling.md).

For every bench.json: one profile (`profile_from_bench`, stage costs of the reference mode), then
every mode the run measured, with and without its stragglers, predicted by the model and set
beside the measurement.
"""

from __future__ import annotations

import copy
import glob
import json
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from rlvla3.plan.cpu_calibration import set_cpu_costs
from rlvla3.plan.from_bench import (batcher_late_ms, bench_spans, mode_layout, mode_resets, profile_from_bench,
                                    straggler_args)
from rlvla3.plan.model import predict


@dataclass
class Row:
    bench: str
    mode: str
    measured_env: float
    predicted_env: float
    measured_trained: float
    predicted_trained: float
    measured_util: dict  # env, generator, trainer
    predicted_util: dict
    window_iterations: float = float("inf")  # lock-step: predicted iterations in the measured window

    @property
    def short_window(self) -> bool:
        """Fewer than 3 iterations in the window: one iteration more or less moves the measurement >= 30%."""
        return self.window_iterations < 3
    @property
    def env_error(self) -> float:
        return self.predicted_env / self.measured_env - 1.0 if self.measured_env else float("nan")

    @property
    def util_error(self) -> float:
        return max(abs(self.predicted_util[k] - self.measured_util[k]) for k in self.measured_util)


def measured_utils(m: dict) -> dict:
    u = m.get("utilization", {})
    pick = lambda p: [v["utilization"] for k, v in u.items() if k.startswith(p)]  # noqa: E731
    return {"env": float(np.mean(pick("env") or [0])), "generator": float(np.mean(pick("generator") or [0])),
            "trainer": float(u.get("trainer", {}).get("utilization", 0.0))}


def validate_bench(path: str, seconds: float = 40.0, seed: int = 0, first_model: bool = False) -> List[Row]:
    """Every mode of one bench. `first_model`: the model as first validated (each process at its
    speed alone, resets from the reference mode, no request coalescing); else the cores shared
    between the processes (plan/cpu.py) with each mode's CPU accounting, and an asynchronous
    mode's resets from its own spans."""
    # here, not at the top: rlvla3.bench.workloads loads the config (torch), which `rlvla3 plan` does not need
    from rlvla3.bench.workloads import mode_of

    with open(path) as f:
        bench = json.load(f)
    if not bench.get("bounds") or not bench.get("modes"):
        return []
    prof = profile_from_bench(path)
    spans = bench_spans(path, bench)  # once for every mode's resets
    frac, _ = straggler_args(bench.get("command", ""))
    rows, ref_reset, ref_layout, ref_gen = [], prof.env.reset, prof.layout, copy.copy(prof.generator)
    if first_model:
        prof.layout.coalesce_ms = 0.0
        prof.layout.trainer_shares_gpu = False
    for name, m in bench["modes"].items():
        mode, strag = name.split(" ")[0], name.endswith("+stragglers")
        prof.layout = mode_layout(bench, mode, ref_layout)
        prof.layout.straggler_fraction = frac if strag else 0.0
        prof.env.reset = ref_reset
        prof.generator = copy.copy(ref_gen)  # a mode's CPU costs (set_cpu_costs) do not carry to the next
        prof.generator.late_ms = 0.0
        if mode_of(mode) in ("async-rollout", "full"):
            if not first_model:
                set_cpu_costs(prof, bench, name)
                prof.env.reset = mode_resets(spans, mode, share=prof.env.process_share) or ref_reset
                prof.generator.late_ms = batcher_late_ms(bench, name)
        r = predict(prof, mode_of(mode), seconds=seconds, seed=seed)  # full@LABEL: full, with its own overrides
        pu = {"env": r.env_utilization, "generator": float(np.mean(r.generator_utilization)),
              "trainer": r.trainer_utilization}
        rows.append(Row(os.path.relpath(path, "docs/benchmarks") if "docs/benchmarks" in path else path, name,
                        m["env_steps_per_s"], r.env_steps_per_s, m["trained_samples_per_s"], r.trained_samples_per_s,
                        measured_utils(m), pu, m["window_s"] / r.extra["iteration_s"] if "iteration_s" in r.extra
                        else float("inf")))
    prof.layout = ref_layout
    prof.layout.straggler_fraction = 0.0
    return rows


def bench_files(root: str = "docs/benchmarks") -> List[str]:
    out = []
    for p in sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True)):
        if os.path.basename(p) in ("timeline.json", "latency_profile.json", "weights.json", "summary.json"):
            continue
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("modes") and d.get("bounds") and not d.get("partial"):
            out.append(p)
    return out


def table(rows: List[Row]) -> str:
    lines = ["| bench | mode | env steps/s measured | predicted | error | trained/s measured | predicted | "
             "util. env / gen / trainer measured | predicted | worst util. error |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        mu, pu = r.measured_util, r.predicted_util
        fmt = lambda u: f"{u['env']:.2f} / {u['generator']:.2f} / {u['trainer']:.2f}"  # noqa: E731
        mark = " †" if r.short_window else ""
        lines.append(f"| {r.bench} | {r.mode}{mark} | {r.measured_env:,.0f} | {r.predicted_env:,.0f} | "
                     f"{100 * r.env_error:+.0f}% | {r.measured_trained:,.0f} | {r.predicted_trained:,.0f} | "
                     f"{fmt(mu)} | {fmt(pu)} | {r.util_error:.2f} |")
    return "\n".join(lines)


def summary(rows: List[Row], modes: Optional[List[str]] = None, skip_short: bool = False) -> dict:
    rows = [r for r in rows if (modes is None or r.mode.split(" ")[0] in modes) and not (skip_short and r.short_window)]
    env = np.array([abs(r.env_error) for r in rows])
    util = np.array([r.util_error for r in rows])
    return {"rows": len(rows), "env_within_10pct": int((env <= 0.10).sum()), "util_within_005": int((util <= 0.05).sum()),
            "within_target": int(((env <= 0.10) & (util <= 0.05)).sum()),
            "env_abs_error_median": float(np.median(env)) if len(env) else None,
            "util_error_median": float(np.median(util)) if len(util) else None}
