"""`algo.*`, `trainer.*` and `placement.*`: the RL objective, the trainer processes and their GPUs."""

from __future__ import annotations

from dataclasses import dataclass

from rlvla3.core.placement import PRESETS
from rlvla3.core.config_checks import check, check_at_least, check_choice

SHARDINGS = ("ddp", "fsdp")


@dataclass
class AlgoConfig:
    name: str = "ppo"  # ppo | grpo
    gamma: float = 0.99  # discount per decision (action chunk)
    gae_lambda: float = 0.95
    clip_low: float = 0.2  # ratio clip below 1
    clip_high: float = 0.28  # ratio clip above 1 ("clip-higher")
    dual_clip: float = 3.0  # bound on the loss for negative advantages; 0 = off
    value_clip: float = 0.2  # clipped value loss; 0 = off
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    # Weight of a KL penalty (per token) to the reference policy: the weights RL started from
    # (the SFT checkpoint; with LoRA the frozen base). 0 = off. Each sample then costs one more
    # forward pass, and without LoRA the trainer holds a second copy of the model.
    kl_ref_coef: float = 0.0
    # k3 (exp(r) - 1 - r, what MT10 was measured with; overflows far from the reference, and the
    # step is skipped) | k2 (r^2 / 2, bounded growth): core/losses.ref_kl_penalty
    kl_ref_estimator: str = "k3"
    # Cap on each token's penalty (0 = none): a token past it adds the cap and no gradient, so the
    # k3 loss cannot overflow (core/losses.ref_kl_penalty)
    kl_ref_clip: float = 0.0
    logprob_level: str = "action"  # token | action | chunk: unit of the importance ratio
    update_epochs: int = 2  # passes over each global batch
    global_batch: int = 256  # samples per optimizer step
    micro_batch: int = 64  # samples per forward/backward (gradient accumulation)
    lr: float = 1e-4
    max_grad_norm: float = 1.0
    normalize_advantages: bool = True
    # PPO streamed in micro-batches (`full`): how the first pass centres advantages before the
    # global batch is complete. baseline: subtract the previous global batch's mean (a constant
    # baseline: the expected gradient is unchanged) and divide by this batch's exact std at the
    # step (one backward); exact: the batch's own mean too (a second backward per micro-batch).
    stream_normalization: str = "baseline"
    filter_degenerate_groups: bool = True  # GRPO: drop all-success / all-fail groups
    # GRPO: discount each episode's return by `gamma` per decision, so that faster successes
    # score higher. Off: the return is the undiscounted reward (the outcome), the same for
    # every success whatever its length, so an all-success group is dropped as degenerate.
    grpo_discount: bool = False
    # Stale samples (async modes). false: plain PPO, the ratio and its clip taken to the policy
    # that acted, as for fresh samples. true: decoupled PPO (trust region around the trainer's
    # current policy, the behaviour weight pi_prox / pi_behav corrects the rest). At eta = 1 on
    # the quick-start, decoupled `full` fell in about half its runs and plain `full` held in every
    # one (docs/benchmarks/cpu-dec05-stale-objective). Decoupled stays for comparison and for eta
    # so large that a clip around the acting policy would leave stale samples without gradient
    # (at eta = 4, plain PPO still learned there).
    decoupled: bool = False
    # Decoupled PPO: samples whose behaviour importance weight exceeds this are masked out of
    # the loss, as AReaL does (metric behav_weight_masked_frac); see core/losses.py.
    behav_weight_cap: float = 2.0
    # eta: max policy-version lag of trained samples (async modes). 2: at 1 the admission window
    # (eta + 1 global batches) is too small for the episodes in flight, so env slots wait on the
    # trainer (tabletop-emulated: 1.82x sync at 1, 3.23x at 2); on the quick-start, plain PPO at 2
    # ended within 1 point of sync or above it from three SFT checkpoints, while 4 fell 10 points
    # short on one (docs/benchmarks/cpu-dec05-eta/).
    staleness: int = 2
    critic_warmup_steps: int = 0  # PPO: first optimizer steps train only the value head (it starts random after SFT)

    def validate(self, prefix: str = "algo") -> None:
        check_choice(self.name, ("ppo", "grpo"), f"{prefix}.name")
        check_choice(self.logprob_level, ("token", "action", "chunk"), f"{prefix}.logprob_level")
        check_choice(self.stream_normalization, ("baseline", "exact"), f"{prefix}.stream_normalization")
        check_choice(self.kl_ref_estimator, ("k3", "k2"), f"{prefix}.kl_ref_estimator")
        check_at_least(self, prefix, 1, "update_epochs", "global_batch", "micro_batch")
        check_at_least(self, prefix, 0, "staleness", "ent_coef", "kl_ref_coef", "kl_ref_clip", "value_clip", "critic_warmup_steps")
        check(self.lr > 0, f"{prefix}.lr must be > 0, got {self.lr}")
        check(0 < self.clip_low < 1, f"{prefix}.clip_low must be in (0, 1), got {self.clip_low}")
        check(self.clip_high > 0, f"{prefix}.clip_high must be > 0, got {self.clip_high}")
        check(self.dual_clip == 0 or self.dual_clip > 1,
              f"{prefix}.dual_clip must be 0 (off) or > 1, got {self.dual_clip}")
        check(0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1,
              f"{prefix}.gamma must be in (0, 1] and {prefix}.gae_lambda in [0, 1]")
        # exact deferred normalisation needs a first pass linear in the advantage: ratio 1, which
        # plain PPO on stale samples does not have (its ratio starts at pi_prox / pi_behav)
        check(self.decoupled or self.stream_normalization != "exact",
              f"{prefix}.stream_normalization=exact needs {prefix}.decoupled=true (plain PPO's first pass on "
              f"stale samples is not linear in the advantage); use {prefix}.stream_normalization=baseline")
        check(self.micro_batch <= self.global_batch,
              f"{prefix}.micro_batch ({self.micro_batch}) must be <= {prefix}.global_batch ({self.global_batch})")


