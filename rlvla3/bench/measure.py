"""Throughput and utilisation of one benchmarked mode, computed from its timeline spans.

Every number comes from spans recorded by the workers themselves (env steps, inference
batches, trainer micro-batches) inside one steady-state window, so all modes are measured
the same way whatever their schedule. Counts are attributed to the window by span end.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Optional

import numpy as np

from rlvla3.bench import round_trip
from rlvla3.core.stats import percentiles
from rlvla3.core.timeline import Span, busy_fraction

ENV_BUSY = ("env_step", "reset")
GEN_BUSY = ("infer_batch", "weight_swap")
TRAIN_BUSY = ("micro_batch", "optimizer_step")


def _in_window(spans: Iterable[Span], t0: float, t1: float, name: str) -> List[Span]:
    return [s for s in spans if s.name == name and t0 <= s.end <= t1]


def worker_of(track: str) -> str:
    """'env1/slot3' -> 'env1'; other tracks are their own worker."""
    return track.split("/", 1)[0]


def utilization(spans: List[Span], t0: float, t1: float) -> Dict[str, dict]:
    """Per worker: busy fraction over the window (env workers: mean over their slots)."""
    tracks: Dict[str, set] = {}
    for s in spans:
        tracks.setdefault(worker_of(s.track), set()).add(s.track)
    out = {}
    for worker, ts in sorted(tracks.items()):
        names = ENV_BUSY if worker.startswith("env") else GEN_BUSY if worker.startswith("generator") else \
            TRAIN_BUSY if worker == "trainer" else None
        if names is None:
            continue
        busy = sum(busy_fraction(spans, t, t0, t1, names) for t in ts) / len(ts)
        out[worker] = {"utilization": round(busy, 4), "idle_fraction": round(1 - busy, 4), "tracks": len(ts)}
    return out


def episode_lengths(spans: Iterable[Span], t0: float, t1: float) -> List[int]:
    """Simulator steps of every episode that both started and ended inside [t0, t1]: the
    steps each env slot took between two of its resets."""
    tracks: Dict[str, List[Span]] = {}
    for s in spans:
        if s.name in ENV_BUSY and s.start >= t0 and s.end <= t1:
            tracks.setdefault(s.track, []).append(s)
    out = []
    for ts in tracks.values():
        steps = None  # None until the slot's first reset in the window
        for s in sorted(ts, key=lambda x: x.start):
            if s.name == "reset":
                if steps:
                    out.append(steps)
                steps = 0
            elif steps is not None:
                steps += s.args.get("steps", 0)
    return out


def _cpu_ms_mean(spans: List[Span]) -> Optional[float]:
    """The recording thread's CPU inside these spans (their `cpu` arg), mean ms; None if unrecorded."""
    cpu = [s.args["cpu"] for s in spans if "cpu" in s.args]
    return 1000.0 * float(np.mean(cpu)) if cpu else None


def forward_cpu(infer: List[Span]) -> dict:
    """The generator thread's CPU per batch inside its forward spans (mean, ms), where recorded."""
    cpu = _cpu_ms_mean(infer)
    return {"forward_cpu_ms_mean": cpu} if cpu is not None else {}


TRAINER_PARTS = TRAIN_BUSY + ("weight_pack", "weight_send")


def trainer_time(spans: Iterable[Span], t0: float, t1: float) -> Dict[str, float]:
    """Where the trainer's window went (fractions): training (micro-batches, optimizer steps), taking
    its weights off the device for a publication (pack, or the collective send), and `idle` (waiting
    for samples or for the driver's next call). Its actor runs one call at a time."""
    if t1 <= t0:
        return {}
    spans = [s for s in spans if s.track == "trainer" and s.name in TRAINER_PARTS]
    out = {n: busy_fraction(spans, "trainer", t0, t1, (n,)) for n in TRAINER_PARTS if any(s.name == n for s in spans)}
    if out:
        out["idle"] = max(0.0, 1.0 - sum(out.values()))
    return {k: round(v, 4) for k, v in out.items()}


def step_cpu(steps: List[Span]) -> dict:
    """Mean wall ms of the chunk steps and, where recorded, the stepping thread's CPU ms in them."""
    if not steps:
        return {}
    out = {"mean": 1000.0 * float(np.mean([s.dur for s in steps]))}
    cpu = _cpu_ms_mean(steps)
    if cpu is not None:
        out["cpu_mean"] = cpu
    return out


def _first_generator(swaps: List[Span]) -> List[Span]:
    """The weight swaps of one generator (generator0, the first track): with several, each
    version would otherwise count once per generator."""
    first = min((s.track for s in swaps), default=None)
    return [s for s in swaps if s.track == first]


def trained_between_swaps(micro: List[Span], swaps: List[Span]) -> Optional[float]:
    """New samples per second over whole weight versions: those trained between the first and
    the last weight swap of one generator in the window, over the time between them. Every
    schedule trains one version's samples between two swaps (`sync`: a whole cycle of rollout,
    updates and publication; `full`: a global batch), so the rate does not depend on where
    the window cuts a lock-step cycle, which the window count does. None below two swaps."""
    ends = sorted(s.end for s in swaps)
    if len(ends) < 2 or ends[-1] <= ends[0]:
        return None
    n = sum(s.args.get("n", 0) for s in micro if s.args.get("new", True) and ends[0] < s.end <= ends[-1])
    return n / (ends[-1] - ends[0])


def version_lag_s(ready: List[Span], swaps: List[Span]) -> Dict[str, float]:
    """Seconds from the trainer having version v to generator 0 serving it (its swap's end),
    percentiles over the versions swapped in the window: the publication's latency, which
    holds a staleness window shut however fast the trainer is. Empty without matches."""
    made = {s.args.get("version"): s.end for s in ready}
    lags = [s.end - made[s.args.get("version")] for s in swaps if s.args.get("version") in made]
    return {k: round(v, 3) for k, v in percentiles(lags, (50, 95)).items()} if lags else {}


