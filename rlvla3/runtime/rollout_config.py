"""`rollout.*` and `generator.*`: the env workers that simulate and the replicas that act."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlvla3.core.config_checks import check, check_at_least, check_choice
from rlvla3.core.weight_wire import WIRE_DTYPES


def envs_per_worker(rollout) -> int:
    """Envs in one env worker process: slots x envs per slot."""
    return rollout.slots_per_worker * rollout.envs_per_slot


@dataclass
class RolloutConfig:
    # What the rollout simulates and samples.
    num_env_workers: int = 2  # env worker processes
    slots_per_worker: int = 8  # env slots per worker (each slot asks for actions on its own)
    envs_per_slot: int = 1  # envs a slot steps together and serves with one request (async modes; >1 for cheap envs)
    group_size: int = 8  # GRPO: episodes per group (same task and initial state)
    rollout_epochs: int = 1  # sync: rollout passes collected per training step (RLinf semantics)
    horizon_chunks: int = 0  # sync: lock-step chunk steps per rollout pass; 0 = enough for one episode
    temperature: float = 1.0  # sampling temperature of the behaviour policy
    # Async modes, PPO: an env hands over its running episode every this many decisions, each
    # segment bootstrapped with V of the next decision's observation, so that a long episode's
    # samples reach the trainer while they are fresh (0 = whole episodes; docs/schedules.md)
    segment_chunks: int = 0

    def validate(self, prefix: str = "rollout") -> None:
        check_at_least(self, prefix, 1, "num_env_workers", "slots_per_worker", "group_size", "envs_per_slot",
                       "rollout_epochs")
        check_at_least(self, prefix, 0, "horizon_chunks", "segment_chunks")
        check(self.temperature > 0, f"{prefix}.temperature must be > 0, got {self.temperature}")


@dataclass
class GeneratorConfig:
    num_generators: int = 1  # policy replicas serving inference
    max_batch: int = 64  # dynamic batcher: fire when this many samples are pending
    # Dynamic batcher: or when the oldest request waited this long. A generator runs one forward
    # at a time and requests queue during it, so 0 is continuous batching: a request that finds
    # the generator idle goes at once, and those that arrive during a forward form the next batch
    # (smaller batches, more forwards; docs/benchmarks/cpu-dec05-wait/).
    max_wait_ms: float = 5.0
    router: str = "round_robin"  # round_robin | least_loaded | shard
    # How new weights reach the generators: object_store (Ray: the trainer puts a state dict,
    # each generator fetches it) | collective (a torch.distributed broadcast in buckets: NCCL
    # when the trainer and every generator have a GPU of their own, gloo otherwise).
    weight_transport: str = "object_store"
    weight_bucket_mb: float = 64.0  # collective: largest flat bucket (the extra memory per send)
    # What a publication carries: float32 | bfloat16 (half the bytes; the generators cast it back
    # into their float32 weights) | auto (bfloat16 for a policy under bfloat16 autocast, whose
    # matmuls use bfloat16 weights anyway, through the object store; float32 otherwise).
    weight_dtype: str = "auto"
    # Async modes: how action requests reach the generators. socket: one authenticated
    # connection per env worker and generator (about 0.25 ms of CPU per request against 2 ms
    # for a Ray call; workers/action_channel.py) | ray: an actor call per request.
    request_transport: str = "socket"
    # Replay the policy's forward from CUDA graphs captured at start, one per batch size 1, 2, 4, ...
    # up to max_batch (a lock-step generator: up to its share of the env slots); a batch is padded to
    # the next size. At the small batches of the async modes a 1B VLA's forward is bound by kernel
    # launches, not the GPU (docs/vla.md). policy.type=oft or pi0, on a GPU.
    cuda_graphs: bool = False
    # Async modes, one generator and one trainer rank: the generator runs in the trainer's process
    # (workers/trainer_host.py), its forwards on a CUDA stream of their own beside the trainer's
    # kernels instead of time-slicing the GPU with it from a second process.
    in_trainer_process: bool = False

    def validate(self, prefix: str = "generator") -> None:
        check_choice(self.router, ("round_robin", "least_loaded", "shard"), f"{prefix}.router")
        check_choice(self.request_transport, ("socket", "ray"), f"{prefix}.request_transport")
        check_choice(self.weight_transport, ("object_store", "collective"), f"{prefix}.weight_transport")
        check_choice(self.weight_dtype, WIRE_DTYPES, f"{prefix}.weight_dtype")
        check(self.weight_dtype != "bfloat16" or self.weight_transport == "object_store",
              f"{prefix}.weight_dtype=bfloat16 applies to weight_transport=object_store (the collective channel "
              "sends float32); use auto or float32")
        check(self.weight_bucket_mb > 0, f"{prefix}.weight_bucket_mb must be > 0, got {self.weight_bucket_mb}")
        check_at_least(self, prefix, 1, "num_generators", "max_batch")
        check_at_least(self, prefix, 0, "max_wait_ms")
        check(math.isfinite(self.max_wait_ms), f"{prefix}.max_wait_ms must be finite (0 = continuous batching): "
                                               f"with fewer env slots than max_batch no batch would ever fire, got "
                                               f"{self.max_wait_ms}")
