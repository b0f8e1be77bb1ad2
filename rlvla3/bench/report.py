"""Benchmark outputs: bench.json, table.md, timeline.json (Chrome trace / Perfetto) and
timeline.png (a Gantt picture of a few seconds of sync vs full)."""

from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional

from rlvla3.bench import round_trip
from rlvla3.core.timeline import Span, to_chrome_trace

TRACE_SECONDS = 10.0  # of each mode in timeline.json (a whole window would be tens of MB)


def _clean(x):
    """JSON without NaN/inf (strict parsers reject them)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _fmt(x, pattern="{:.0f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else pattern.format(x)


def to_markdown(result: dict) -> str:
    b = result["bounds"]
    lines = [
        f"# `rlvla3 bench` — workload `{result['workload']}`", "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}",
        f"- machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, "
        f"GPU: {result['machine']['gpu'] or 'none'}, torch {result['machine']['torch']}",
        f"- measured: {result['seconds']:g} s of steady state per mode after {result['warmup_s']:g} s of warm-up"
        " (and once every env slot has stepped)",
    ]
    for mode, extra in result.get("mode_overrides", {}).items():
        lines.append(f"- `{mode}` only: `{' '.join(extra)}`")
    if result.get("partial"):
        lines.append(f"- **partial results** (the run is still going, or was stopped): done so far: "
                     f"{', '.join(result.get('done', [])) or 'nothing'}"
                     + ("; the stage bounds are not measured yet" if b is None else ""))
    lines += [
        "",
        "| mode | env steps/s | ratio to sync | pipeline efficiency | policy calls/s | trained samples/s "
        "| trained samples/s, whole versions | mean gen. batch | env slot util. | generator util. | trainer util. |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in result["modes"].items():
        u = m["utilization"]
        env_u = [v["utilization"] for k, v in u.items() if k.startswith("env")]
        gen_u = [v["utilization"] for k, v in u.items() if k.startswith("generator")]
        lines.append(
            f"| {name} | {_fmt(m['env_steps_per_s'])} | {_fmt(m['ratio_to_sync'], '{:.2f}x')} "
            f"| {_fmt(m['pipeline_efficiency'], '{:.2f}')} | {_fmt(m['policy_calls_per_s'])} "
            f"| {_fmt(m['trained_samples_per_s'])} | {_fmt(m.get('trained_samples_per_s_whole_versions'))} "
            f"| {_fmt(m['generator']['mean_batch'], '{:.1f}')} "
            f"| {_fmt(sum(env_u) / len(env_u) if env_u else None, '{:.2f}')} "
            f"| {_fmt(sum(gen_u) / len(gen_u) if gen_u else None, '{:.2f}')} "
            f"| {_fmt(u.get('trainer', {}).get('utilization'), '{:.2f}')} |")
    notes = [f"- {note}" for name, m in result["modes"].items()
             for note in (window_note(name, m), trainer_start_note(name, m), versions_note(name, m))
             if note]
    lines += ["", "Measurement windows:", ""] + notes if notes else []
    if b is None:
        lines += ["", "Stage bounds: not measured yet, so no pipeline efficiency (n/a)."]
    else:
        lines += _bounds_lines(result, b)
    return _more_lines(result, lines)


def window_note(name: str, m: dict) -> Optional[str]:
    """Why a mode's window started late (waiting for every env slot's first step), or without every slot."""
    delay = m.get("window_start_delay_s") or 0.0
    if m.get("all_slots_stepped") is False:
        return (f"**warning — {name}**: only {m.get('slots_stepped')} of {m.get('slots')} env slots had stepped by "
                f"faults.start_timeout_s; its window started {delay:.0f} s after the warm-up and counts the silent "
                "slots as idle, so its rates are too low")
    if delay >= 0.1:
        return f"{name}: window started {delay:.1f} s after the warm-up, once every env slot had stepped"
    return None


def trainer_start_note(name: str, m: dict) -> Optional[str]:
    """An asynchronous mode whose trainer began inside the window (oft-1b on LIBERO: 10.7 s into a
    window after 10 s of warm-up): the window holds the pipeline's start-up, not its steady state."""
    late = m.get("trainer_start_in_window_s")
    if late is None or late < max(1.0, 0.02 * m.get("window_s", 0.0)):
        return None
    return (f"**warning — {name}**: the trainer's first micro-batch came {late:.1f} s into the window, so the "
            "window holds the pipeline's start (samples queue up, env steps/s run ahead of training); "
            "lengthen --warmup")


