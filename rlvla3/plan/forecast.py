"""From one GPU's measured costs to N GPUs: placements, collective costs, the best split.

Nothing here is measured at N > 1. Collective costs come from a bandwidth model whose numbers
are published figures, not measurements (docs/scaling.md, "Collective cost model"):
- NCCL ring all-reduce of B bytes over t ranks: 2 (t - 1) / t x B / busbw + 2 (t - 1) x latency;
- NCCL broadcast of B bytes (trainer -> generators, pipelined): B / busbw + latency x log2(g + 1);
- busbw 360 GB/s inside an 8-GPU NVLink node, 40 GB/s per GPU across nodes (InfiniBand NDR,
  one 400 Gb/s NIC per GPU at about 80% efficiency); 10 us per hop.
The asynchronous modes are simulated as one generator's share (its envs, its share of the global
batch and of the trainer): generators are symmetric and requests round-robin, so the pipeline
is that share times the number of generators. The lock-step modes are simulated whole (their
barrier waits for the slowest of *all* envs, which grows with N).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import List, Optional

from rlvla3.plan.cpu import CpuCosts
from rlvla3.plan.model import predict, stage_bounds
from rlvla3.plan.profile import StageProfile

NVLINK_BUSBW = 360e9  # B/s, NCCL all-reduce bus bandwidth inside one 8-GPU H100/H200 node
IB_BUSBW = 40e9  # B/s per GPU across nodes
HOP_LATENCY_S = 10e-6
GPUS_PER_NODE = 8


def _busbw(ranks: int) -> float:
    return NVLINK_BUSBW if ranks <= GPUS_PER_NODE else IB_BUSBW


def allreduce_s(nbytes: float, ranks: int) -> float:
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / _busbw(ranks) + 2 * (ranks - 1) * HOP_LATENCY_S


def broadcast_s(nbytes: float, receivers: int, span_gpus: int) -> float:
    if receivers <= 0 or nbytes <= 0:
        return 0.0
    return nbytes / _busbw(span_gpus) + HOP_LATENCY_S * math.log2(receivers + 1)


@dataclass
class Placement:
    name: str  # colocated | disaggregated
    gpus: int
    trainer_gpus: int
    generator_gpus: int

    def describe(self) -> str:
        if self.name == "colocated":
            return f"colocated ({self.gpus} x [trainer rank + generator])"
        return f"disaggregated ({self.trainer_gpus} trainer : {self.generator_gpus} generator GPUs)"


def placements(gpus: int) -> List[Placement]:
    out = [Placement("colocated", gpus, gpus, gpus)]
    splits = sorted({max(1, min(gpus - 1, round(gpus * f))) for f in (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8)})
    out += [Placement("disaggregated", gpus, t, gpus - t) for t in splits if gpus > 1]
    return out


@dataclass
class Scale:
    """What N GPUs hold: envs in all, CPU cores per GPU, gradient and weight bytes."""

    gpus: int
    envs: int
    cores_per_gpu: float = 16.0
    grad_bytes: float = 0.0  # all-reduced per optimizer step (trainable parameters)
    weight_bytes: float = 0.0  # broadcast to the generators per version
    samples_per_env: float = 0.0  # global batch per env (0: as in the profile)


@dataclass
class Forecast:
    mode: str
    placement: Placement
    env_steps_per_s: float
    trained_samples_per_s: float
    env_utilization: float
    generator_utilization: float
    trainer_utilization: float
    notes: List[str] = field(default_factory=list)


def _cpu_stretch(prof: StageProfile, envs: int, cores: float, measured_cores: float) -> float:
    """Simulators that need a core: chunk and reset times scale with envs per core beyond one
    (processor sharing), relative to the load they were measured at."""
    share = prof.env.cpu_share
    if share <= 0:
        return 1.0
    load = lambda n, c: max(1.0, share * n / c)  # noqa: E731
    return load(envs, cores) / load(prof.layout.slots * prof.layout.envs_per_slot, measured_cores)


def scaled_profile(prof: StageProfile, scale: Scale, pl: Placement, mode: str, measured_cores: float) -> tuple:
    """(profile to simulate, multiplier to the whole pipeline, shared GPU?)"""
    p = copy.deepcopy(prof)
    p.cpu = CpuCosts()  # at N GPUs the CPU side is the simulators' stretch below (policies on the GPUs)
    L, tr = p.layout, p.trainer
    L.trainer_shares_gpu = False  # the placement decides: colocated is the shared device below
    per_env = scale.samples_per_env or L.global_batch / (L.slots * L.envs_per_slot)
    gb = max(1, int(round(per_env * scale.envs)))
    stretch = _cpu_stretch(prof, scale.envs, scale.gpus * scale.cores_per_gpu, measured_cores)
    for d in (p.env.chunk, p.env.reset):
        d.median_ms *= stretch
        d.samples_ms = [v * stretch for v in d.samples_ms]
    t, g = pl.trainer_gpus, pl.generator_gpus
    rate = tr.samples_per_s * t  # data parallel: each rank trains its share of every global batch
    srate = tr.streaming_samples_per_s * t
    step = L.update_epochs * allreduce_s(scale.grad_bytes, t)
    publish = 0.0 if pl.name == "colocated" else broadcast_s(scale.weight_bytes, g, pl.gpus)
    tr.pack_s = 0.0  # at N GPUs a version travels by the broadcast above, not packed for the object store
    if mode in ("sync", "sync-best", "async-train"):
        # lock-step: every GPU generates, then every GPU trains (colocated), or the split's own sets
        L.num_env_workers, L.slots_per_worker, L.envs_per_slot = scale.envs, 1, 1
        L.num_generators, L.global_batch = g, gb
        L.micro_batch = min(L.micro_batch, gb)
        tr.samples_per_s, tr.streaming_samples_per_s = rate, srate
        tr.step_overhead_s, tr.publish_s = step, publish
        return p, 1.0, False
    envs_each = max(1, int(round(scale.envs / g)))  # one generator's share
    L.num_env_workers, L.slots_per_worker, L.envs_per_slot, L.num_generators = 1, envs_each, 1, 1
    L.global_batch = max(1, int(round(gb / g)))
    L.micro_batch = max(1, min(L.global_batch, int(round(L.global_batch * prof.layout.micro_batch
                                                             / prof.layout.global_batch))))
    tr.samples_per_s, tr.streaming_samples_per_s = rate / g, srate / g
    tr.step_overhead_s, tr.publish_s = step, publish
    return p, scale.envs / (envs_each * g), pl.name == "colocated"


def forecast(prof: StageProfile, scale: Scale, pl: Placement, mode: str, measured_cores: float,
             seconds: float = 60.0, seed: int = 0) -> Forecast:
    p, mult, shared = scaled_profile(prof, scale, pl, mode, measured_cores)
    if mode in ("async-rollout", "full"):  # long enough for several global batches, whatever their size
        b = stage_bounds(p)
        per_batch = p.layout.global_batch * p.env.steps_per_decision / max(min(b.simulators, b.generators), 1e-9)
        seconds = min(max(seconds, 6 * per_batch), 1800.0)
        warmup = min(max(10.0, 3 * per_batch), 900.0)
    else:
        warmup = 0.0
    r = predict(p, mode, seconds=seconds, warmup=warmup, seed=seed, shared_gpu=shared)
    g = pl.generator_gpus if mode in ("async-rollout", "full") else 1
    gen_u = sum(r.generator_utilization) / max(1, len(r.generator_utilization))
    trained = r.trained_samples_per_s
    if mode in ("async-rollout", "full"):
        # Admission keeps production at what the trainer takes: decisions less stale drops is the
        # steady-state rate, smoother than counting whole micro-batches in a window.
        trained = r.policy_calls_per_s - r.dropped_stale / r.window_s
    return Forecast(mode, pl, r.env_steps_per_s * g * mult, trained * g * mult, r.env_utilization,
                    gen_u, r.trainer_utilization)


def best(prof: StageProfile, scale: Scale, mode: str, measured_cores: float, seconds: float = 40.0,
         candidates: Optional[List[Placement]] = None) -> List[Forecast]:
    """Every candidate placement, best first (by trained samples/s, then env steps/s)."""
    out = [forecast(prof, scale, pl, mode, measured_cores, seconds) for pl in (candidates or placements(scale.gpus))]
    return sorted(out, key=lambda f: (-f.trained_samples_per_s, -f.env_steps_per_s))
