"""Config keys renamed in this release: the old spelling works for one more release, and the first
use of each prints the new one. Drop an entry (and this module once empty) in the next release."""

from __future__ import annotations

import sys
from typing import List

from omegaconf import DictConfig, OmegaConf

RENAMED = {"rollout.straggler_fraction": "bench.straggler_fraction",
           "rollout.straggler_slowdown": "bench.straggler_slowdown",
           "policy.oft.lora.r": "policy.oft.lora.rank", "policy.pi0.lora.r": "policy.pi0.lora.rank",
           "rollout.nice": "process.nice", "run.heap_keep_mb": "process.heap_keep_mb",
           "rollout.coalesce_ms": "transport.coalesce_ms", "rollout.poll_ms": "transport.poll_ms"}
_warned = set()


def new_key(old: str) -> str:
    if old not in _warned:
        _warned.add(old)
        print(f"config: {old} is deprecated and goes away in the next release; use {RENAMED[old]}",
              file=sys.stderr, flush=True)
    return RENAMED[old]


def rename_overrides(overrides: List[str]) -> List[str]:
    return [f"{new_key(k)}={v}" if k in RENAMED else f"{k}={v}" for k, v in (o.split("=", 1) for o in overrides)]


def rename_keys(conf: DictConfig) -> DictConfig:
    """A loaded YAML (a preset or a saved run config) with each old key moved to its new place."""
    for old in RENAMED:
        section, _, name = old.rpartition(".")
        parent = OmegaConf.select(conf, section) if isinstance(conf, DictConfig) else None
        if isinstance(parent, DictConfig) and name in parent:
            OmegaConf.update(conf, new_key(old), parent.pop(name), force_add=True)
    return conf
