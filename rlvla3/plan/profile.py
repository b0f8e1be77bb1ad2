"""profile.json: the measured stage costs of one configuration, and the layout they were measured at.

`rlvla3 plan` predicts throughput from these numbers alone; every field says where it comes from
(`sources`), so a prediction can be traced back to the measurement that fed it. Durations are
milliseconds; rates are samples (policy decisions) per second.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Dict, List, Optional

import numpy as np

from rlvla3.plan.cpu import CpuCosts

Z95 = 1.6448536269514722  # standard normal quantile of 0.95


@dataclass
class Dist:
    """A duration in ms: empirical samples when there are any, else a lognormal given by its
    median and sigma (sigma 0: a constant)."""

    median_ms: float
    sigma: float = 0.0
    samples_ms: List[float] = field(default_factory=list)

    @classmethod
    def from_percentiles(cls, p50: float, p95: float) -> "Dist":
        """The lognormal through the median and the 95th percentile (a fixed cost when p95 <= p50)."""
        sigma = math.log(p95 / p50) / Z95 if p95 > p50 > 0 else 0.0
        return cls(float(p50), sigma)

    @staticmethod
    def lognormal_mean(p50: float, p95: float) -> float:
        """Mean of the lognormal through a median and a 95th percentile."""
        return Dist.from_percentiles(p50, p95).mean_ms()

    @classmethod
    def from_samples(cls, samples: List[float]) -> "Dist":
        vals = [float(v) for v in samples]
        return cls(float(np.median(vals)), 0.0, vals)

    def mean_ms(self) -> float:
        if self.samples_ms:
            return float(np.mean(self.samples_ms))
        return self.median_ms * math.exp(0.5 * self.sigma ** 2)

    def draw_s(self, rng: np.random.Generator, n: Optional[int] = None):
        """Seconds: one draw (n None) or an array of n."""
        if self.samples_ms:
            out = rng.choice(np.asarray(self.samples_ms), size=n) / 1000.0
        elif self.sigma > 0:
            out = rng.lognormal(math.log(max(self.median_ms, 1e-9)), self.sigma, size=n) / 1000.0
        else:
            out = np.full(n, self.median_ms / 1000.0) if n is not None else self.median_ms / 1000.0
        return float(out) if n is None else out


@dataclass
class EnvCosts:
    chunk: Dist  # one chunk step of one env slot (all its sub-steps, as the env_step span measures it)
    reset: Dist  # one reset
    steps_per_decision: float  # low-level simulator steps per chunk step (< chunk size when episodes end mid-chunk)
    horizon: int  # most decisions of one episode (the time limit)
    episode_decisions_mean: float  # mean decisions per episode (successes end early)
    cpu_share: float = 0.0  # share of a chunk that needs a CPU core (0: the simulator runs elsewhere / sleeps)
    cores: float = 0.0  # CPU cores of the machine the costs were measured on (0: unknown)
    # Share of a chunk step that is work on its env process's one core, shared with the other slots
    # of the process stepping at once (MetaWorld: 1; there 4 slots stepping at once took 4x as long);
    # `chunk` is then one slot stepping alone. 0: slots step independently (spans as measured).
    process_share: float = 0.0


@dataclass
class GeneratorCosts:
    act_ms_by_batch: Dict[int, float]  # one forward pass alone, by batch size (bench bounds / bench-policy)
    overhead_ms: float = 0.0  # per batch in the pipeline beyond the forward alone (obs to tensors, replies)
    request_rtt_ms: float = 0.0  # async: a request's round trip through the transport, outside the batcher
    per_request_ms: float = 0.0  # async: generator time per request in a batch (decoding it, replying)
    # async: a timed-out batch leaves this long after its deadline or the previous forward's end,
    # whichever is later (the serving loop's wake-up; the run's `late_ms_mean`, BatcherStats.late_s)
    late_ms: float = 0.0

    def alone_ms(self, n: int) -> float:
        """Milliseconds of one forward pass alone on n samples: linear between measured sizes and
        beyond the largest."""
        xs = sorted(self.act_ms_by_batch)
        ys = [self.act_ms_by_batch[x] for x in xs]
        if n >= xs[-1] and len(xs) > 1:
            slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            return ys[-1] + max(slope, 0.0) * (n - xs[-1])
        return float(np.interp(n, xs, ys))

    def act_s(self, n: int, requests: int = 0) -> float:
        """Seconds for one batch of n samples (from `requests` asynchronous requests): the forward
        alone plus the pipeline's overheads."""
        if n <= 0:
            return 0.0
        return (self.alone_ms(n) + self.overhead_ms + requests * self.per_request_ms) / 1000.0


