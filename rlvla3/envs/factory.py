"""Build the env a run asks for (`env.type`), so workers, evaluation and benchmarks do not
depend on one simulator.

What an env provides: `reset(options=...)`, `chunk_step(actions)` (info holds `success` and
`substeps`, the sub-actions executed before the episode ended), `num_tasks`, `tasks`, and
`obs_has_time`: True where the observation holds the time (tabletop), so that a time-limit cut
is a terminal state; False or absent (LIBERO, any new env) makes PPO bootstrap V(s_T) there."""

from __future__ import annotations

from typing import Any

from rlvla3.envs.libero_config import LiberoConfig

ENV_TYPES = ("tabletop", "libero")


def env_config(cfg) -> Any:
    """The active env section of a run config: `cfg.env.tabletop` or `cfg.env.libero`."""
    if cfg.env.type not in ENV_TYPES:
        raise ValueError(f"env.type must be one of {list(ENV_TYPES)}, got {cfg.env.type!r}")
    return getattr(cfg.env, cfg.env.type)


def make_env(env_cfg, seed: int = 0):
    if isinstance(env_cfg, LiberoConfig):
        from rlvla3.envs.libero import LiberoEnv  # imports MuJoCo: only when asked for

        return LiberoEnv(env_cfg, seed=seed)
    from rlvla3.envs.tabletop import TabletopEnv

    return TabletopEnv(env_cfg, seed=seed)
