"""Typed run configuration: dataclasses + YAML presets + dotted command-line overrides.

Every knob is a field with a default and a comment. `load_config` merges, in order:
the dataclass defaults, a preset YAML (`preset=NAME` or a path), then `key=value`
overrides; OmegaConf rejects unknown keys and wrong types, and `validate` rejects
impossible combinations, so a bad config fails at start-up naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlvla3.envs.config import TabletopConfig
from rlvla3.envs.libero_config import LiberoConfig
from rlvla3.envs.metaworld_config import MetaWorldConfig
from rlvla3.envs.factory import ENV_TYPES, has_expert
from rlvla3.envs.faults import FaultsConfig
from rlvla3.policies import FAMILIES, family_config
from rlvla3.policies.oft.config import OFTPolicyConfig
from rlvla3.policies.pi0.config import PI0PolicyConfig
from rlvla3.policies.tiny_vla import TinyVLAConfig

# proprio and action sizes of each env type (the VLAs take unset dims from here)
ENV_DIMS = {"tabletop": dict(proprio_dim=4, action_dim=3), "libero": dict(proprio_dim=8, action_dim=7),
            "metaworld": dict(proprio_dim=4, action_dim=4)}
PRESET_DIR = os.path.join(os.path.dirname(__file__), "presets")
MODES = ("sync", "sync-best", "async-train", "async-rollout", "full")
SHARDINGS = ("ddp", "fsdp")


def envs_per_worker(rollout) -> int:
    """Envs in one env worker process: slots x envs per slot."""
    return rollout.slots_per_worker * rollout.envs_per_slot


class ConfigError(ValueError):
    """A configuration problem, reported before any work starts."""


@dataclass
class EnvConfig:
    type: str = "tabletop"  # tabletop (built-in) | libero (pip install -e .[libero]) | metaworld (.[metaworld])
    tabletop: TabletopConfig = field(default_factory=TabletopConfig)
    libero: LiberoConfig = field(default_factory=LiberoConfig)
    metaworld: MetaWorldConfig = field(default_factory=MetaWorldConfig)


@dataclass
class PolicyConfig:
    type: str = "tiny"  # tiny | oft (OpenVLA-OFT-style) | pi0 (flow policy); `policy=oft-tiny` sets type and size
    init_from: str = ""  # local checkpoint dir (save_pretrained layout); "" = random init / SFT output
    device: str = "cpu"  # torch device for generators and trainer
    tiny: TinyVLAConfig = field(default_factory=TinyVLAConfig)
    oft: OFTPolicyConfig = field(default_factory=OFTPolicyConfig)
    pi0: PI0PolicyConfig = field(default_factory=PI0PolicyConfig)


@dataclass
class RolloutConfig:
    num_env_workers: int = 2  # env worker processes
    slots_per_worker: int = 8  # env slots per worker (each slot asks for actions on its own)
    envs_per_slot: int = 1  # envs a slot steps together and serves with one request (async modes; >1 for cheap envs)
    group_size: int = 8  # GRPO: episodes per group (same task and initial state)
    rollout_epochs: int = 1  # sync: rollout passes collected per training step (RLinf semantics)
    horizon_chunks: int = 0  # sync: lock-step chunk steps per rollout pass; 0 = enough for one episode
    temperature: float = 1.0  # sampling temperature of the behaviour policy
    straggler_fraction: float = 0.0  # fraction of env slots whose simulator is slower (benchmarks)
    straggler_slowdown: float = 5.0  # cost multiplier of those slots
    # Unix nice (0-19) added to env worker and generator processes: > 0 lets the trainer, the
    # bottleneck stage on a machine with few cores, take its core before the rollout does.
    # With > 0 an embedded Ray cluster starts its workers (the trainer too) at nice 0 instead
    # of Ray's 15, so the whole offset counts; a running cluster keeps its workers' nice.
    nice: int = 0
    # Async modes: an env worker's requests to one generator that are ready within this many
    # ms share one Ray call (fewer calls, less CPU per decision); 0 = one call per request.
    coalesce_ms: float = 0.0
    # Async modes: the driver polls every env worker (status and finished episodes, one Ray
    # round trip each) at most this often. Episodes last a second or more, so 50 ms adds
    # little latency; each poll costs the driver and the workers CPU (20 ms: -5% trained
    # samples/s on 2 cores, docs/benchmarks/cpu-eta2-dec03-coalesce/).
    poll_ms: float = 50.0


@dataclass
class GeneratorConfig:
    num_generators: int = 1  # policy replicas serving inference
    max_batch: int = 64  # dynamic batcher: fire when this many samples are pending
    max_wait_ms: float = 5.0  # dynamic batcher: or when the oldest request waited this long
    router: str = "round_robin"  # round_robin | least_loaded | shard
    # How new weights reach the generators: object_store (Ray: the trainer puts a state dict,
    # each generator fetches it) | collective (a torch.distributed broadcast in buckets: NCCL
    # when the trainer and every generator have a GPU of their own, gloo otherwise).
    weight_transport: str = "object_store"
    weight_bucket_mb: float = 64.0  # collective: largest flat bucket (the extra memory per send)
    # Async modes: how action requests reach the generators. socket: one authenticated
    # connection per env worker and generator (about 0.25 ms of CPU per request against 2 ms
    # for a Ray call; workers/action_channel.py) | ray: an actor call per request.
    request_transport: str = "socket"


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
    # Decoupled PPO: samples whose behaviour importance weight exceeds this are masked out of
    # the loss, as AReaL does (metric behav_weight_masked_frac); see core/losses.py.
    behav_weight_cap: float = 2.0
    staleness: int = 1  # eta: max policy-version lag of trained samples (async modes)
    critic_warmup_steps: int = 0  # PPO: first optimizer steps train only the value head (it starts random after SFT)


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


@dataclass
class PlacementConfig:
    # Where trainer ranks and generators run on the GPUs (policy.device=cuda; core/placement.py):
    # auto | colocated | disaggregated | hybrid.
    preset: str = "auto"
    gpus: int = 0  # GPUs to lay out; 0 = as many as `auto` needs (required by the other presets)
    reserve_timeout_s: float = 60.0  # fail if the cluster cannot reserve them in this time


@dataclass
class SFTConfig:
    enabled: bool = True  # train: behaviour-clone a scripted expert before RL
    checkpoint: str = ""  # reuse an SFT checkpoint instead of training one
    demos_per_task: int = 8  # expert episodes per task (train initial states)
    noise_std: float = 0.2  # expert action noise (demonstration diversity)
    collect_workers: int = 0  # processes collecting the demos; 0 = as many as rollout.num_env_workers
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3


@dataclass
class EvalConfig:
    episodes_per_task: int = 0  # held-out initial states per task; 0 = all of them
    every_steps: int = 0  # evaluate every N optimizer steps during training; 0 = only at the end
    deterministic: bool = True  # greedy actions at evaluation
    repeats: int = 1  # episodes per held-out initial state (sampled actions only): narrows the estimate
    videos: int = 4  # rollout videos saved per evaluation
    num_workers: int = 2  # env workers used by evaluation


@dataclass
class RunConfig:
    name: str = ""  # run directory name; "" = timestamp
    output_dir: str = "runs"
    seed: int = 0
    mode: str = "sync"  # sync | sync-best | async-train | async-rollout | full
    backend: str = "ray"  # ray | local (same workers in one process, for debugging)
    total_env_steps: int = 60000  # stop after this many low-level simulator steps
    max_train_steps: int = 0  # stop after this many optimizer steps; 0 = no limit
    checkpoint_every: int = 10  # optimizer steps between checkpoints
    progress: bool = True  # live progress display
    deterministic: bool = False  # torch deterministic algorithms + single thread
    torch_threads: int = 1  # per worker process
    # Freed heap memory (MB) a process keeps for reuse instead of handing it back to the OS
    # (glibc's trim threshold; the mmap threshold becomes 32 MB). glibc's adaptive default
    # returned and re-faulted the trainer's activations every micro-batch: 50-70k page
    # faults/s and 15% of its CPU in the kernel. 0 = glibc's own thresholds.
    heap_keep_mb: int = 256


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)  # fault injection (off) and hang timeout


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: Config) -> Config:
    """Reject impossible values and combinations; messages name the key."""
    r, a, ro, g = cfg.run, cfg.algo, cfg.rollout, cfg.generator
    _check(r.mode in MODES, f"run.mode must be one of {list(MODES)}, got {r.mode!r}")
    _check(r.backend in ("ray", "local"), f"run.backend must be 'ray' or 'local', got {r.backend!r}")
    _check(r.backend == "ray" or r.mode in ("sync", "sync-best", "async-train"),
           f"run.mode={r.mode!r} runs env slots and generators concurrently and needs run.backend=ray")
    _check(cfg.env.type in ENV_TYPES, f"env.type must be one of {list(ENV_TYPES)}, got {cfg.env.type!r}")
    _check(cfg.policy.type in FAMILIES, f"policy.type must be one of {list(FAMILIES)}, got {cfg.policy.type!r}")
    _check(a.name in ("ppo", "grpo"), f"algo.name must be 'ppo' or 'grpo', got {a.name!r}")
    _check(a.logprob_level in ("token", "action", "chunk"),
           f"algo.logprob_level must be token|action|chunk, got {a.logprob_level!r}")
    _check(a.stream_normalization in ("baseline", "exact"),
           f"algo.stream_normalization must be baseline|exact, got {a.stream_normalization!r}")
    _check(g.router in ("round_robin", "least_loaded", "shard"),
           f"generator.router must be round_robin|least_loaded|shard, got {g.router!r}")
    _check(g.request_transport in ("socket", "ray"),
           f"generator.request_transport must be socket|ray, got {g.request_transport!r}")
    _check(g.weight_transport in ("object_store", "collective"),
           f"generator.weight_transport must be object_store|collective, got {g.weight_transport!r}")
    _check(g.weight_transport == "object_store" or r.backend == "ray",
           "generator.weight_transport=collective joins the trainer and generator processes and needs run.backend=ray")
    _check(0 <= ro.nice <= 19, f"rollout.nice must be in 0..19, got {ro.nice}")
    _check(ro.nice == 0 or r.backend == "ray", "rollout.nice lowers the rollout processes' priority and needs "
           "run.backend=ray (the local backend runs everything in one process)")
    _check(g.weight_bucket_mb > 0, f"generator.weight_bucket_mb must be > 0, got {g.weight_bucket_mb}")
    for key, val in [("run.total_env_steps", r.total_env_steps), ("rollout.num_env_workers", ro.num_env_workers),
                     ("rollout.slots_per_worker", ro.slots_per_worker), ("rollout.group_size", ro.group_size),
                     ("rollout.envs_per_slot", ro.envs_per_slot),
                     ("rollout.rollout_epochs", ro.rollout_epochs), ("generator.num_generators", g.num_generators),
                     ("generator.max_batch", g.max_batch), ("algo.update_epochs", a.update_epochs),
                     ("algo.global_batch", a.global_batch), ("algo.micro_batch", a.micro_batch),
                     ("run.torch_threads", r.torch_threads), ("eval.num_workers", cfg.eval.num_workers)]:
        _check(val >= 1, f"{key} must be >= 1, got {val}")
    for key, val in [("run.max_train_steps", r.max_train_steps), ("run.checkpoint_every", r.checkpoint_every),
                     ("rollout.horizon_chunks", ro.horizon_chunks), ("algo.staleness", a.staleness),
                     ("generator.max_wait_ms", g.max_wait_ms), ("rollout.coalesce_ms", ro.coalesce_ms),
                     ("rollout.poll_ms", ro.poll_ms), ("run.heap_keep_mb", r.heap_keep_mb),
                     ("algo.ent_coef", a.ent_coef),
                     ("algo.value_clip", a.value_clip), ("eval.episodes_per_task", cfg.eval.episodes_per_task),
                     ("algo.critic_warmup_steps", a.critic_warmup_steps)]:
        _check(val >= 0, f"{key} must be >= 0, got {val}")
    _check(a.lr > 0, f"algo.lr must be > 0, got {a.lr}")
    _check(0 < a.clip_low < 1, f"algo.clip_low must be in (0, 1), got {a.clip_low}")
    _check(a.clip_high > 0, f"algo.clip_high must be > 0, got {a.clip_high}")
    _check(a.dual_clip == 0 or a.dual_clip > 1, f"algo.dual_clip must be 0 (off) or > 1, got {a.dual_clip}")
    _check(0 < a.gamma <= 1 and 0 <= a.gae_lambda <= 1, "algo.gamma must be in (0, 1] and algo.gae_lambda in [0, 1]")
    _check(a.micro_batch <= a.global_batch,
           f"algo.micro_batch ({a.micro_batch}) must be <= algo.global_batch ({a.global_batch})")
    _check(ro.temperature > 0, f"rollout.temperature must be > 0, got {ro.temperature}")
    _check(0 <= ro.straggler_fraction <= 1, f"rollout.straggler_fraction must be in [0, 1], got {ro.straggler_fraction}")
    _check(ro.straggler_slowdown > 0, f"rollout.straggler_slowdown must be > 0, got {ro.straggler_slowdown}")
    if a.name == "grpo":
        _check(ro.group_size >= 2, f"rollout.group_size must be >= 2 for GRPO, got {ro.group_size}")
        if r.mode in ("sync", "sync-best"):
            envs = ro.num_env_workers * envs_per_worker(ro)
            _check(envs % ro.group_size == 0,
                   f"rollout.group_size ({ro.group_size}) must divide the envs (rollout.num_env_workers x "
                   f"rollout.slots_per_worker x rollout.envs_per_slot = {envs}) in sync modes")
    _validate_trainer(cfg)
    env, pol, pk = getattr(cfg.env, cfg.env.type), family_config(cfg.policy), f"policy.{cfg.policy.type}"
    if cfg.policy.type != "tiny":  # the VLAs take unset (0) dims from the env
        env_dims = dict(image_size=env.image_size, **ENV_DIMS[cfg.env.type])
        for key, value in env_dims.items():
            if getattr(pol, key) == 0:
                setattr(pol, key, value)
    _check(pol.image_size == env.image_size,
           f"{pk}.image_size ({pol.image_size}) must equal env.{cfg.env.type}.image_size ({env.image_size})")
    dims = ENV_DIMS[cfg.env.type]
    _check(pol.proprio_dim == dims["proprio_dim"] and pol.action_dim == dims["action_dim"],
           f"env.type={cfg.env.type} has {dims['proprio_dim']}-D proprio and {dims['action_dim']}-D actions: set "
           f"{pk}.proprio_dim={dims['proprio_dim']} {pk}.action_dim={dims['action_dim']} "
           f"(got {pol.proprio_dim} and {pol.action_dim})")
    if cfg.env.type != "tabletop":
        _check(has_expert(cfg.env.type) or not cfg.sft.enabled or cfg.sft.checkpoint or cfg.policy.init_from,
               f"the scripted-expert SFT exists for the tabletop and metaworld envs only: with env.type={cfg.env.type} "
               "set sft.enabled=false, sft.checkpoint=DIR or policy.init_from=DIR")
        _check(ro.straggler_fraction == 0, "rollout.straggler_fraction needs the tabletop latency model "
                                           "(env.type=tabletop)")
    _check(cfg.eval.repeats >= 1 and (cfg.eval.repeats == 1 or not cfg.eval.deterministic),
           f"eval.repeats must be >= 1, and 1 with eval.deterministic=true (greedy episodes from one initial "
           f"state repeat exactly), got {cfg.eval.repeats}")
    _check(cfg.sft.epochs >= 0 and cfg.sft.demos_per_task >= 1 and cfg.sft.batch_size >= 1
           and cfg.sft.collect_workers >= 0,
           "sft.epochs and sft.collect_workers must be >= 0, sft.demos_per_task and sft.batch_size >= 1")
    for path_key, path in [("policy.init_from", cfg.policy.init_from), ("sft.checkpoint", cfg.sft.checkpoint)]:
        _check(not path or os.path.isdir(path), f"{path_key} points to {path!r}, which is not a directory")
    try:
        cfg.env.tabletop.validate("env.tabletop")
        cfg.env.libero.validate("env.libero")
        if cfg.env.type == "metaworld":  # its defaults are valid; checked only when used
            cfg.env.metaworld.validate("env.metaworld")
        pol.validate()
        cfg.faults.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return cfg


def _validate_trainer(cfg: Config) -> None:
    t = cfg.trainer
    _check(t.num_ranks >= 1, f"trainer.num_ranks must be >= 1, got {t.num_ranks}")
    _check(t.sharding in SHARDINGS, f"trainer.sharding must be one of {list(SHARDINGS)}, got {t.sharding!r}")
    _check(t.collective_timeout_s > 0, f"trainer.collective_timeout_s must be > 0, got {t.collective_timeout_s}")
    _check(t.trim_heap_every >= 0, f"trainer.trim_heap_every must be >= 0, got {t.trim_heap_every}")
    _check(t.memory_log_every >= 1, f"trainer.memory_log_every must be >= 1, got {t.memory_log_every}")
    # FSDP gathers parameters in the root `forward`; pi0 calls its sub-modules directly (distributed/fsdp.py).
    _check(t.sharding != "fsdp" or cfg.policy.type == "oft",
           f"trainer.sharding=fsdp supports policy.type=oft only (got {cfg.policy.type!r}); use trainer.sharding=ddp")
    _check(t.num_ranks == 1 or cfg.run.backend == "ray",
           f"trainer.num_ranks={t.num_ranks} runs one process per rank and needs run.backend=ray")
    _validate_placement(cfg)


def _validate_placement(cfg: Config) -> None:
    from rlvla3.core.placement import PRESETS, plan_placement

    p = cfg.placement
    _check(p.preset in PRESETS, f"placement.preset must be one of {list(PRESETS)}, got {p.preset!r}")
    _check(p.gpus >= 0, f"placement.gpus must be >= 0, got {p.gpus}")
    _check(p.reserve_timeout_s > 0, f"placement.reserve_timeout_s must be > 0, got {p.reserve_timeout_s}")
    on_gpu = cfg.policy.device.startswith("cuda")
    _check(on_gpu or (p.preset == "auto" and p.gpus == 0),
           f"placement.preset={p.preset} placement.gpus={p.gpus} lays out GPUs, but policy.device={cfg.policy.device}")
    if on_gpu:
        try:
            plan_placement(p.preset, p.gpus, cfg.trainer.num_ranks, cfg.generator.num_generators)
        except ValueError as e:
            raise ConfigError(str(e)) from e


def preset_path(name: str) -> str:
    if os.path.isfile(name):
        return name
    path = os.path.join(PRESET_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        known = sorted(p[:-5] for p in os.listdir(PRESET_DIR) if p.endswith(".yaml"))
        raise ConfigError(f"unknown preset {name!r}; known presets: {known} (or give a YAML path)")
    return path


def _policy_shorthand(override: str) -> List[str]:
    """`policy=oft-tiny` -> policy.type=oft policy.oft.size=tiny (`policy=tiny` -> the tiny CNN)."""
    if not override.startswith("policy="):
        return [override]
    name = override.split("=", 1)[1]
    family, _, size = name.partition("-")
    if family not in FAMILIES or (family == "tiny" and size) or (family != "tiny" and not size):
        raise ConfigError(f"policy={name!r}: expected tiny, oft-SIZE or pi0-SIZE (e.g. policy=oft-tiny)")
    return [f"policy.type={family}"] + ([f"policy.{family}.size={size}"] if size else [])


def load_config(overrides: List[str] | None = None, preset: str | None = "quickstart") -> Config:
    """Defaults <- preset YAML <- `key=value` overrides; returns a validated Config object."""
    overrides = list(overrides or [])
    presets = [o.split("=", 1)[1] for o in overrides if o.startswith("preset=")]
    overrides = [o for o in overrides if not o.startswith("preset=")]
    overrides = [x for o in overrides for x in _policy_shorthand(o)]
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} must look like key=value (e.g. algo.lr=3e-4)")
    preset = presets[-1] if presets else preset
    base = OmegaConf.structured(Config)
    try:
        if preset:
            base = OmegaConf.merge(base, OmegaConf.load(preset_path(preset)))
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad config key {key!r}: {msg}" if key else f"bad config: {msg}") from None
    return validate(cfg)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml_file(path: str) -> Config:
    try:
        loaded = OmegaConf.load(path)
        if not loaded:  # an empty or truncated file would silently mean "all defaults"
            raise ConfigError(f"{path} is empty: not a run config")
        merged = OmegaConf.merge(OmegaConf.structured(Config), loaded)
        return validate(OmegaConf.to_object(merged))
    except (OmegaConfBaseException, yaml.YAMLError) as e:  # wrong keys/types, or a truncated file
        raise ConfigError(f"bad config in {path}: {str(e).splitlines()[0]}") from None