@dataclass
class TrainerCosts:
    samples_per_s: float  # new samples/s, whole global batches, every update epoch (bench: trainer alone)
    streaming_samples_per_s: float  # the same, streamed micro-batches as `full` runs them
    publish_s: float = 0.0  # one weight publication (blocking in the lock-step schedules)
    # The trainer's own seconds per version taking its weights off the device (Trainer.get_weights,
    # in the asynchronous schedules): its actor runs one call at a time, so training waits for it.
    pack_s: float = 0.0
    step_overhead_s: float = 0.0  # per optimizer step, beyond the samples' compute
    model_bytes: float = 0.0  # weights sent per publication (collective cost model, plan --gpus)


@dataclass
class Layout:
    """The configuration the costs were measured at (and what `plan` changes)."""

    num_env_workers: int
    slots_per_worker: int
    envs_per_slot: int = 1
    num_generators: int = 1
    max_batch: int = 64
    max_wait_ms: float = 5.0
    global_batch: int = 256
    micro_batch: int = 64
    update_epochs: int = 2
    staleness: int = 1
    rollout_epochs: int = 1
    poll_ms: float = 50.0
    straggler_fraction: float = 0.0
    straggler_slowdown: float = 5.0
    coalesce_ms: float = 0.0  # transport.coalesce_ms: a worker's requests to a generator go out together
    trainer_shares_gpu: bool = False  # trainer and generators time-slice one GPU (plan/device_share.py)
    trainer_hosts_generator: bool = False  # generator.in_trainer_process: one context, not time slices

    @property
    def slots(self) -> int:
        return self.num_env_workers * self.slots_per_worker


@dataclass
class Overheads:
    """Driver and transport costs that no stage span records (measured from the timeline)."""

    lockstep_ms: float = 0.0  # per lock-step chunk step: driver round trips, obs gather/scatter
    iteration_s: float = 0.0  # per lock-step iteration: cut, drain, bootstrap, assembly


@dataclass
class StageProfile:
    source: str
    env: EnvCosts
    generator: GeneratorCosts
    trainer: TrainerCosts
    layout: Layout
    overheads: Overheads = field(default_factory=Overheads)
    sources: Dict[str, str] = field(default_factory=dict)  # field -> where its number came from
    cpu: CpuCosts = field(default_factory=CpuCosts)  # processor sharing of the cores (cores 0: off)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["generator"]["act_ms_by_batch"] = {str(k): v for k, v in self.generator.act_ms_by_batch.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StageProfile":
        g = dict(d["generator"])
        g["act_ms_by_batch"] = {int(k): float(v) for k, v in g["act_ms_by_batch"].items()}
        env = dict(d["env"])
        env["chunk"], env["reset"] = Dist(**env["chunk"]), Dist(**env["reset"])
        return cls(d["source"], EnvCosts(**env), GeneratorCosts(**g), _make(TrainerCosts, d["trainer"]),
                   _make(Layout, d["layout"]), _make(Overheads, d.get("overheads", {})), dict(d.get("sources", {})),
                   _make(CpuCosts, d.get("cpu", {})))

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> "StageProfile":
        with open(path) as f:
            return cls.from_dict(json.load(f))


def _make(cls, d: dict):
    """A dataclass from a dict, ignoring keys it does not know (older or newer profile files)."""
    assert is_dataclass(cls)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
