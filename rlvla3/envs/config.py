"""Plain-dataclass configs for the built-in tabletop env.

Only str/int/float/bool/List fields with defaults, so they work unchanged as
OmegaConf structured configs. Validation lives in ``validate()`` (not
``__post_init__``) because OmegaConf builds and merges configs field by field
and may hold transiently invalid values.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, List, Mapping

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
        if self.kind not in LATENCY_KINDS:
            raise ValueError(f"{prefix}.kind must be one of {list(LATENCY_KINDS)}, got {self.kind!r}")
        if self.mode not in LATENCY_MODES:
            raise ValueError(f"{prefix}.mode must be one of {list(LATENCY_MODES)}, got {self.mode!r}")
        for name in ("step_ms", "reset_ms", "sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{prefix}.{name} must be >= 0, got {getattr(self, name)}")
        if self.slow_factor <= 0:
            raise ValueError(f"{prefix}.slow_factor must be > 0, got {self.slow_factor}")
        if self.kind == "replay" and not self.profile:
            raise ValueError(f"{prefix}.profile must name a JSON file when kind='replay'")
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
        if self.image_size < 16:
            raise ValueError(f"{prefix}.image_size must be >= 16, got {self.image_size}")
        if self.image_size > 512:
            raise ValueError(f"{prefix}.image_size must be <= 512, got {self.image_size}")
        fams = list(self.families)
        if not fams:
            raise ValueError(f"{prefix}.families must not be empty; valid: {list(FAMILIES)}")
        bad = [f for f in fams if f not in FAMILIES]
        if bad:
            raise ValueError(f"{prefix}.families has unknown {bad}; valid: {list(FAMILIES)}")
        if len(set(fams)) != len(fams):
            raise ValueError(f"{prefix}.families has duplicates: {fams}")
        if self.max_steps < 1:
            raise ValueError(f"{prefix}.max_steps must be >= 1, got {self.max_steps}")
        if self.num_init_states < 1:
            raise ValueError(f"{prefix}.num_init_states must be >= 1, got {self.num_init_states}")
        if self.num_eval_init_states < 1:
            raise ValueError(
                f"{prefix}.num_eval_init_states must be >= 1, got {self.num_eval_init_states}")
        if not isinstance(self.latency, LatencyConfig):
            raise ValueError(f"{prefix}.latency must be a LatencyConfig, got {type(self.latency).__name__}")
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
