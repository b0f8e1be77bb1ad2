"""The trainer's checkpoints: the policy (safetensors + config) and the trainer state
(optimizer, version and counters, RNGs), written atomically and read back with clear errors
for a file that is missing, unreadable or of the wrong content. `Trainer.save` / `load` call
these; they are the trainer's own state, kept in a module of their own for its length."""

from __future__ import annotations

import os
import shutil
from typing import Optional

import torch

from rlvla3.distributed.data_parallel import load_optimizer_state_by_name, optimizer_state_by_name
from rlvla3.policies import load_policy


def save_checkpoint(trainer, path: str, extra: Optional[dict] = None) -> None:
    """Policy (safetensors + config) and trainer state, written atomically by rank 0 (the
    other ranks only take part in the fsdp gathers)."""
    if trainer.ranks.sharded:  # optimizer state keyed by parameter name: shards gathered in full
        weights = trainer.ranks.full_state(trainer.policy.model)
        optimizer = trainer.ranks.full_optimizer_state(trainer.policy.model, trainer.opt)
    else:
        weights, optimizer = None, trainer.opt.state_dict()
    if not trainer.ranks.is_main:
        return
    tmp = path.rstrip("/") + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    if weights is None:
        trainer.policy.save_pretrained(os.path.join(tmp, "policy"))
    else:
        trainer.policy.save_pretrained(os.path.join(tmp, "policy"), full=weights)
    state = {"optimizer": optimizer, "optimizer_by_name": trainer.ranks.sharded,
             "version": trainer.version, "updates": trainer.updates,
             "samples_trained": trainer.samples_trained, "steps_skipped": trainer.steps_skipped,
             "adv_baseline": trainer.adv_baseline, "rng": trainer.rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "extra": extra or {}}
    torch.save(state, os.path.join(tmp, "trainer_state.pt"))
    if os.path.isdir(path):
        old = path.rstrip("/") + ".old"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def load_checkpoint(trainer, path: str) -> dict:
    state_path = os.path.join(path, "trainer_state.pt")
    if not os.path.isfile(state_path):
        raise FileNotFoundError(f"checkpoint {path} has no trainer_state.pt")
    policy = load_policy(os.path.join(path, "policy"), "cpu" if trainer.ranks.sharded else trainer.cfg.policy.device)
    if trainer.ranks.sharded:  # every rank reads the file and keeps its shards
        trainer.ranks.load_full_state(trainer.policy.model, policy.state_dict(), strict=not trainer.policy.cfg.lora.enabled)
    else:
        trainer.policy.load_state_dict(policy.state_dict())
    try:
        state = torch.load(state_path, weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read trainer state {state_path}: {e}") from e
    try:
        opt_state, by_name = state["optimizer"], bool(state.get("optimizer_by_name", False))
        if trainer.ranks.sharded or by_name:  # either side fsdp: through parameter names
            if not by_name:
                opt_state = optimizer_state_by_name(trainer.policy.model, opt_state)
            load_optimizer_state_by_name(trainer.policy.model, trainer.opt, opt_state)
        else:
            trainer.opt.load_state_dict(opt_state)
        trainer.version = trainer.policy.version = int(state["version"])
        trainer.samples_trained = int(state["samples_trained"])
        trainer.steps_skipped = int(state["steps_skipped"])
        trainer.updates = int(state.get("updates", trainer.version))
        trainer.adv_baseline = float(state.get("adv_baseline", 0.0))
        trainer.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a readable file with the wrong content
        raise ValueError(f"trainer state {state_path} is not a valid checkpoint: {type(e).__name__}: {e}") from e
    return state.get("extra", {})
