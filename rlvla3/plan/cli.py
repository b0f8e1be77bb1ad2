"""`rlvla3 profile` and `rlvla3 plan` (docs/scaling.md). Every number printed is a prediction."""

from __future__ import annotations

import json
import sys
from typing import List

from rlvla3.plan.forecast import Forecast, Scale, best
from rlvla3.plan.model import MODES, predict, stage_bounds
from rlvla3.plan.profile import StageProfile


def add_parsers(sub) -> None:
    pr = sub.add_parser("profile", help="profile.json of measured stage costs, from a committed bench.json")
    pr.add_argument("--bench", required=True, help="a bench.json written by `rlvla3 bench`")
    pr.add_argument("--mode", default="", help="the mode whose spans give the per-call costs (default: sync)")
    pr.add_argument("--cpu-mode", default="auto", help="the mode whose per-role CPU accounting gives the processes' "
                                                       "CPU costs (auto: full or async-rollout if accounted; none: "
                                                       "no CPU contention)")
    pr.add_argument("--out", default="profile.json")
    pl = sub.add_parser("plan", help="predicted throughput, bottleneck and placement from a profile.json")
    pl.add_argument("--profile", required=True, help="profile.json (`rlvla3 profile`)")
    pl.add_argument("--gpus", type=int, default=1, help="GPUs to plan for (1: the profile's own layout)")
    pl.add_argument("--cores-per-gpu", type=float, default=16.0, help="CPU cores per GPU for the simulators")
    pl.add_argument("--envs", type=int, default=0, help="envs in all (default: the profile's, times --gpus)")
    pl.add_argument("--model", default="", help="a `rlvla3 bench-policy` JSON: its act and train costs replace "
                                                "the profile's (e.g. docs/benchmarks/gpu-vla/oft-7b-bf16-lora.json)")
    pl.add_argument("--graphs", action="store_true", help="with --model: its act times from CUDA graphs (a "
                                                          "bench-policy run with generator.cuda_graphs=true)")
    pl.add_argument("--in-trainer-process", action="store_true",
                    help="one GPU: the generator in the trainer's process (generator.in_trainer_process), "
                         "so the trainer shares one CUDA context with it instead of time slices")
    pl.add_argument("--modes", default="sync,full", help="schedules to plan (any of " + ",".join(MODES) + ")")
    pl.add_argument("--sweep", default="", help="GPU counts, e.g. 1,2,4,8: a scaling table (and --out plot)")
    pl.add_argument("--out", default="", help="with --sweep: write TABLE.md and TABLE.png here (a path stem)")
    pl.add_argument("--seconds", type=float, default=40.0, help="model time simulated per point")


def run_profile(args) -> int:
    from rlvla3.plan.cpu_calibration import auto_cpu_mode
    from rlvla3.plan.from_bench import profile_from_bench

    try:
        with open(args.bench) as f:
            cpu_mode = auto_cpu_mode(json.load(f)) if args.cpu_mode == "auto" else args.cpu_mode
        prof = profile_from_bench(args.bench, args.mode or None, None if cpu_mode == "none" else cpu_mode)
    except (OSError, KeyError, ValueError) as e:
        print(f"rlvla3 profile: {e!r}", file=sys.stderr)
        return 2
    prof.save(args.out)
    print(f"wrote {args.out} ({prof.source})")
    for k, v in prof.sources.items():
        print(f"  {k}: {v}")
    return 0


def apply_model(prof: StageProfile, path: str, graphs: bool = False) -> tuple:
    """A bench-policy JSON's costs into the profile: (grad bytes, weight bytes) for the collectives.
    bench-policy trains one pass (update_epochs=1); the profile's trainer runs update_epochs. `graphs`:
    the act times of its CUDA-graph rows; a JSON without training rows keeps the profile's trainer."""
    with open(path) as f:
        m = json.load(f)
    rows = m.get("cuda_graphs", {}).get("inference") if graphs else m["inference"]
    if not rows:
        raise ValueError(f"{path} has no CUDA-graph rows: run bench-policy with generator.cuda_graphs=true")
    prof.generator.act_ms_by_batch = {int(r["batch"]): float(r["ms_per_call"]) for r in rows}
    rates = [r["samples_per_s"] for r in m.get("training", []) if r.get("samples_per_s")]
    if rates:
        per_pass = max(rates)
        prof.trainer.samples_per_s = prof.trainer.streaming_samples_per_s = per_pass / prof.layout.update_epochs
    width = 2.0 if "16" in m.get("dtype", "") else 4.0
    prof.sources["model"] = (f"{path}: act by batch{' from CUDA graphs' if graphs else ''}, "
                             + ("best training rate / update_epochs" if rates else "training: the profile's (none there)"))
    return m.get("params_trainable", m["params_total"]) * width, m["params_total"] * width


def _row(f: Forecast) -> str:
    return (f"| {f.mode} | {f.placement.describe()} | {f.env_steps_per_s:,.0f} | {f.trained_samples_per_s:,.1f} | "
            f"{f.env_utilization:.2f} / {f.generator_utilization:.2f} / {f.trainer_utilization:.2f} |")


HEADER = ("| mode | placement | env steps/s (predicted) | trained samples/s (predicted) | util. env / gen / trainer |\n"
          "|---|---|---:|---:|---|")


