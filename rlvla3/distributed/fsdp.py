"""FSDP2 (`fully_shard`) for the transformers-backed policies (issue 8).

Each transformer block (every module held in a `layers` ModuleList: decoder layers, vision
encoder layers) becomes its own FSDP unit, then the root: parameters live sharded over the
mesh and are gathered one block at a time. Works on CUDA with NCCL and on CPU with gloo (the
tests). Only modules entered through `forward` get their parameters gathered, so a model must
be called through its root `forward`: true of the OFT-style model; the pi0 flow policy calls
its sub-modules directly and is not supported yet.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn


def transformer_blocks(model: nn.Module) -> List[nn.Module]:
    blocks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] == "layers":
            blocks.extend(module)
    return blocks


def shard_model(model: nn.Module, mesh, bf16: bool = False) -> nn.Module:
    """Shard `model` in place over `mesh` (a 1-D DeviceMesh). `bf16`: compute in bf16,
    reduce gradients in fp32 (mixed precision); the sharded master weights stay fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kw = {"mesh": mesh}
    if bf16:
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in transformer_blocks(model):
        fully_shard(block, **kw)
    fully_shard(model, **kw)
    return model


def full_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Every tensor gathered in full (a collective: call it on every rank), on the CPU."""
    out = {}
    for k, v in model.state_dict().items():
        if hasattr(v, "full_tensor"):
            v = v.full_tensor()
        out[k] = v.detach().cpu()
    return out
