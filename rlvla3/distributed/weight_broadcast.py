"""Bucketed weight broadcast from the trainer rank to generator ranks over torch.distributed
(NCCL between GPUs, gloo on CPU).

Every rank holds a state dict with the same names, shapes and dtypes (the same policy
architecture). Tensors are packed, in name order and per dtype, into flat buckets of at most
`bucket_mb` and broadcast one bucket at a time, so the extra memory is one bucket, not a
second copy of the model. A fingerprint of the layout is agreed first: a rank whose layout
differs makes every rank raise instead of hanging in a mismatched collective.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist


def plan_buckets(state: Dict[str, torch.Tensor], bucket_mb: float) -> List[List[str]]:
    """Names grouped into buckets: same dtype within a bucket, at most `bucket_mb` each (a
    tensor larger than that gets a bucket of its own)."""
    limit = max(1, int(bucket_mb * 2**20))
    buckets: List[List[str]] = []
    by_dtype: Dict[torch.dtype, List[str]] = {}
    for name in sorted(state):
        by_dtype.setdefault(state[name].dtype, []).append(name)
    for dtype in sorted(by_dtype, key=str):
        cur, size = [], 0
        for name in by_dtype[dtype]:
            nbytes = state[name].numel() * state[name].element_size()
            if cur and size + nbytes > limit:
                buckets.append(cur)
                cur, size = [], 0
            cur.append(name)
            size += nbytes
        if cur:
            buckets.append(cur)
    return buckets


def layout_fingerprint(state: Dict[str, torch.Tensor]) -> int:
    text = ";".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in sorted(state.items()))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")


class Collectives:
    """Broadcast and max-all-reduce on a torch.distributed group (None: the default one) or on
    a raw ProcessGroup built outside it: the trainer->generators channel must not be part of
    the trainer ranks' world (`distributed/weight_channel.py`)."""

    def __init__(self, group=None, raw=None):
        self.group, self.raw = group, raw

    def rank(self) -> int:
        if self.raw is not None:
            return self.raw.rank()
        return dist.get_rank(self.group) if self.group is not None else dist.get_rank()

    def broadcast(self, t: torch.Tensor, src: int) -> None:
        if self.raw is None:
            dist.broadcast(t, src, group=self.group)
            return
        opts = dist.BroadcastOptions()
        opts.rootRank = src
        self.raw.broadcast([t], opts).wait()

    def max_(self, t: torch.Tensor) -> None:
        if self.raw is None:
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
            return
        opts = dist.AllreduceOptions()
        opts.reduceOp = dist.ReduceOp.MAX
        self.raw.allreduce([t], opts).wait()


def broadcast_state(state: Dict[str, torch.Tensor], src: int = 0, bucket_mb: float = 64.0, group=None,
                    device: torch.device | str = "cpu", raw_group=None) -> Tuple[int, int]:
    """Overwrite `state` on every rank with src's tensors, in place. `device` is where the
    flat buckets live (the GPU for NCCL); `raw_group` a ProcessGroup outside the default
    world (see Collectives). Returns (buckets, bytes) sent."""
    ops = Collectives(group, raw_group)
    device = torch.device(device)
    fp = torch.tensor([layout_fingerprint(state)], dtype=torch.int64, device=device)
    theirs = fp.clone()
    ops.broadcast(theirs, src)
    mismatch = torch.tensor([int(theirs.item() != fp.item())], dtype=torch.int64, device=device)
    ops.max_(mismatch)
    if mismatch.item():
        raise ValueError("weight broadcast: the ranks hold state dicts of different layouts (names, shapes or dtypes)")
    sent = 0
    buckets = plan_buckets(state, bucket_mb)
    is_src = ops.rank() == src
    for names in buckets:
        tensors = [state[n] for n in names]
        if is_src:
            flat = torch.cat([t.detach().reshape(-1).to(device) for t in tensors])
        else:
            flat = torch.empty(sum(t.numel() for t in tensors), dtype=tensors[0].dtype, device=device)
        ops.broadcast(flat, src)
        sent += flat.numel() * flat.element_size()
        if not is_src:
            offset = 0
            with torch.no_grad():
                for t in tensors:
                    n = t.numel()
                    t.copy_(flat[offset:offset + n].view_as(t))
                    offset += n
    return len(buckets), sent