def publication(packs: List[Span], swaps: List[Span], stages: List[Span] = ()) -> Dict[str, float]:
    """Where a weight publication's time goes (medians over the window, seconds): the trainer
    taking its state dict off the device into numpy (`pack_s`, with `mib` sent), generator 0
    unpacking it onto its device (`stage_s`: beside inference in the asynchronous generator)
    and swapping it in (`swap_s`: inference waits for this part only); the rest of the
    version lag is the object store and the queue.
    Empty when the window holds neither (the collective channel records `weight_send`)."""
    out = {}
    if packs:
        out["pack_s"] = round(float(np.median([s.dur for s in packs])), 3)
        out["mib"] = packs[-1].args.get("mib")
    if stages:
        out["stage_s"] = round(float(np.median([s.dur for s in stages])), 3)
    if swaps:
        out["swap_s"] = round(float(np.median([s.dur for s in swaps])), 3)
    return out


def window_metrics(spans: List[Span], t0: float, t1: float) -> dict:
    """Rates over [t0, t1] from the spans of every worker of one mode."""
    dt = t1 - t0
    if dt <= 0:
        raise ValueError(f"empty measurement window [{t0}, {t1}]")
    steps = _in_window(spans, t0, t1, "env_step")
    resets = _in_window(spans, t0, t1, "reset")
    infer = _in_window(spans, t0, t1, "infer_batch")
    micro = _in_window(spans, t0, t1, "micro_batch")
    opt = _in_window(spans, t0, t1, "optimizer_step")
    syncs = _in_window(spans, t0, t1, "weight_sync")
    swaps = _first_generator(_in_window(spans, t0, t1, "weight_swap"))  # generator 0's, as each helper takes
    env_steps = sum(s.args.get("steps", 0) for s in steps)
    decisions = sum(s.args.get("n", 0) for s in infer)
    new_samples = sum(s.args.get("n", 0) for s in micro if s.args.get("new", True))
    lag = Counter()
    for s in micro:
        for k, v in s.args.get("lag", {}).items():
            lag[int(k)] += v
    batch_sizes = [s.args.get("n", 0) for s in infer]
    lengths = episode_lengths(spans, t0, t1)
    return {
        "window_s": round(dt, 3),
        "env_steps": env_steps,
        "env_steps_per_s": env_steps / dt,
        "chunks_per_s": len(steps) / dt,
        "resets_per_s": len(resets) / dt,
        "policy_calls_per_s": decisions / dt,  # decisions (samples) served by the generators
        "trained_samples_per_s": new_samples / dt,  # new samples; each is trained update_epochs times
        "trained_samples_per_s_whole_versions": trained_between_swaps(micro, swaps),
        "version_lag_s": version_lag_s([x for x in spans if x.name == "version_ready"], swaps),
        "publication": publication(_in_window(spans, t0, t1, "weight_pack"), swaps,
                                   _first_generator(_in_window(spans, t0, t1, "weight_stage"))),
        "optimizer_steps_per_s": len(opt) / dt,
        "env_steps_per_decision": env_steps / len(steps) if steps else 0.0,
        "episode_steps_mean": float(np.mean(lengths)) if lengths else None,  # whole episodes in the window
        "generator": {
            "batches": len(infer),
            "mean_batch": sum(batch_sizes) / len(batch_sizes) if batch_sizes else 0.0,
            **{f"forward_ms_{k}": v * 1000 for k, v in percentiles([s.dur for s in infer], (50, 95)).items()},
            **forward_cpu(infer),
        },
        "env_step_ms": {**{k: v * 1000 for k, v in percentiles([s.dur for s in steps], (50, 95, 99)).items()},
                        **step_cpu(steps)},
        "weight_sync": {"count": len(syncs), "blocking_s": sum(s.dur for s in syncs)},
        "staleness_hist": {str(k): lag[k] for k in sorted(lag)},
        "utilization": utilization(spans, t0, t1),
        "trainer_time": trainer_time(spans, t0, t1),
        **({"round_trip": rt} if (rt := round_trip.breakdown(spans, t0, t1)) else {}),
    }


def slot_tracks(num_workers: int, envs_each: int) -> List[str]:
    """The env workers' slot tracks ('env{w}/slot{i}', as `EnvWorker._track` names them)."""
    return [f"env{w}/slot{i}" for w in range(num_workers) for i in range(envs_each)]


def first_steps(spans: Iterable[Span]) -> Dict[str, float]:
    """Per track: when its first chunk step (env_step span) ended."""
    out: Dict[str, float] = {}
    for s in spans:
        if s.name == "env_step" and s.end < out.get(s.track, float("inf")):
            out[s.track] = s.end
    return out


def window_start(spans: Iterable[Span], tracks: Iterable[str], earliest: float, latest: float) -> dict:
    """When a measurement window may start: once every slot in `tracks` has finished a chunk
    step, and not before `earliest` (the end of warm-up). A slot that has not stepped by
    `latest` (the cap) is not waited for: the window then starts at `latest` and says so.
    Returns start, all_slots_stepped, the slots that stepped, and those that did not by then."""
    tracks = list(tracks)
    first = first_steps(spans)
    stepped = [t for t in tracks if first.get(t, float("inf")) <= latest]
    missing = [t for t in tracks if t not in stepped]
    if missing:
        start = max(earliest, latest)
    else:
        start = max([earliest] + [first[t] for t in tracks])
    return {"start": start, "all_slots_stepped": not missing, "slots": len(tracks),
            "slots_stepped": len(stepped), "slots_not_stepped": missing}
