"""How a published state dict travels to the generators (`generator.weight_dtype`).

Ray's object store moves numpy arrays without pickling them, and numpy has no bfloat16, so a
bfloat16 copy travels as its bit pattern (int16) and is viewed back as bfloat16 on arrival;
`load_state_dict` then casts it into the generator's float32 parameters. A policy under
bfloat16 autocast casts its weights to bfloat16 in every matmul anyway, so its generators
lose almost nothing by receiving them so, and a publication carries half the bytes (4.6 GB
-> 2.3 GB for a 1.2B model).
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

import numpy as np
import torch

WIRE_DTYPES = ("auto", "float32", "bfloat16")


def wire_dtype(setting: str, policy_dtype: str, transport: str = "object_store") -> str:
    """`auto`: bfloat16 when the policy computes under bfloat16 autocast and the weights go
    through the object store; float32 otherwise (the collective channel sends float32)."""
    if setting not in WIRE_DTYPES:
        raise ValueError(f"weight dtype must be one of {WIRE_DTYPES}, got {setting!r}")
    if setting == "auto":
        return "bfloat16" if policy_dtype == "bfloat16" and transport == "object_store" else "float32"
    return setting


def pack(state: Dict[str, torch.Tensor], dtype: str) -> Tuple[Dict[str, np.ndarray], FrozenSet[str]]:
    """numpy arrays to publish, and the names sent as bfloat16 bits: with `bfloat16` every
    float32 tensor, and whatever the dtype every bfloat16 tensor (numpy cannot hold one).
    Other tensors (integer buffers) go as they are."""
    out, packed = {}, set()
    for k, v in state.items():
        if v.dtype == torch.bfloat16 or (dtype == "bfloat16" and v.dtype == torch.float32):
            out[k] = v.to(torch.bfloat16).view(torch.int16).numpy()
            packed.add(k)
        else:
            out[k] = v.numpy()
    return out, frozenset(packed)


def unpack(arrays: Dict[str, np.ndarray], packed: FrozenSet[str]) -> Dict[str, torch.Tensor]:
    """Tensors for `load_state_dict`: the packed names as bfloat16, the rest as sent."""
    # torch.tensor copies: arrays from Ray's object store are read-only (the loaders copied them anyway)
    return {k: torch.tensor(a).view(torch.bfloat16) if k in packed else torch.tensor(a) for k, a in arrays.items()}


def nbytes(arrays: Dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays.values())
