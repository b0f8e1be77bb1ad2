"""The `rlvla3` command: train, sft, eval, bench, bench-policy, bench-weights, profile, plan, plot-runs.

Options after the subcommand are dotted config overrides (`algo.lr=3e-4`,
`preset=quickstart`, `run.mode=sync`); see `rlvla3/runtime/config.py` for every section.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from rlvla3.runtime.config import ConfigError, from_yaml_file, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlvla3", description="Asynchronous RL post-training for VLA policies")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="SFT warm start, then PPO/GRPO (default preset: quickstart)")
    t.add_argument("--resume", default="", help="continue the run in this run directory")
    t.add_argument("overrides", nargs="*", help="key=value config overrides")
    s = sub.add_parser("sft", help="behaviour-clone the scripted expert and save the policy")
    s.add_argument("--out", default="runs/sft_policy", help="output directory for the policy")
    s.add_argument("overrides", nargs="*")
    e = sub.add_parser("eval", help="evaluate a policy on the held-out initial states")
    e.add_argument("--policy", required=True, help="policy directory (save_pretrained layout)")
    e.add_argument("--out", default="", help="where to write eval.json / eval.md / videos (default: policy dir)")
    e.add_argument("overrides", nargs="*")
    bn = sub.add_parser("bench", help="throughput of every mode side by side, stage bounds, timeline")
    bn.add_argument("--workload", default="tabletop-emulated", help="tabletop | tabletop-emulated | libero | metaworld")
    bn.add_argument("--modes", default="sync,sync-best,async-train,async-rollout,full",
                    help="comma-separated modes; sync first gives ratio_to_sync; MODE@LABEL runs MODE once more "
                         "with its own --mode-override (e.g. full@wait30)")
    bn.add_argument("--seconds", type=float, default=60.0, help="measured steady-state seconds per mode")
    bn.add_argument("--warmup", type=float, default=20.0, help="seconds run before measuring")
    bn.add_argument("--out", default="runs/bench", help="output directory")
    bn.add_argument("--policy", default="", help="policy directory to start from (default: a quick SFT)")
    bn.add_argument("--straggler-fraction", type=float, default=0.0,
                    help="also run each mode with this fraction of env slots slowed down")
    bn.add_argument("--straggler-slowdown", type=float, default=5.0)
    bn.add_argument("--bound-seconds", type=float, default=0.0, help="seconds per stage bound (default S/2)")
    bn.add_argument("--repeats", type=int, default=1,
                    help="run the modes this many times in turn; report each mode's median and paired ratios")
    bn.add_argument("--bounds-each-repeat", action="store_true",
                    help="measure the stage bounds after every repeat; efficiency = median over repeats, "
                         "each against its own repeat's bounds (for a machine whose speed drifts)")
    bn.add_argument("--mode-override", action="append", default=[], metavar="'MODE:KEY=VALUE ...'",
                    help="overrides for one mode only (repeatable), e.g. a layout for sync-best: "
                         "'sync-best:rollout.slots_per_worker=2 generator.max_batch=32'")
    bn.add_argument("--keep-spans", action="store_true",
                    help="also write each run's measurement window as modes/RUN/spans.jsonl.gz, to re-measure later")
    bn.add_argument("overrides", nargs="*")
    bp = sub.add_parser("bench-policy", help="one policy: act throughput vs batch, training throughput vs micro-batch")
    bp.add_argument("--out", default="runs/bench_policy", help="output directory (LABEL.json, table.md)")
    bp.add_argument("--label", default="", help="name of this configuration (default: family-size)")
    bp.add_argument("--batches", default="1,8,32,64,128", help="inference batch sizes")
    bp.add_argument("--micro-batches", default="8,32", help="training micro-batch sizes")
    bp.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step")
    bp.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point")
    bp.add_argument("overrides", nargs="*")
    bw = sub.add_parser("bench-weights", help="weight publication time, object store vs torch.distributed channel")
    bw.add_argument("--out", default="runs/bench_weights", help="output directory (weights.json, weights.md)")
    bw.add_argument("--transports", default="object_store,object_store_bf16,collective",
                    help="object_store (float32), object_store_bf16 (bfloat16 copies), collective")
    bw.add_argument("--publishes", type=int, default=5, help="timed publications per transport")
    bw.add_argument("overrides", nargs="*")
    from rlvla3.plan.cli import add_parsers as add_plan_parsers

    add_plan_parsers(sub)  # profile, plan
    pr = sub.add_parser("plot-runs", help="held-out success of several runs by mode (sync, full, ...) against "
                                          "wall-clock time or env steps, and a table beside it")
    pr.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (or folders holding runs)")
    pr.add_argument("--out", required=True, help="figure path (FIG.png); the table goes to FIG.md")
    pr.add_argument("--x", choices=("wall", "steps"), default="wall",
                    help="wall: minutes of the RL stage's clock (default); steps: env steps")
    pr.add_argument("--ref", default="sync", help="reference mode for 'time to reach its final success'")
    pr.add_argument("--exclude-eval", action="store_true",
                    help="subtract the in-RL evaluations' time from the wall clock")
    pr.add_argument("--title", default="")
    pr.add_argument("--group-by", choices=("mode", "name"), default="mode",
                    help="mode: one curve per run.mode (default); name: per run.name less a trailing -s<seed>, "
                         "for variants of one mode (then --ref names such a group)")
    pr.add_argument("--final-evals", type=int, default=1, metavar="K",
                    help="a run's final success: the mean of its last K evaluations (default 1, the last)")
    pr.add_argument("--max-steps", type=int, default=None, metavar="N",
                    help="leave out evaluations past N env steps, so runs of different budgets compare at one")
    return p


def _error(message: str, code: int = 2) -> int:
    """Say what went wrong on stderr; the command's exit code."""
    print(f"rlvla3 {message}", file=sys.stderr)
    return code


