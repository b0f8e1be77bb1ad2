"""`profile_from_bench`: a StageProfile from a committed `rlvla3 bench` result.

Stage costs only, never the throughput or utilisation a prediction is checked against:
- chunk-step and reset durations: the reference mode's env_step / reset spans (timeline.json, or
  the spans `--keep-spans` kept),
  else its env_step_ms percentiles and the recorded latency_profile.json, else the config;
- forward pass by batch size: the generator alone (bounds.generator_samples_per_s_by_batch),
  plus the in-pipeline overhead per batch: the reference mode's forward_ms_p50 minus the alone
  time at its mean batch;
- the trainer alone (bounds.trainer_samples_per_s, trainer_streaming_samples_per_s);
- weight publication: the reference mode's weight_sync spans (blocking_s / count);
- driver and transport overheads: the same spans (`timeline_costs.py`);
- episode lengths: what an asynchronous mode ran (chunks / resets), else the time limit.
The layout (slots, generators, batcher, batch sizes, eta) is the run's config, rebuilt from
the workload and the overrides bench.json records.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import replace
from typing import Optional

from rlvla3.plan.cpu_calibration import defaults_at, nice_weights, respell, set_cpu_costs
from rlvla3.plan.profile import Dist, EnvCosts, GeneratorCosts, Layout, Overheads, StageProfile, TrainerCosts
from rlvla3.plan.timeline_costs import (after_pack_s, alone_chunk_ms, durations_ms, find_timeline, load_kept_spans,
                                         load_timeline, lockstep_overheads, request_rtt_ms)

DEFAULT_RTT_MS = 4.0  # socket transport, when no asynchronous trace exists (GPU box traces: 2.7-3.5 ms)
# Lock-step overheads when a bench has no trace: the middle of what the committed traces give
# (3.7-4.8 ms per chunk step on the GPU box, 5.4-6.7 ms on the 2-core VM; 0.04-0.15 s per iteration).
DEFAULT_LOCKSTEP_MS = 5.0
DEFAULT_ITERATION_S = 0.07
LOCKSTEP = ("sync", "sync-best", "async-train")
# Workloads whose chunk step is work on its env process's core, shared by the process's slots
# (EnvCosts.process_share). MetaWorld (GPU box, 4 slots per process): a chunk step's median was
# 32.5 ms in `sync` (4 at once), 9.5 ms in `full` at eta 1 (about one at once), 18-19 ms at eta 2.
# LIBERO (GPU box, 2 envs per process): the share that makes a lock-step mode's steps (both envs
# at once) and `full`'s the same work alone (`alone_chunk_ms`), over the eight benches with both:
# 0.8-0.9 in five (gpu-dec05-libero-oft1b x2, gpu-dec05b pi0small, gpu-dec06 h100-after-1,
# gpu-dec07f), 0.35-0.4 in two (gpu-dec06 h100-after-2, h200-before), none below 1 in one
# (gpu-dec05b oft1b-a). gpu-dec07f, the one run that records a step's CPU, gives 0.73 of it.
PROCESS_SHARE = {"metaworld": 1.0, "libero": 0.8}


def _config(bench: dict, mode: str):
    from rlvla3.bench.workloads import workload_overrides
    from rlvla3.runtime.config import load_config

    overrides = respell(list(bench.get("overrides", [])) + list(bench.get("mode_overrides", {}).get(mode, [])))
    overrides = defaults_at(bench.get("date", ""), overrides) + overrides
    return load_config(workload_overrides(bench["workload"], mode, overrides))


def _layout_keys(cfg) -> dict:
    """The Layout fields a run's config sets (the rest come from its bench and its date)."""
    r, g, a = cfg.rollout, cfg.generator, cfg.algo
    return dict(num_env_workers=r.num_env_workers, slots_per_worker=r.slots_per_worker, envs_per_slot=r.envs_per_slot,
                num_generators=g.num_generators, max_batch=g.max_batch, max_wait_ms=g.max_wait_ms,
                global_batch=a.global_batch, micro_batch=a.micro_batch, update_epochs=a.update_epochs,
                staleness=a.staleness, rollout_epochs=r.rollout_epochs,
                trainer_hosts_generator=g.in_trainer_process)


