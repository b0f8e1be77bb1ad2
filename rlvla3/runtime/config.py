"""Typed run configuration: dataclasses + YAML presets + dotted command-line overrides.

Every knob is a field with a default and a comment, in the runtime/*_config.py module of its
concern. `load_config` merges the defaults, a preset YAML (`preset=NAME` or a path), then
`key=value` overrides; OmegaConf rejects unknown keys and wrong types, `resolve_policy_dims`
fills in the dims a VLA takes from the env, each section's `validate` checks its own keys and
`check_across_sections` the rules that span sections, so a bad config fails at start-up naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import List

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlvla3.bench.config import BenchConfig
from rlvla3.core.config_checks import ConfigError, check
from rlvla3.core.placement import plan_placement
from rlvla3.envs.factory import has_expert
from rlvla3.envs.faults import FaultsConfig
from rlvla3.policies import FAMILIES, GRAPHABLE, family_config
from rlvla3.runtime.deprecated_keys import rename_keys, rename_overrides
from rlvla3.runtime.env_policy_config import ENV_DIMS, EnvConfig, PolicyConfig, resolve_policy_dims
from rlvla3.runtime.process_config import ProcessConfig, TransportConfig
from rlvla3.runtime.rollout_config import GeneratorConfig, RolloutConfig, envs_per_worker
from rlvla3.runtime.run_config import MODES, EvalConfig, RunConfig, SFTConfig  # noqa: F401 (MODES: re-exported)
from rlvla3.runtime.training_config import AlgoConfig, PlacementConfig, TrainerConfig

PRESET_DIR = os.path.join(os.path.dirname(__file__), "presets")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)  # CPU priority, heap
    transport: TransportConfig = field(default_factory=TransportConfig)  # request coalescing, driver polls
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)  # fault injection (off) and hang timeout
    bench: BenchConfig = field(default_factory=BenchConfig)  # set by `rlvla3 bench` only


def validate(cfg: Config) -> Config:
    """Each section checks its own keys, then the rules that span sections; messages name the key."""
    for section in fields(cfg):
        getattr(cfg, section.name).validate(section.name)
    check_across_sections(cfg)
    return cfg


def check_across_sections(cfg: Config) -> None:
    r, a, ro, g, t, p = cfg.run, cfg.algo, cfg.rollout, cfg.generator, cfg.trainer, cfg.placement
    check(g.weight_transport == "object_store" or r.backend == "ray",
          "generator.weight_transport=collective joins the trainer and generator processes and needs run.backend=ray")
    check(cfg.process.nice == 0 or r.backend == "ray", "process.nice lowers the rollout processes' priority and "
          "needs run.backend=ray (the local backend runs everything in one process)")
    if a.name == "grpo":
        check(ro.group_size >= 2, f"rollout.group_size must be >= 2 for GRPO, got {ro.group_size}")
        check(ro.segment_chunks == 0, "rollout.segment_chunks hands over parts of running episodes, for PPO: "
                                      "a GRPO group's advantages need whole episodes (set it to 0)")
        if r.mode in ("sync", "sync-best"):
            envs = ro.num_env_workers * envs_per_worker(ro)
            check(envs % ro.group_size == 0,
                  f"rollout.group_size ({ro.group_size}) must divide the envs (rollout.num_env_workers x "
                  f"rollout.slots_per_worker x rollout.envs_per_slot = {envs}) in sync modes")
    # FSDP gathers parameters in the root `forward`; pi0 calls its sub-modules directly (distributed/fsdp.py).
    check(t.sharding != "fsdp" or cfg.policy.type == "oft",
          f"trainer.sharding=fsdp supports policy.type=oft only (got {cfg.policy.type!r}); use trainer.sharding=ddp")
    check(not cfg.eval.reuse_sft or bool(cfg.sft.checkpoint),
          "eval.reuse_sft shares the SFT evaluation between runs from one sft.checkpoint: set sft.checkpoint")
    check(t.num_ranks == 1 or r.backend == "ray",
          f"trainer.num_ranks={t.num_ranks} runs one process per rank and needs run.backend=ray")
    check(not g.in_trainer_process or (r.mode in ("async-rollout", "full") and g.num_generators == 1
                                       and t.num_ranks == 1 and g.weight_transport == "object_store"),
          "generator.in_trainer_process runs one asynchronous generator inside the trainer's process: it needs "
          f"run.mode=async-rollout or full (got {r.mode}), generator.num_generators=1 (got {g.num_generators}), "
          f"trainer.num_ranks=1 (got {t.num_ranks}) and generator.weight_transport=object_store (got "
          f"{g.weight_transport})")
    on_gpu = cfg.policy.device.startswith("cuda")
    check(on_gpu or (p.preset == "auto" and p.gpus == 0),
          f"placement.preset={p.preset} placement.gpus={p.gpus} lays out GPUs, but policy.device={cfg.policy.device}")
    if on_gpu:
        plan_placement(p.preset, p.gpus, t.num_ranks, g.num_generators)  # raises a ConfigError saying what fits
    check(not g.cuda_graphs or (on_gpu and cfg.policy.type in GRAPHABLE and not family_config(cfg.policy).compile),
          f"generator.cuda_graphs replays a VLA's forward on a GPU: it needs policy.type={' or '.join(GRAPHABLE)} (got "
          f"{cfg.policy.type!r}), policy.device=cuda (got {cfg.policy.device!r}) and compile=false")
    env, pol, pk = getattr(cfg.env, cfg.env.type), family_config(cfg.policy), f"policy.{cfg.policy.type}"
    check(pol.image_size == env.image_size,
          f"{pk}.image_size ({pol.image_size}) must equal env.{cfg.env.type}.image_size ({env.image_size})")
    dims = ENV_DIMS[cfg.env.type]
    check(pol.proprio_dim == dims["proprio_dim"] and pol.action_dim == dims["action_dim"],
          f"env.type={cfg.env.type} has {dims['proprio_dim']}-D proprio and {dims['action_dim']}-D actions: set "
          f"{pk}.proprio_dim={dims['proprio_dim']} {pk}.action_dim={dims['action_dim']} "
          f"(got {pol.proprio_dim} and {pol.action_dim})")
    if cfg.env.type != "tabletop":
        check(has_expert(cfg.env.type) or not cfg.sft.enabled or cfg.sft.checkpoint or cfg.policy.init_from,
              f"the scripted-expert SFT exists for the tabletop and metaworld envs only: with env.type={cfg.env.type} "
              "set sft.enabled=false, sft.checkpoint=DIR or policy.init_from=DIR")
        check(cfg.bench.straggler_fraction == 0, "bench.straggler_fraction needs the tabletop latency model "
                                                 "(env.type=tabletop)")


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
            base = OmegaConf.merge(base, rename_keys(OmegaConf.load(preset_path(preset))))
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(rename_overrides(overrides)))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad config key {key!r}: {msg}" if key else f"bad config: {msg}") from None
    return validate(resolve_policy_dims(cfg))


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml_file(path: str) -> Config:
    try:
        loaded = OmegaConf.load(path)
        if not loaded:  # an empty or truncated file would silently mean "all defaults"
            raise ConfigError(f"{path} is empty: not a run config")
        merged = OmegaConf.merge(OmegaConf.structured(Config), rename_keys(loaded))
        return validate(resolve_policy_dims(OmegaConf.to_object(merged)))
    except (OmegaConfBaseException, yaml.YAMLError) as e:  # wrong keys/types, or a truncated file
        raise ConfigError(f"bad config in {path}: {str(e).splitlines()[0]}") from None