def _plot_runs(args) -> int:
    from rlvla3.runtime.plot_runs import plot_runs

    try:
        plot_runs(args.run_dirs, args.out, x=args.x, ref=args.ref, exclude_eval=args.exclude_eval, title=args.title,
                  say=lambda m: print(m, file=sys.stderr), group_by=args.group_by,
                  final_evals=args.final_evals, max_steps=args.max_steps)
    except ValueError as e:
        return _error(f"plot-runs: {e}")
    with open(os.path.splitext(args.out)[0] + ".md") as f:
        print(f.read())
    print(f"wrote {args.out}")
    return 0


def _bench_weights(args) -> int:
    from rlvla3.bench.weight_sync import TRANSPORTS, run_weight_bench, table

    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    try:
        if not transports or set(transports) - set(TRANSPORTS) or args.publishes < 1:
            raise ValueError(f"--transports from {list(TRANSPORTS)}, --publishes >= 1")
        load_config(args.overrides)
    except (ConfigError, ValueError) as e:
        return _error(f"bench-weights: {e}")
    print(table(run_weight_bench(args.overrides, transports, args.publishes, args.out, argv=args.argv)))
    return 0


def _bench_policy(args) -> int:
    from rlvla3.bench.policy_bench import run_policy_bench, table

    try:
        batches = [int(x) for x in args.batches.split(",") if x.strip()]
        micros = [int(x) for x in args.micro_batches.split(",") if x.strip()]
        if not batches or min(batches + micros) < 1 or args.seconds <= 0 or args.accum < 1:
            raise ValueError("sizes must be >= 1, --seconds > 0, --accum >= 1")
        load_config(args.overrides)
    except (ConfigError, ValueError) as e:
        return _error(f"bench-policy: {e}")
    result = run_policy_bench(args.overrides, batches, micros, args.seconds, args.accum, args.out, args.label)
    text = table([result])
    with open(os.path.join(args.out, f"{result['label']}.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def _bench(args) -> int:
    from rlvla3.bench.runner import run_bench
    from rlvla3.bench.workloads import bad_modes
    from rlvla3.runtime.config import MODES

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = bad_modes(modes, MODES)
    if bad or not modes:
        return _error(f"bench: unknown or repeated modes {bad}; choose from {list(MODES)}, each at most once, "
                      "or MODE@LABEL for one more run of MODE with its own --mode-override (e.g. full@wait30)")
    if args.seconds <= 0 or args.warmup < 0 or not 0 <= args.straggler_fraction <= 1 or args.repeats < 1:
        return _error("bench: --seconds must be > 0, --warmup >= 0, --straggler-fraction in [0, 1], --repeats >= 1")
    try:
        from rlvla3.bench.workloads import parse_mode_overrides, workload_overrides

        per_mode = parse_mode_overrides(args.mode_override, modes)
        for mode in modes:  # every mode's config, before anything runs
            load_config(workload_overrides(args.workload, mode, args.overrides + per_mode.get(mode, [])))
    except (ConfigError, ValueError) as e:
        return _error(f"bench: {e}")
    result = run_bench(args.workload, modes, args.seconds, args.out, args.overrides, warmup=args.warmup,
                       mode_overrides=per_mode,
                       policy=args.policy, straggler_fraction=args.straggler_fraction,
                       straggler_slowdown=args.straggler_slowdown, bound_seconds=args.bound_seconds or None,
                       repeats=args.repeats, bounds_each_repeat=args.bounds_each_repeat, argv=args.argv,
                       keep_spans=args.keep_spans)
    with open(os.path.join(args.out, "table.md")) as f:
        print(f.read())
    return 0 if result["modes"] else 1


def main(argv=None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "plot-runs":  # run directories, no key=value overrides
        return _plot_runs(parser.parse_args(argv))
    if argv and argv[0] in ("profile", "plan"):  # files and numbers, no config overrides
        from rlvla3.plan.cli import run_plan, run_profile

        args = parser.parse_args(argv)
        return run_profile(args) if args.command == "profile" else run_plan(args)
    # key=value overrides may come before, between or after the options
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = list(args.overrides) + extra
    args.argv = list(argv)  # as typed, for the record of a benchmark's result
    bench = {"bench": _bench, "bench-policy": _bench_policy, "bench-weights": _bench_weights}.get(args.command)
    if bench is not None:
        return bench(args)
    try:
        if args.command == "train" and args.resume:
            path = os.path.join(args.resume, "config.yaml")
            if not os.path.isfile(path):
                raise ConfigError(f"--resume {args.resume}: no config.yaml there (not a run directory)")
            cfg = from_yaml_file(path)
            if args.overrides:
                raise ConfigError("--resume continues a run with its own config; drop the key=value overrides")
        else:
            cfg = load_config(args.overrides)
    except ConfigError as e:
        return _error(f"{args.command}: config error: {e}")
    if args.command == "train":
        from rlvla3.runtime.graceful import TrainerLost
        from rlvla3.runtime.train_loop import train

        from rlvla3.runtime.remote_wait import RemoteTimeout, WorkersLost

        try:
            summary = train(cfg, resume=args.resume)
        except TrainerLost as e:
            return _error(f"train: {e}", 3)
        except (RemoteTimeout, WorkersLost) as e:  # a worker that hung past its deadline, or kept failing
            return _error(f"train: stopped: {e}", 4)
        keys = ("run_dir", "sft_success_rate", "final_success_rate", "improvement_points", "env_steps", "wall_s",
                "stopped_by", "ended_by")
        print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
        return 0
    if args.command == "sft":
        from rlvla3.runtime.sft_command import run_sft

        run_sft(cfg, args.out)
        return 0
    if args.command == "eval":
        from rlvla3.runtime.eval_command import run_eval

        if not os.path.isdir(args.policy):
            return _error(f"eval: --policy {args.policy} is not a directory")
        report = run_eval(cfg, args.policy, args.out or args.policy)
        print(report.to_markdown())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
