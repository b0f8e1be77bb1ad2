"""The trainer's side of weight publication: its current weights as the object store carries
them (`pack_weights`), or broadcast over the generators' weight channel (`listen`, `send`,
generator.weight_transport=collective). `Trainer.get_weights` / `weights_*` call these; they
read the trainer's policy and ranks, kept in a module of their own for the trainer's length."""

from __future__ import annotations

import time
from typing import Optional

import torch

from rlvla3.core.types import WeightsMessage
from rlvla3.core.weight_wire import nbytes, pack


def full_state(trainer, dtype: Optional[torch.dtype] = None) -> Optional[dict]:
    """Full CPU tensors as `policy.state_dict(dtype)` gives them; under fsdp gathered (every
    rank calls it; float32, pack casts them) and None on ranks other than 0."""
    policy = trainer.policy
    if not trainer.ranks.sharded:
        return policy.state_dict(dtype)
    full = trainer.ranks.full_state(policy.model)
    if full is not None and policy.cfg.lora.enabled:  # as HFPolicy.state_dict: the trainable tensors
        full = {k: full[k] for k, p in policy.model.named_parameters() if p.requires_grad}
    return full


def pack_weights(trainer, dtype: str) -> Optional[WeightsMessage]:
    """The current version off the device and into numpy arrays of `dtype` (core/weight_wire.py);
    the object store's copy and the generators' staging follow. None on fsdp ranks > 0."""
    t0, w0 = time.perf_counter(), time.time()
    state = full_state(trainer, _torch_dtype(dtype))
    if state is None:
        return None
    arrays, bf16 = pack(state, dtype)
    _record_pack(trainer, t0, w0, nbytes(arrays))
    return WeightsMessage(trainer.version, arrays, bf16)


def local_weights(trainer, dtype: str = "float32") -> WeightsMessage:
    """The current version for a generator in this process (generator.in_trainer_process): the
    policy's host tensors (floating ones in `dtype`) from one pinned pass, without numpy arrays
    or the object store (one rank: never None)."""
    t0, w0 = time.perf_counter(), time.time()
    state = full_state(trainer, _torch_dtype(dtype))
    if trainer.policy.device.type != "cuda":  # host tensors of a CPU policy share its storage: the next step
        state = {k: v.clone() for k, v in state.items()}  # would change a version not yet swapped in
    _record_pack(trainer, t0, w0, sum(t.numel() * t.element_size() for t in state.values()))
    return WeightsMessage(trainer.version, state)


def _torch_dtype(dtype: str) -> Optional[torch.dtype]:
    """A publication's wire dtype as `state_dict` takes it (None: as the tensors are)."""
    return torch.bfloat16 if dtype == "bfloat16" else None


def _record_pack(trainer, t0: float, w0: float, nbytes_: int) -> None:
    """The publication's bytes, and its `weight_pack` span (the bench's pack time)."""
    trainer.weights_bytes = nbytes_
    trainer.spans.record("trainer", "weight_pack", w0, time.perf_counter() - t0, version=trainer.version,
                         mib=round(nbytes_ / 2**20, 1))


def listen(trainer):
    """Rank 0: start the channel's store; (addr, port) for the generators."""
    from rlvla3.distributed.weight_channel import WeightSender

    if trainer.weight_sender is None:
        trainer.weight_sender = WeightSender(trainer.cfg.faults.step_timeout_s)
    return trainer.weight_sender.listen()


def send(trainer) -> Optional[dict]:
    """Broadcast the current weights to the generators; None on fsdp ranks > 0."""
    state = full_state(trainer)
    if state is None:
        return None
    t0, w0 = time.perf_counter(), time.time()
    out = trainer.weight_sender.send(state, trainer.version, trainer.cfg.generator.weight_bucket_mb)
    trainer.spans.record("trainer", "weight_send", w0, time.perf_counter() - t0, version=trainer.version)
    return out