@dataclass
class TrainerConfig:
    num_ranks: int = 1  # data-parallel trainer processes (one GPU each on CUDA); 1 = the single trainer
    sharding: str = "ddp"  # ddp: replicated weights, gradients all-reduced | fsdp: FSDP2 shards (policy.type=oft)
    collective_timeout_s: float = 600.0  # a rank stuck this long in a collective raises instead of hanging
    trim_heap_every: int = 50  # return freed heap memory to the OS every N optimizer steps (glibc); 0 = never.
    # Every step costs ~10% of trainer throughput (the next step faults the pages back in).
    memory_log: str = ""  # diagnostics: append the trainer's heap accounting (workers/memory_probe.py) here
    memory_log_every: int = 25  # ... every N optimizer steps
    memory_log_python: bool = False  # ... with tracemalloc's top growing allocation sites (slows training)

    def validate(self, prefix: str = "trainer") -> None:
        check_at_least(self, prefix, 1, "num_ranks")
        check_choice(self.sharding, SHARDINGS, f"{prefix}.sharding")
        check(self.collective_timeout_s > 0,
              f"{prefix}.collective_timeout_s must be > 0, got {self.collective_timeout_s}")
        check_at_least(self, prefix, 0, "trim_heap_every")
        check_at_least(self, prefix, 1, "memory_log_every")


@dataclass
class PlacementConfig:
    # Where trainer ranks and generators run on the GPUs (policy.device=cuda; core/placement.py):
    # auto | colocated | disaggregated | hybrid.
    preset: str = "auto"
    gpus: int = 0  # GPUs to lay out; 0 = as many as `auto` needs (required by the other presets)
    reserve_timeout_s: float = 60.0  # fail if the cluster cannot reserve them in this time

    def validate(self, prefix: str = "placement") -> None:
        check_choice(self.preset, PRESETS, f"{prefix}.preset")
        check_at_least(self, prefix, 0, "gpus")
        check(self.reserve_timeout_s > 0, f"{prefix}.reserve_timeout_s must be > 0, got {self.reserve_timeout_s}")