def versions_note(name: str, m: dict) -> Optional[str]:
    """A window too short for whole versions: its trained-samples count is a whole global batch
    more or less depending on where the window falls (a lock-step cycle or a slow one)."""
    if m.get("trained_samples_per_s_whole_versions") is None and m.get("trained_samples_per_s"):
        return (f"{name}: fewer than two weight swaps of generator 0 in the window, so no rate over whole versions; "
                "its window count of trained samples/s moves by a global batch with where the window falls "
                "(lengthen --seconds)")
    return None


def _bounds_lines(result: dict, b: dict) -> List[str]:
    lines = [
        "", "Stage bounds (each stage alone, same machine, same run), in env steps/s:", "",
        f"- simulators alone: {_fmt(b['simulators_env_steps_per_s'])}" + (
            f" on the episode lengths `full` ran (mean {b['simulator_episode_steps_mean']:.1f} steps); "
            f"{_fmt(b['simulators_time_limit_env_steps_per_s'])} with every episode to its time limit"
            if b.get("simulator_episode_steps_mean") else ""),
        f"- generators alone: {_fmt(b['generators_env_steps_per_s'])} (best batch size; samples/s by batch: "
        + ", ".join(f"{k}: {_fmt(v)}" for k, v in b["generator_samples_per_s_by_batch"].items()) + ")",
        f"- trainer alone: {_fmt(b['trainer_env_steps_per_s'])} ({_fmt(b['trainer_samples_per_s'])} new samples/s)"
        f" on whole global batches; {_fmt(b['trainer_streaming_env_steps_per_s'])} "
        f"({_fmt(b['trainer_streaming_samples_per_s'])} new samples/s) streamed as `full` runs it",
        f"- bound: {_fmt(b['min_env_steps_per_s'])} ({b['bottleneck']}); `full`: "
        f"{_fmt(b['min_env_steps_per_s_streaming'])} ({b['bottleneck_streaming']}); "
        f"{b['steps_per_decision']:.2f} env steps per policy decision",
    ]
    if result.get("bounds_by_repeat"):
        lines.append("- measured after every repeat; `full`'s bound by repeat: " + " / ".join(
            f"{_fmt(r['min_env_steps_per_s_streaming'])} ({r['bottleneck_streaming']})" for r in result["bounds_by_repeat"])
            + f"; the lines above are repeat {result['bounds_repeat']}'s")
    return lines


