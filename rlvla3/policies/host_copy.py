"""A policy's tensors on the host, for a weight publication or a checkpoint, in one pass.

From a GPU, a `.cpu()` per tensor copies through pageable memory and waits for each transfer:
for `oft-1b`'s 2.3 GB in bfloat16 about 1 s a version (`publication.pack_s` 0.85-1.04 s in
docs/benchmarks/gpu-dec07e-libero-oft1b-graphs), time in which the trainer's actor trains
nothing. Here every tensor is cast where it lives, copied without waiting into its slice of one
pinned host buffer, and the copies are waited for once. The buffer comes from torch's caching
host allocator, which keeps it once nothing refers to it (Ray has copied the return value into
its object store; a generator has staged it) and hands it to the next publication: host memory
of about the published bytes stays pinned in the trainer's process.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

import torch

ALIGN = 64  # bytes: every slice starts where any dtype may view it


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def host_tensors(named: Iterable[Tuple[str, torch.Tensor]], dtype: Optional[torch.dtype] = None,
                 flat: Optional[bool] = None) -> Dict[str, torch.Tensor]:
    """{name: host tensor}: floating tensors cast to `dtype` first, where they live (on a GPU: half
    the bytes to copy for bfloat16, and the cast off the host's cores). `flat` (default: when any
    tensor is on a GPU) copies into one buffer, pinned when CUDA is there; otherwise each tensor's
    `.cpu()` (a host tensor is returned as it is, sharing its storage)."""
    items = []
    for k, t in named:
        t = t.detach()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        items.append((k, t))
    if flat is None:
        flat = any(t.is_cuda for _, t in items)
    if not flat:
        return {k: t.cpu() for k, t in items}
    pinned = torch.cuda.is_available()
    sizes = [t.numel() * t.element_size() for _, t in items]
    buf = torch.empty(sum(_aligned(n) for n in sizes), dtype=torch.uint8, pin_memory=pinned)
    out, off = {}, 0
    for (k, t), n in zip(items, sizes):
        dst = buf[off:off + n].view(t.dtype).view(t.shape)
        dst.copy_(t, non_blocking=pinned and t.is_cuda)
        out[k] = dst
        off += _aligned(n)
    if pinned:
        torch.cuda.synchronize()  # every copy landed before anyone reads the buffer
    return out
