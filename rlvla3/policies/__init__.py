"""Policies behind one interface (`base.Policy`): the tiny VLA, the OFT-style VLA and the
pi0-style flow VLA. The transformers-backed families are imported only when used."""

from __future__ import annotations

import json
import os

from rlvla3.policies.base import ActOutput, EvalOutput, Policy
from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAPolicy

FAMILIES = ("tiny", "oft", "pi0")
# Families whose act forward generator.cuda_graphs can capture (policies/cuda_graphs.py): fixed-shape
# inputs (prompts padded to a fixed length) and no host sync inside; pi0's step noise is drawn inside
# the graph, fresh on each replay.
GRAPHABLE = ("oft", "pi0")


def family_class(kind: str):
    if kind == "tiny":
        return TinyVLAPolicy
    if kind == "oft":
        from rlvla3.policies.oft.policy import OFTPolicy

        return OFTPolicy
    if kind == "pi0":
        from rlvla3.policies.pi0.policy import PI0Policy

        return PI0Policy
    raise ValueError(f"policy.type {kind!r} is not supported (known: {list(FAMILIES)})")


def family_config(policy_cfg):
    """The active family's config (policy.tiny / policy.oft / policy.pi0)."""
    if policy_cfg.type not in FAMILIES:
        raise ValueError(f"policy.type must be one of {list(FAMILIES)}, got {policy_cfg.type!r}")
    return getattr(policy_cfg, policy_cfg.type)


def build_policy(policy_cfg):
    """Build from a PolicyConfig on its device, loading `init_from` when set."""
    if policy_cfg.init_from:
        return load_policy(policy_cfg.init_from, policy_cfg.device)
    return family_class(policy_cfg.type)(family_config(policy_cfg), device=policy_cfg.device)


def load_policy(path: str, device: str = "cpu"):
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"no policy checkpoint at {path} (missing config.json)")
    try:
        with open(cfg_path) as f:
            kind = json.load(f).get("policy_type", "tiny")
    except (ValueError, AttributeError) as e:
        raise ValueError(f"cannot read policy config {cfg_path}: {e}") from e
    if kind not in FAMILIES:
        raise ValueError(f"{cfg_path}: unknown policy_type {kind!r}")
    return family_class(kind).from_pretrained(path, device=device)


__all__ = ["ActOutput", "EvalOutput", "FAMILIES", "GRAPHABLE", "Policy", "TinyVLAConfig", "TinyVLAPolicy",
           "build_policy", "family_class", "family_config", "load_policy"]