def _more_lines(result: dict, lines: List[str]) -> str:
    reps = {k: m for k, m in result["modes"].items() if "repeats_env_steps_per_s" in m}
    if reps:
        lines += ["", "Repeats (modes run in turn; the table shows each mode's median repeat):", ""]
        for name, m in reps.items():
            line = f"- {name}: " + " / ".join(_fmt(v) for v in m["repeats_env_steps_per_s"]) + " env steps/s"
            if "paired_ratios_to_sync" in m and name != "sync":
                r = sorted(m["paired_ratios_to_sync"])
                line += (" ; paired ratio to sync " + " / ".join(f"{v:.2f}" for v in m["paired_ratios_to_sync"])
                         + f" (median {r[(len(r) - 1) // 2]:.2f})")
            if "paired_efficiencies" in m:
                line += " ; efficiency against its repeat's bound " + " / ".join(
                    _fmt(v, "{:.2f}") for v in m["paired_efficiencies"]) + f" (median {_fmt(m['pipeline_efficiency'], '{:.2f}')})"
            if "paired_changes_vs_no_stragglers" in m:
                line += " ; paired change from no stragglers " + " / ".join(
                    f"{v * 100:+.1f}%" for v in m["paired_changes_vs_no_stragglers"])
            lines.append(line)
    cpu = {k: m["cpu"] for k, m in result["modes"].items() if m.get("cpu")}
    if cpu:
        lines += ["", "CPU cores used in the window, by process (machine busy / cores on the machine):", ""]
        for name, c in cpu.items():
            roles = ", ".join(f"{r} {v:.2f}" for r, v in c["by_role"].items() if v >= 0.005)
            steal = c.get("machine_steal_cores", 0.0)
            steal = f" (+{steal:.2f} stolen by the hypervisor)" if steal >= 0.005 else ""
            lines.append(f"- {name}: {c['machine_busy_cores']:.2f} / {c['machine_cores']} busy{steal}; {roles}")
    trainer = {k: m["trainer_time"] for k, m in result["modes"].items() if m.get("trainer_time")}
    if trainer:
        lines += ["", "The trainer's window: micro-batches / optimizer steps / taking its weights off the device "
                      "(pack or send) / idle:", ""]
        lines += [f"- {name}: " + " / ".join(f"{t.get(k, 0.0):.1%}" for k in ("micro_batch", "optimizer_step")) + " / "
                  + f"{t.get('weight_pack', 0.0) + t.get('weight_send', 0.0):.1%} / {t['idle']:.1%}"
                  for name, t in trainer.items()]
    steps = {k: m["env_step_ms"] for k, m in result["modes"].items() if "cpu_mean" in m.get("env_step_ms", {})}
    if steps:
        lines += ["", "Chunk steps, mean ms: wall / the stepping thread's CPU (the rest waited: for the GIL beside "
                      "the process's other slots, a GPU that renders, the scheduler):", ""]
        lines += [f"- {name}: {e['mean']:.1f} / {e['cpu_mean']:.1f}" for name, e in steps.items()]
    lag = {k: m["version_lag_s"] for k, m in result["modes"].items() if m.get("version_lag_s")}
    if lag:
        lines += ["", "Version lag: seconds from the trainer having a version to generator 0 serving it (p50 / p95):", ""]
        for name, v in lag.items():
            pub = result["modes"][name].get("publication") or {}
            parts = ", ".join(f"{what} {pub[k]:.2f} s" for k, what in (
                ("pack_s", "trainer pack"), ("stage_s", "generator staging"), ("swap_s", "generator swap")) if k in pub)
            if parts and pub.get("mib"):
                parts += f"; {pub['mib']} MiB"
            lines.append(f"- {name}: {v['p50']:.2f} / {v['p95']:.2f} s" + (f" (of which: {parts})" if parts else ""))
    for name, m in result["modes"].items():
        if m.get("round_trip"):
            lines += ["", f"{name}:", ""] + round_trip.to_lines(m["round_trip"])
    strag = {k: m for k, m in result["modes"].items() if "throughput_change_vs_no_stragglers" in m}
    if strag:
        lines += ["", "Stragglers (a fraction of the env slots made slower):", ""]
        for name, m in strag.items():
            lines.append(f"- {name}: {m['throughput_change_vs_no_stragglers'] * 100:+.1f}% env steps/s")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, windows: Dict[str, List[Span]], out: str) -> None:
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(_clean(result), f, indent=2)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(to_markdown(result))
    trace = {}
    for mode, spans in windows.items():
        t0 = min((s.start for s in spans), default=0.0)
        trace[mode] = [s for s in spans if s.start < t0 + TRACE_SECONDS]
    with open(os.path.join(out, "timeline.json"), "w") as f:
        json.dump(to_chrome_trace(trace), f)
    from rlvla3.bench.profile import latency_profile
    from rlvla3.bench.timeline_plot import plot_gantt

    # The simulator's measured timing, replayable on the built-in env (latency.kind=replay):
    # from sync's window, or the first other window that saw resets (a short, loaded run may not).
    for mode in sorted(windows, key=lambda m: m != "sync"):
        try:
            prof = latency_profile(windows[mode], source=f"rlvla3 bench --workload {result['workload']}, mode {mode}, "
                                                         f"{result['date']}")
        except ValueError:  # a window without resets: no profile from it
            continue
        with open(os.path.join(out, "latency_profile.json"), "w") as f:
            json.dump(prof, f)
        break

    shown = {m: windows[m] for m in ("sync", "full") if m in windows} or dict(list(windows.items())[:2])
    shown = {m: [s for s in sp if s.name != "action_rt"] for m, sp in shown.items()}  # white = idle
    plot_gantt(shown, os.path.join(out, "timeline.png"), window_s=3.0,
               title=f"{result['workload']}: {' vs '.join(shown)} (white = idle)")
