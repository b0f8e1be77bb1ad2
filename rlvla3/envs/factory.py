"""Build the env a run asks for (`env.type`), so workers, evaluation and benchmarks do not
depend on one simulator.

What an env provides: `reset(options=...)`, `chunk_step(actions)` (info holds `success` and
`substeps`, the sub-actions executed before the episode ended), `num_tasks`, `tasks`, and
`obs_has_time`: True where the observation holds the time (tabletop), so that a time-limit cut
is a terminal state; False or absent (LIBERO, MetaWorld, any new env) makes PPO bootstrap V(s_T) there.
An env with a scripted expert for SFT has `expert_chunk(k, rng, noise_std)` (MetaWorld) or is
the tabletop env (rlvla3/envs/expert.py); `expert_chunk` below picks the right one."""

from __future__ import annotations

from typing import Any

from rlvla3.envs.libero_config import LiberoConfig
from rlvla3.envs.metaworld_config import MetaWorldConfig

ENV_TYPES = ("tabletop", "libero", "metaworld")


def env_config(cfg) -> Any:
    """The active env section of a run config: `cfg.env.tabletop`, `cfg.env.libero` or `cfg.env.metaworld`."""
    if cfg.env.type not in ENV_TYPES:
        raise ValueError(f"env.type must be one of {list(ENV_TYPES)}, got {cfg.env.type!r}")
    return getattr(cfg.env, cfg.env.type)


def make_env(env_cfg, seed: int = 0):
    if isinstance(env_cfg, LiberoConfig):
        from rlvla3.envs.libero import LiberoEnv  # imports MuJoCo: only when asked for

        return LiberoEnv(env_cfg, seed=seed)
    if isinstance(env_cfg, MetaWorldConfig):
        from rlvla3.envs.metaworld import MetaWorldEnv  # imports MuJoCo: only when asked for

        return MetaWorldEnv(env_cfg, seed=seed)
    from rlvla3.envs.tabletop import TabletopEnv

    return TabletopEnv(env_cfg, seed=seed)


def has_expert(env_type: str) -> bool:
    """Whether `rlvla3 sft` can collect scripted-expert demonstrations on this env type."""
    return env_type in ("tabletop", "metaworld")


def expert_chunk(env, k: int, rng=None, noise_std: float = 0.0):
    """(k, action_dim) scripted-expert actions for the env's current state."""
    if hasattr(env, "expert_chunk"):
        return env.expert_chunk(k, rng, noise_std)
    from rlvla3.envs.expert import expert_chunk as tabletop_expert_chunk

    return tabletop_expert_chunk(env, k, rng, noise_std)
