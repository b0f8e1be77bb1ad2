"""`rlvla3 bench`: every mode for S seconds of steady state on the same machine, in one run.

For each mode a fresh session runs the real schedule (real env workers, generators and
trainer, learning from an SFT policy) with timeline recording on; after `warmup` seconds a
window of `seconds` is measured from the workers' own spans (`measure.py`). Then the stage
bounds are measured in a session of their own: the simulators alone (random actions, their
episodes cut at the lengths `full` ran, and, for reference, to the time limit), the
generators alone (inference at each batch size) and the trainer alone (synthetic global
batches), each converted to env steps/s, so `pipeline_efficiency = achieved / min(bounds)`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional

from rlvla3.bench.cpu_accounting import CpuWindow
from rlvla3.bench.measure import episode_lengths, window_metrics
from rlvla3.bench.workloads import workload_overrides
from rlvla3.envs.factory import env_config
from rlvla3.policies import family_config
from rlvla3.runtime.config import envs_per_worker, load_config
from rlvla3.runtime.run_logger import RunLogger
from rlvla3.runtime.session import ASYNC_ROLLOUT_MODES, start_session
from rlvla3.runtime.train_loop import LoopState, run_schedule

BENCH_SFT = ["sft.demos_per_task=48", "sft.epochs=6"]  # a quick warm start: episodes of varying length


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_policy(cfg, out: str, say: Callable) -> str:
    """A quickly behaviour-cloned policy (cached in OUT/sft_policy)."""
    path = os.path.join(out, "sft_policy")
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        return path
    if cfg.env.type != "tabletop":  # the scripted expert exists only for the built-in env
        from rlvla3.policies import build_policy

        say(f"bench: no SFT for env.type={cfg.env.type}: a randomly initialised policy (pass --policy DIR to "
            "use a trained one)")
        build_policy(cfg.policy).save_pretrained(path)
        return path
    from rlvla3.runtime.sft_command import run_sft

    say("bench: training a quick SFT policy for the benchmark (cached for later runs)")
    run_sft(cfg, path)
    return path


def _actors(session) -> list:
    return list(session.env_workers) + list(session.generators) + [session.trainer]


def run_mode(cfg, policy_dir: str, seconds: float, warmup: float, out_dir: str) -> tuple:
    """One mode: returns (metrics, spans of the measurement window, window bounds)."""
    session = start_session(cfg, policy_dir=policy_dir)
    b = session.backend
    logger = RunLogger(out_dir, 0, progress=False)
    try:
        b.get([a.set_trace.remote(True) for a in _actors(session)])
        session.spans.enabled = True
        loop = LoopState(cfg=cfg, logger=logger, session=session, run_dir=out_dir)
        t0 = time.time()
        loop.deadline = t0 + warmup + seconds
        cpu = CpuWindow(t0 + warmup, t0 + warmup + seconds)
        run_schedule(session, loop)
        t_stop = time.time()
        cpu_used = cpu.result()
        w0, w1 = t0 + warmup, t0 + warmup + seconds
        spans = [s for part in b.get([a.timeline.remote(t0) for a in _actors(session)]) for s in part]
        spans += session.spans.spans(t0)
        metrics = window_metrics(spans, w0, min(w1, t_stop))
        metrics["cpu"] = cpu_used
        metrics["run"] = {"wall_s": round(t_stop - t0, 2), "env_steps_total": loop.env_steps,
                          "optimizer_steps": loop.train_steps, "samples_trained": loop.samples_trained,
                          "episodes": loop.episodes,
                          "rollout_success_rate": loop.successes / loop.episodes if loop.episodes else None}
        if cfg.run.mode in ASYNC_ROLLOUT_MODES:
            gen = b.get([g.stats.remote() for g in session.generators])
            metrics["batcher"] = [{k: v for k, v in g.items() if isinstance(v, (int, float))} for g in gen]
            rep = loop.async_report
            metrics["staleness_run"] = {"hist": rep.get("staleness_hist", {}),
                                        "dropped_stale": rep.get("samples_dropped_stale", 0),
                                        "admission_refused": rep.get("admission_refused", 0)}
        window = [s for s in spans if s.end >= w0 and s.start <= w1]
        return metrics, window, (w0, w1)
    finally:
        logger.close()
        session.shutdown()


def stage_bounds(cfg, policy_dir: str, seconds: float, steps_per_decision: float,
                 episode_steps: Optional[List[int]] = None) -> dict:
    """Each stage alone, in env steps/s (decisions converted with the measured steps per decision).
    The simulators run random actions, so their episodes last to the time limit; with
    `episode_steps` (the lengths `full` measured) they are also run cut to those lengths, which
    is the bound: an SFT policy ends episodes early, so the pipeline pays more resets per step."""
    session = start_session(cfg, policy_dir=policy_dir)
    b = session.backend
    try:
        p, env = family_config(cfg.policy), env_config(cfg)

        def sims_alone(lengths):
            runs = b.get([w.bench_sim.remote(seconds, p.chunk_size, p.action_dim, lengths)
                          for w in session.env_workers])
            return sum(r["env_steps"] for r in runs) / max(r["seconds"] for r in runs)

        sim_limit = sims_alone(None)
        sim = sims_alone(episode_steps) if episode_steps else sim_limit
        slots = cfg.rollout.num_env_workers * envs_per_worker(cfg.rollout)
        sizes = sorted({n for n in (1, 4, 16, 32, 64, 128, cfg.generator.max_batch, slots) if n <= max(slots, 1)})
        per_size = b.get(session.generators[0].bench_forward.remote(sizes, seconds / len(sizes), env.image_size,
                                                                    session.instructions))
        gen = len(session.generators) * max(per_size.values()) * steps_per_decision
        # The trainer as each schedule runs it: whole global batches, or streamed micro-batches
        # (`full` with algo.stream_normalization=exact costs a second backward per micro-batch).
        tr = b.get(session.trainer.bench_train.remote(seconds, env.image_size, session.instructions))
        trs = b.get(session.trainer.bench_train.remote(seconds, env.image_size, session.instructions, True))
        train = tr["samples"] / tr["seconds"] * steps_per_decision
        train_s = trs["samples"] / trs["seconds"] * steps_per_decision
        return {"simulators_env_steps_per_s": sim, "simulators_time_limit_env_steps_per_s": sim_limit,
                "simulator_episode_steps_mean": float(sum(episode_steps) / len(episode_steps)) if episode_steps else None,
                "generators_env_steps_per_s": gen,
                "trainer_env_steps_per_s": train, "trainer_streaming_env_steps_per_s": train_s,
                "min_env_steps_per_s": min(sim, gen, train),
                "min_env_steps_per_s_streaming": min(sim, gen, train_s),
                "bottleneck": min((sim, "simulators"), (gen, "generators"), (train, "trainer"))[1],
                "bottleneck_streaming": min((sim, "simulators"), (gen, "generators"), (train_s, "trainer"))[1],
                "generator_samples_per_s_by_batch": {str(k): v for k, v in per_size.items()},
                "trainer_samples_per_s": tr["samples"] / tr["seconds"],
                "trainer_streaming_samples_per_s": trs["samples"] / trs["seconds"],
                "steps_per_decision": steps_per_decision, "seconds_each": seconds}
    finally:
        session.shutdown()


def _median_index(values: List[float]) -> int:
    """Index of the median (the lower one of an even count): a repeat that really ran."""
    return sorted(range(len(values)), key=values.__getitem__)[(len(values) - 1) // 2]


def run_bench(workload: str, modes: List[str], seconds: float, out: str, overrides: List[str],
              warmup: float = 20.0, policy: str = "", straggler_fraction: float = 0.0,
              straggler_slowdown: float = 5.0, bound_seconds: Optional[float] = None,
              say: Callable = print, repeats: int = 1, bounds_each_repeat: bool = False) -> dict:
    """`repeats` > 1 runs the mode list that many times in turn (sync, full, sync, full, ...),
    so that a machine whose speed drifts (a shared VM) biases no mode: each mode reports its
    median repeat, every repeat's env steps/s, and the ratios to sync paired by repeat.
    `bounds_each_repeat` measures the stage bounds after every repeat too, and each mode's
    efficiency is the median of its repeats, each against the bounds of its own repeat."""
    from rlvla3.bench.report import write_outputs

    os.makedirs(out, exist_ok=True)
    base_cfg = load_config(workload_overrides(workload, modes[0], BENCH_SFT + overrides))
    policy_dir = policy or bench_policy(base_cfg, out, say)
    result: Dict = {"workload": workload, "command": " ".join(["rlvla3", "bench"] + sys.argv[2:]),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
                    "seconds": seconds, "warmup_s": warmup, "overrides": overrides, "modes": {}}
    variants = [("", [])]
    if straggler_fraction > 0:
        variants.append((" +stragglers", [f"rollout.straggler_fraction={straggler_fraction}",
                                          f"rollout.straggler_slowdown={straggler_slowdown}"]))
    bcfg = load_config(workload_overrides(workload, "full", overrides))
    bound_s = bound_seconds or max(5.0, seconds / 2)
    ref = "full" if "full" in modes else modes[0]  # the mode whose episodes the simulators' bound runs

    def bounds_for(rep: int, tag: str = "") -> dict:
        """Stage bounds on the steps per decision and episode lengths of `full` (else the first
        mode) in repeat `rep`: the simulators then run the episodes the pipeline ran."""
        spd = runs[ref][rep]["env_steps_per_decision"] or family_config(base_cfg.policy).chunk_size
        window, span = windows[ref][rep]
        say(f"bench: stage bounds (each stage alone){tag}")
        return stage_bounds(bcfg, policy_dir, bound_s, spd, episode_lengths(window, *span))

    runs: Dict[str, List[dict]] = {}
    windows: Dict[str, List[tuple]] = {}  # mode -> per repeat (spans, (t0, t1))
    bounds_by_repeat: List[dict] = []
    for rep in range(repeats):
        tag = f" (repeat {rep + 1}/{repeats})" if repeats > 1 else ""
        for mode in modes:
            for suffix, extra in variants:
                cfg = load_config(workload_overrides(workload, mode, overrides + extra))
                say(f"bench: {mode}{suffix}{tag}: {warmup:.0f}s warm-up + {seconds:.0f}s measured")
                sub = (mode + suffix).replace(" +", "_") + (f"_r{rep + 1}" if repeats > 1 else "")
                metrics, window, span = run_mode(cfg, policy_dir, seconds, warmup, os.path.join(out, "modes", sub))
                runs.setdefault(mode + suffix, []).append(metrics)
                if not suffix:
                    windows.setdefault(mode, []).append((window, span))
                say(f"bench: {mode}{suffix}{tag}: {metrics['env_steps_per_s']:.0f} env steps/s")
        if bounds_each_repeat:
            bounds_by_repeat.append(bounds_for(rep, tag))
    medians = {}
    for name, ms in runs.items():
        medians[name] = _median_index([m["env_steps_per_s"] for m in ms])
        result["modes"][name] = dict(ms[medians[name]], repeat=medians[name] + 1)
        if repeats > 1:
            result["modes"][name]["repeats_env_steps_per_s"] = [m["env_steps_per_s"] for m in ms]
    result["bounds"] = bounds_by_repeat[medians[ref]] if bounds_each_repeat else bounds_for(medians[ref])
    result["bounds_repeat"] = medians[ref] + 1
    if bounds_each_repeat:
        result["bounds_by_repeat"] = bounds_by_repeat
    sync = result["modes"].get("sync", {}).get("env_steps_per_s")
    for name, m in result["modes"].items():
        m["ratio_to_sync"] = m["env_steps_per_s"] / sync if sync else None
        if repeats > 1 and sync:
            m["paired_ratios_to_sync"] = [a["env_steps_per_s"] / b["env_steps_per_s"]
                                          for a, b in zip(runs[name], runs["sync"])]
        # each mode against the trainer as it runs it: streamed micro-batches in `full`
        key = "min_env_steps_per_s_streaming" if name.split(" ")[0] == "full" else "min_env_steps_per_s"
        if bounds_each_repeat:
            effs = [a["env_steps_per_s"] / b[key] for a, b in zip(runs[name], bounds_by_repeat)]
            m["paired_efficiencies"], m["pipeline_efficiency"] = effs, effs[_median_index(effs)]
        else:
            m["pipeline_efficiency"] = m["env_steps_per_s"] / result["bounds"][key]
        if name.endswith(" +stragglers"):
            clean = name[:-len(" +stragglers")]
            m["throughput_change_vs_no_stragglers"] = m["env_steps_per_s"] / result["modes"][clean]["env_steps_per_s"] - 1
            if repeats > 1:
                m["paired_changes_vs_no_stragglers"] = [a["env_steps_per_s"] / b["env_steps_per_s"] - 1
                                                        for a, b in zip(runs[name], runs[clean])]
    write_outputs(result, {m: w[medians[m]][0] for m, w in windows.items()}, out)
    return result