def mode_layout(bench: dict, mode: str, base: Layout) -> Layout:
    """The layout `mode` ran in: `base` (the reference mode's), with what a `--mode-override`
    changed for that mode (e.g. `sync-best` at two envs per process)."""
    if not bench.get("mode_overrides", {}).get(mode):
        return base
    return replace(base, **_layout_keys(_config(bench, mode)))


def batcher_late_ms(bench: dict, mode: str) -> float:
    """How late `mode`'s timed-out batches left, over its generators (`late_ms_mean`, recorded
    since 2026-12-07; 0 for earlier runs)."""
    late = [g["late_ms_mean"] for g in bench["modes"].get(mode, {}).get("batcher", []) if "late_ms_mean" in g]
    return sum(late) / len(late) if late else 0.0


def straggler_args(command: str) -> tuple:
    """(fraction, slowdown) of a bench command's straggler reruns (0 when it had none)."""
    frac = re.search(r"--straggler-fraction[ =]([0-9.]+)", command)
    slow = re.search(r"--straggler-slowdown[ =]([0-9.]+)", command)
    return float(frac.group(1)) if frac else 0.0, float(slow.group(1)) if slow else 5.0


def _episode_decisions(bench: dict, horizon: int, spd: float) -> tuple:
    for name in ("full", "async-rollout", "sync-best"):
        m = bench["modes"].get(name)
        if m and m.get("resets_per_s"):
            steps = m.get("episode_steps_mean")
            if steps:
                return min(horizon, steps / spd), f"modes.{name}.episode_steps_mean"
            return min(horizon, m["chunks_per_s"] / m["resets_per_s"]), f"modes.{name}: chunks_per_s / resets_per_s"
    return float(horizon), "the time limit (no asynchronous mode to read episode lengths from)"


def _forward_mean_ms(g: dict) -> float:
    p50 = g["forward_ms_p50"]
    return Dist.lognormal_mean(p50, g.get("forward_ms_p95") or p50)


def _config_reset(cfg) -> tuple:
    """The reset cost the tabletop latency model was told to spend (replayed profile or lognormal)."""
    lat = getattr(getattr(cfg.env, "tabletop", None), "latency", None)
    if lat is None or lat.kind == "none":
        return Dist(1.0), "1 ms (no timeline, no latency model)"
    if lat.kind == "replay" and os.path.isfile(lat.profile):
        with open(lat.profile) as f:
            return Dist.from_samples(json.load(f)["reset_ms"][:4000]), f"the replayed profile {lat.profile}"
    sigma = 0.0 if lat.kind == "constant" else lat.sigma
    return Dist(lat.reset_ms * math.exp(-0.5 * sigma ** 2), sigma), "config env.tabletop.latency (mean, sigma)"


def poll_ms_at(date: str, configured: float) -> float:
    """The driver's polling interval when the run was made: every tick (about 5 ms) before
    2026-11-25 02:23 UTC, 20 ms until rollout.poll_ms (default 50) on 2026-12-03 07:57 UTC."""
    d = date[:16]
    if d and d < "2026-11-25 02:23":
        return 5.0
    if d and d < "2026-12-03 07:57":
        return 20.0
    return configured


def bench_spans(path: str, bench: dict) -> dict:
    """Mode -> its spans: the bench's timeline.json, else the spans it kept (`--keep-spans`)."""
    folder = os.path.dirname(path)
    tl = find_timeline(folder)
    if tl:
        return load_timeline(tl)
    return load_kept_spans(folder, {m: int(v.get("repeat", 1)) for m, v in bench["modes"].items() if "+" not in m})


def mode_resets(spans: dict, mode: str, least: int = 10, share: float = 0.0) -> Optional[Dist]:
    """`mode`'s own reset durations (`spans`: the bench's, from `bench_spans`), when it has `least`;
    with a process `share`, as one slot alone (`alone_chunk_ms`).
    LIBERO resets depend on the run: 14 at once in `sync` took 2.4 s in one run and 20 s (a
    session's first resets) in another with the same command, against ~2 s staggered in `full`."""
    mode_spans = spans.get(mode, [])
    resets = alone_chunk_ms(mode_spans, share, name="reset") if share else durations_ms(mode_spans, "reset")
    return Dist.from_samples(resets) if len(resets) >= least else None