def plan_one_gpu(prof: StageProfile, modes: List[str], seconds: float) -> str:
    b = stage_bounds(prof)
    lines = [f"Predictions for {prof.source}, its own layout ({prof.layout.slots} slots x "
             f"{prof.layout.envs_per_slot} envs, {prof.layout.num_generators} generator(s)):",
             f"stage bounds (env steps/s): simulators {b.simulators:,.0f}, generators {b.generators:,.0f}, "
             f"trainer {b.trainer:,.0f} (streamed {b.trainer_streaming:,.0f})", "",
             "| mode | env steps/s | trained samples/s | util. env / gen / trainer | mean batch | bound | binds |",
             "|---|---:|---:|---|---:|---|---|"]
    for mode in modes:
        r = predict(prof, mode, seconds=seconds)
        utils = {"simulators": r.env_utilization, "generators": max(r.generator_utilization),
                 "trainer": r.trainer_utilization}
        binds = max(utils, key=utils.get)
        if utils[binds] < 0.8:
            binds = "lock-step barriers" if mode in ("sync", "sync-best", "async-train") else "staleness window"
        lines.append(f"| {mode} | {r.env_steps_per_s:,.0f} | {r.trained_samples_per_s:,.1f} | "
                     f"{r.env_utilization:.2f} / {max(r.generator_utilization):.2f} / {r.trainer_utilization:.2f} | "
                     f"{r.mean_batch:.1f} | {b.bottleneck(mode)} | {binds} |")
    return "\n".join(lines)


def plan_gpus(prof: StageProfile, scale: Scale, modes: List[str], seconds: float, measured_cores: float) -> tuple:
    lines, tops = [HEADER], {}
    for mode in modes:
        ranked = best(prof, scale, mode, measured_cores, seconds)
        tops[mode] = ranked[0]
        lines += [_row(f) for f in ranked]
    lines.append("")
    for mode, f in tops.items():
        lines.append(f"recommended for {mode} on {scale.gpus} GPUs: {f.placement.describe()} "
                     f"({f.trained_samples_per_s:,.1f} trained samples/s predicted)")
    return "\n".join(lines), tops


def run_plan(args) -> int:
    try:
        prof = StageProfile.load(args.profile)
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        bad = [m for m in modes if m not in MODES]
        if bad or args.gpus < 1:
            raise ValueError(f"unknown modes {bad} (choose from {MODES}) or --gpus < 1")
        sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
        grad = weights = 0.0
        if args.graphs and not args.model:
            raise ValueError("--graphs reads a --model JSON's CUDA-graph rows: give --model")
        if args.model:
            grad, weights = apply_model(prof, args.model, args.graphs)
        if args.in_trainer_process:
            if not prof.layout.trainer_shares_gpu:
                raise ValueError("--in-trainer-process: the profile's trainer does not share a GPU with the "
                                 "generators (a CPU run or several GPUs)")
            prof.layout.trainer_hosts_generator = True
    except (OSError, KeyError, ValueError) as e:
        print(f"rlvla3 plan: {e}", file=sys.stderr)
        return 2
    measured_cores = prof.env.cores or args.cores_per_gpu
    base_envs = prof.layout.slots * prof.layout.envs_per_slot
    if not sweep and args.gpus == 1 and not args.envs and not args.model:
        print(plan_one_gpu(prof, modes, args.seconds))
        return 0
    if not sweep:
        scale = Scale(args.gpus, args.envs or base_envs * args.gpus, args.cores_per_gpu, grad, weights)
        print(f"Predictions (not measurements) for {scale.envs} envs on {args.gpus} GPUs, "
              f"{args.cores_per_gpu:g} cores per GPU:")
        print(plan_gpus(prof, scale, modes, args.seconds, measured_cores)[0])
        return 0
    text = sweep_table(prof, sweep, args.envs, args.cores_per_gpu, grad, weights, modes, args.seconds, measured_cores,
                       args.out)
    print(text)
    return 0


def sweep_table(prof: StageProfile, gpus: List[int], envs_per_gpu: int, cores: float, grad: float, weights: float,
                modes: List[str], seconds: float, measured_cores: float, out: str = "") -> str:
    """Best placement per mode and GPU count; envs_per_gpu 0: the profile's envs per GPU."""
    base = envs_per_gpu or prof.layout.slots * prof.layout.envs_per_slot
    rows, results = [], {m: [] for m in modes}
    for n in gpus:
        scale = Scale(n, base * n, cores, grad, weights)
        _, tops = plan_gpus(prof, scale, modes, seconds, measured_cores)
        for m, f in tops.items():
            results[m].append(f)
    head = ("| GPUs | envs | " + " | ".join(f"{m}: trained samples/s, env steps/s, best placement" for m in modes)
            + " | " + " | ".join(f"{m} scaling eff." for m in modes) + " |")
    rows = [head, "|" + "---|" * (2 + 2 * len(modes))]
    for i, n in enumerate(gpus):
        cells = [f"{results[m][i].trained_samples_per_s:,.1f}, {results[m][i].env_steps_per_s:,.0f}, "
                 f"{results[m][i].placement.describe()}" for m in modes]
        eff = [results[m][i].trained_samples_per_s / (results[m][0].trained_samples_per_s * n / gpus[0])
               if results[m][0].trained_samples_per_s else float("nan") for m in modes]
        rows.append(f"| {n} | {base * n} | " + " | ".join(cells) + " | " + " | ".join(f"{e:.2f}" for e in eff) + " |")
    text = "\n".join(rows)
    if out:
        with open(out + ".md", "w") as f:
            f.write("Predictions of `rlvla3 plan` (not measurements).\n\n" + text + "\n")
        _plot(gpus, results, out + ".png")
    return text


def _plot(gpus: List[int], results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, fs in results.items():
        ax.plot(gpus, [f.trained_samples_per_s for f in fs], marker="o", label=f"{mode} (best placement)")
    ideal = [results[next(iter(results))][0].trained_samples_per_s * n / gpus[0] for n in gpus]
    ax.plot(gpus, ideal, "k:", label="linear from the first point")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("trained samples/s (predicted)")
    ax.set_title("rlvla3 plan: forecast, not measured")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
