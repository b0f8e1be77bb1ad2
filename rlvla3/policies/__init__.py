"""Policies: the tiny VLA today; OFT-style and pi0-style VLAs implement the same interface."""

from __future__ import annotations

import json
import os

from rlvla3.policies.base import ActOutput, EvalOutput, Policy
from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAPolicy


def build_policy(policy_cfg, device: str | None = None):
    """Build from a PolicyConfig, loading `init_from` when set."""
    device = device or policy_cfg.device
    if policy_cfg.init_from:
        return load_policy(policy_cfg.init_from, device)
    if policy_cfg.type == "tiny":
        return TinyVLAPolicy(policy_cfg.tiny, device=device)
    raise ValueError(f"policy.type {policy_cfg.type!r} is not supported (known: tiny)")


def load_policy(path: str, device: str = "cpu"):
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"no policy checkpoint at {path} (missing config.json)")
    with open(cfg_path) as f:
        kind = json.load(f).get("policy_type", "tiny")
    if kind == "tiny":
        return TinyVLAPolicy.from_pretrained(path, device=device)
    raise ValueError(f"{cfg_path}: unknown policy_type {kind!r}")


__all__ = ["ActOutput", "EvalOutput", "Policy", "TinyVLAConfig", "TinyVLAPolicy", "build_policy", "load_policy"]