def _one_gpu(bench: dict) -> bool:
    """The run's machine had one GPU (bench.json names one; a count, where recorded, says 1)."""
    m = bench.get("machine", {})
    return bool(m.get("gpu")) and int(m.get("gpus", 1)) == 1


def profile_from_bench(path: str, ref_mode: Optional[str] = None, cpu_mode: Optional[str] = None) -> StageProfile:
    """The profile of the run in `path` (a bench.json); `ref_mode` (default: sync if it ran, else
    the first mode) is the mode whose spans give the per-call costs; `cpu_mode`, the mode whose
    per-role CPU accounting gives the processes' CPU costs (None: contention not modelled)."""
    with open(path) as f:
        bench = json.load(f)
    folder = os.path.dirname(path)
    modes = {k: v for k, v in bench["modes"].items() if "+" not in k}
    ref_mode = ref_mode or ("sync" if "sync" in modes else next(iter(modes)))
    ref = modes[ref_mode]
    bounds = bench.get("bounds") or {}
    cfg = _config(bench, ref_mode)
    from rlvla3.bench.workloads import mode_of
    from rlvla3.envs.factory import env_config
    from rlvla3.policies import family_config

    chunk_size = family_config(cfg.policy).chunk_size
    horizon = math.ceil(env_config(cfg).episode_steps() / chunk_size)
    spd = ref.get("env_steps_per_decision") or chunk_size
    src = {}
    timeline = bench_spans(path, bench)
    spans_src = "timeline.json" if find_timeline(folder) else "kept spans"
    ref_spans = timeline.get(ref_mode, [])
    share = PROCESS_SHARE.get(bench["workload"], 0.0)
    chunks = alone_chunk_ms(ref_spans, share) if share else durations_ms(ref_spans, "env_step")
    if len(chunks) >= 50:
        chunk = Dist.from_samples(chunks)
        src["env.chunk"] = f"{spans_src} {ref_mode} env_step spans" + (" as one slot alone" if share else "")
    else:
        e = ref["env_step_ms"]
        chunk, src["env.chunk"] = Dist.from_percentiles(e["p50"], e["p95"]), f"modes.{ref_mode}.env_step_ms p50/p95"
        share = 0.0  # without the spans, how many stepped at once is unknown: the durations as measured
    resets = alone_chunk_ms(ref_spans, share, name="reset") if share else durations_ms(ref_spans, "reset")
    lat_path = os.path.join(folder, "latency_profile.json")
    if len(resets) >= 20:
        reset = Dist.from_samples(resets)
        src["env.reset"] = f"{spans_src} {ref_mode} reset spans" + (" as one slot alone" if share else "")
    elif os.path.isfile(lat_path):
        with open(lat_path) as f:
            reset = Dist.from_samples(json.load(f)["reset_ms"][:4000])
        src["env.reset"] = "latency_profile.json reset_ms"
    else:
        reset, src["env.reset"] = _config_reset(cfg)
    ep_mean, src["env.episode_decisions_mean"] = _episode_decisions(bench, horizon, spd)
    # Real simulators step on a core each; the emulated one sleeps (its CPU cost is in the transport).
    cpu_share = 0.0 if bench["workload"] == "tabletop-emulated" else 1.0
    env = EnvCosts(chunk, reset, spd, horizon, ep_mean, cpu_share, float(bench.get("machine", {}).get("cpus") or 0),
                   share)

    by_batch = {int(k): int(k) / v * 1000.0 for k, v in bounds.get("generator_samples_per_s_by_batch", {}).items()}
    src["generator.act_ms_by_batch"] = "bounds.generator_samples_per_s_by_batch (the generator alone)"
    gen = GeneratorCosts(by_batch)
    g = ref.get("generator", {})
    if g.get("forward_ms_p50") and g.get("mean_batch"):
        gen.overhead_ms = max(0.0, _forward_mean_ms(g) - gen.act_s(int(round(g["mean_batch"]))) * 1000.0)
        src["generator.overhead_ms"] = f"modes.{ref_mode}.generator forward p50/p95 (lognormal mean) minus alone"
    # the asynchronous mode whose spans price a request (a labelled run, e.g. full@host, when no plain one ran)
    am = next((m for m in ("full", "async-rollout") if m in modes), None) \
        or next((m for m in modes if mode_of(m) in ("full", "async-rollout")), None)
    if am and ref_mode in LOCKSTEP and modes[am]["generator"].get("forward_ms_p50"):
        a = modes[am]["generator"]  # requests of one env slot each: the extra per request is the transport's
        extra = _forward_mean_ms(a) - gen.act_s(int(round(a["mean_batch"]))) * 1000.0
        gen.per_request_ms = max(0.0, extra / max(a["mean_batch"] / cfg.rollout.envs_per_slot, 1.0))
        src["generator.per_request_ms"] = f"modes.{am}.generator forward p50/p95 minus the lock-step cost"
    if am:
        gen.late_ms = batcher_late_ms(bench, am)
        src["generator.late_ms"] = f"modes.{am}.batcher late_ms_mean" if gen.late_ms else "0 (not recorded)"
    rtts = [request_rtt_ms(timeline[m]) for m in ("full", "async-rollout", am) if m and m in timeline]
    rtts = [r for r in rtts if r is not None]
    gen.request_rtt_ms = rtts[0] if rtts else DEFAULT_RTT_MS
    src["generator.request_rtt_ms"] = f"{spans_src} asynchronous mode" if rtts else "default (no asynchronous trace)"

    synced = [m for m in [ref_mode] + list(LOCKSTEP) if modes.get(m, {}).get("weight_sync", {}).get("count")]
    ws = modes[synced[0]]["weight_sync"] if synced else {}
    publish = ws["blocking_s"] / ws["count"] if ws else 0.0
    pack = modes[am].get("publication", {}).get("pack_s", 0.0) if am else 0.0
    src["trainer.pack_s"] = f"modes.{am}.publication pack_s (median)" if pack else "none recorded: 0"
    returned = after_pack_s(timeline.get(am, [])) if am else None
    if returned is not None:  # the pack span ends before the object store has taken the weights
        pack += max(returned, 0.0)
        src["trainer.pack_s"] += f" + {spans_src} {am}: its return to the driver (median gap after weight_pack)"
    trainer = TrainerCosts(bounds["trainer_samples_per_s"], bounds.get("trainer_streaming_samples_per_s")
                           or bounds["trainer_samples_per_s"], publish_s=publish, pack_s=pack)
    src["trainer"] = "bounds.trainer_samples_per_s / trainer_streaming_samples_per_s (the trainer alone)"
    src["trainer.publish_s"] = f"modes.{synced[0]}.weight_sync blocking_s / count" if synced else "none recorded: 0"

    _, slow = straggler_args(bench.get("command", ""))
    layout = Layout(**_layout_keys(cfg), poll_ms=poll_ms_at(bench.get("date", ""), cfg.transport.poll_ms),
                    straggler_fraction=0.0, straggler_slowdown=slow, coalesce_ms=cfg.transport.coalesce_ms)
    over = Overheads(DEFAULT_LOCKSTEP_MS, DEFAULT_ITERATION_S)
    src["overheads"] = "defaults: the median of the committed traces (no spans here)"
    lo = next((lockstep_overheads(timeline[m]) for m in LOCKSTEP if m in timeline), None)
    if lo is not None:
        over = Overheads(lo.per_step_ms, lo.per_iteration_s)
        src["overheads"] = f"{spans_src} lock-step idle gaps"
    prof = StageProfile(f"{path} (reference mode {ref_mode})", env, gen, trainer, layout, over, src)
    prof.cpu.generator_on_cpu = prof.cpu.trainer_on_cpu = cfg.policy.device == "cpu"
    # The committed GPU runs had one GPU: the trainer and the generators time-slice it.
    prof.layout.trainer_shares_gpu = cfg.policy.device.startswith("cuda") and _one_gpu(bench)
    prof.cpu.trainer_weight, prof.cpu.rollout_weight, prof.cpu.driver_weight = nice_weights(bench, cfg.process.nice)
    if cpu_mode:  # processor sharing of the cores, with that mode's CPU costs (plan/cpu_calibration.py)
        set_cpu_costs(prof, bench, cpu_mode)
    return prof
