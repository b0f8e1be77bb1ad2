"""Plain-dataclass configs for the built-in tabletop env.

Only str/int/float/bool/List fields with defaults, so they work unchanged as
OmegaConf structured configs. Validation lives in ``validate()`` (not
``__post_init__``) because OmegaConf builds and merges configs field by field
and may hold transiently invalid values.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, List, Mapping

from rlvla3.core.config_checks import check, check_at_least, check_choice

LATENCY_KINDS = ("none", "constant", "lognormal", "replay")
LATENCY_MODES = ("sleep", "spin")
FAMILIES = ("reach", "push", "pick_place")


@dataclass
class LatencyConfig:
    """Simulated cost of a real simulator, so runtime code can be tested against slow envs."""

    kind: str = "none"  # none | constant | lognormal | replay
    step_ms: float = 0.0  # mean cost of one low-level sim step
    reset_ms: float = 0.0  # mean cost of one reset
    sigma: float = 0.0  # lognormal shape (long tail); 0 = constant
    profile: str = ""  # replay: JSON {"step_ms": [...], "reset_ms": [...]} recorded from a real simulator
    mode: str = "sleep"  # sleep (simulator runs elsewhere) | spin (burn this CPU)
    slow_factor: float = 1.0  # multiplies every cost (used to make straggler env slots)

    def validate(self, prefix: str = "env.latency") -> "LatencyConfig":
        check_choice(self.kind, LATENCY_KINDS, f"{prefix}.kind")
        check_choice(self.mode, LATENCY_MODES, f"{prefix}.mode")
        check_at_least(self, prefix, 0, "step_ms", "reset_ms", "sigma")
        check(self.slow_factor > 0, f"{prefix}.slow_factor must be > 0, got {self.slow_factor}")
        check(self.kind != "replay" or bool(self.profile), f"{prefix}.profile must name a JSON file when kind='replay'")
        return self


@dataclass
class TabletopConfig:
    """The 2-D tabletop task family (see rlvla3/envs/tabletop.py)."""

    image_size: int = 64  # square RGB observation side in pixels
    families: List[str] = field(default_factory=lambda: ["reach", "push"])  # reach | push | pick_place
    max_steps: int = 60  # low-level step limit per episode (time limit -> truncated)
    num_init_states: int = 32  # fixed TRAIN initial states per task
    num_eval_init_states: int = 16  # fixed held-out EVAL initial states per task (disjoint from train)
    render_substeps: bool = False  # render every sub-step of a chunk (for video) instead of only the last
    latency: LatencyConfig = field(default_factory=LatencyConfig)  # simulated simulator cost

    def episode_steps(self) -> int:
        """Low-level step limit of an episode (every env config answers this)."""
        return self.max_steps

    def validate(self, prefix: str = "env") -> "TabletopConfig":
        check(16 <= self.image_size, f"{prefix}.image_size must be >= 16, got {self.image_size}")
        check(self.image_size <= 512, f"{prefix}.image_size must be <= 512, got {self.image_size}")
        fams = list(self.families)
        check(bool(fams), f"{prefix}.families must not be empty; valid: {list(FAMILIES)}")
        bad = [f for f in fams if f not in FAMILIES]
        check(not bad, f"{prefix}.families has unknown {bad}; valid: {list(FAMILIES)}")
        check(len(set(fams)) == len(fams), f"{prefix}.families has duplicates: {fams}")
        check_at_least(self, prefix, 1, "max_steps", "num_init_states", "num_eval_init_states")
        check(isinstance(self.latency, LatencyConfig),
              f"{prefix}.latency must be a LatencyConfig, got {type(self.latency).__name__}")
        self.latency.validate(prefix + ".latency")
        return self


def _from_mapping(cls, data: Mapping[str, Any], prefix: str):
    names = {f.name for f in fields(cls)}
    unknown = [k for k in data.keys() if k not in names]
    if unknown:
        raise ValueError(f"{prefix} has unknown keys {unknown}; valid: {sorted(names)}")
    kwargs = {}
    for k in data.keys():
        v = data[k]
        if k == "latency" and not isinstance(v, LatencyConfig):
            v = _from_mapping(LatencyConfig, v, prefix + ".latency")
        elif k == "families":
            v = [str(x) for x in v]  # also turns an OmegaConf ListConfig into a plain list
        kwargs[k] = v
    return cls(**kwargs)


def to_tabletop_config(cfg: Any = None, prefix: str = "env") -> TabletopConfig:
    """Accept None, a TabletopConfig, a dict or an OmegaConf DictConfig; return a validated TabletopConfig."""
    if cfg is None:
        cfg = TabletopConfig()
    elif not isinstance(cfg, TabletopConfig):
        if not isinstance(cfg, Mapping):
            try:  # OmegaConf DictConfig is a Mapping, but structured ones may convert directly
                from omegaconf import OmegaConf  # optional dependency

                cfg = OmegaConf.to_object(cfg)
            except Exception as exc:  # noqa: BLE001 - report any conversion failure uniformly
                raise ValueError(f"{prefix} must be a TabletopConfig or mapping, got {type(cfg).__name__}") from exc
        if not isinstance(cfg, TabletopConfig):
            cfg = _from_mapping(TabletopConfig, cfg, prefix)
    return cfg.validate(prefix)
