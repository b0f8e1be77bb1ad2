"""What one trainer rank needs to train as one of N data-parallel ranks (issue 8).

Every rank receives the whole batch, runs the same micro-batch loop (the same permutation:
the same seed) and computes the loss on its share of each micro-batch, weighted by its share
of the global batch, so that the SUM of the ranks' gradients is the single-process gradient.
- ddp: replicated weights; the accumulated gradients are all-reduced (SUM) once per optimizer
  step, not per micro-batch.
- fsdp: FSDP2 shards (`shard_model`); each backward reduce-scatters. FSDP averages over the
  ranks, so the losses are scaled by the world size (`loss_scale`) to get the sum: a divide
  factor of 1 would need ReduceOp.PREMUL_SUM, which gloo lacks.
With world == 1 every method is the identity and no process group exists.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from rlvla3.distributed.fsdp import shard_model
from rlvla3.distributed.weight_broadcast import broadcast_state


def node_address() -> str:
    """This node's address as the other processes of the job reach it."""
    try:
        import ray

        return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    except ImportError:
        return "127.0.0.1"


def rendezvous_address() -> Tuple[str, int]:
    """This node's address and a free TCP port on it (rank 0 calls it for the others)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return node_address(), s.getsockname()[1]


def merge_rank_stats(parts) -> dict:
    """One micro-batch's statistics from the ranks' (rows, stats): maxima (`*_max`) the
    largest, every other statistic a per-sample mean, so weighted by rows."""
    parts = [(n, s) for n, s in parts if n > 0]
    out = {}
    for k in sorted({k for _, s in parts for k in s}):
        have = [(n, s[k]) for n, s in parts if k in s]
        if k.endswith("_max"):
            out[k] = max(v for _, v in have)
        else:
            out[k] = sum(n * v for n, v in have) / sum(n for n, _ in have)
    return out


class RankContext:
    def __init__(self, rank: int = 0, world: int = 1, sharding: str = "ddp"):
        if not 0 <= rank < world:
            raise ValueError(f"trainer rank {rank} outside a world of {world}")
        self.rank, self.world, self.sharding = rank, world, sharding
        self.device = torch.device("cpu")  # where flags and gradient buckets live (the GPU for NCCL)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def sharded(self) -> bool:
        return self.distributed and self.sharding == "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- set-up ----------------------------------------------------------------------------
    def init(self, addr: str, port: int, device: torch.device, timeout_s: float) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if self.device.index is None:  # "cuda": Ray gave this process one GPU, it is device 0
                self.device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(self.device)  # NCCL and all_gather_object use the current device
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=self.rank,
                                world_size=self.world, timeout=timedelta(seconds=timeout_s))

    def prepare(self, policy) -> None:
        """Same starting weights everywhere (rank 0's), then shard them under fsdp. The
        optimizer must be created after this (fsdp replaces the parameters)."""
        broadcast_state(policy.model.state_dict(), src=0, device=self.device)
        if self.sharded:
            from torch.distributed.device_mesh import init_device_mesh

            shard_model(policy.model, init_device_mesh(self.device.type, (self.world,)))

    @property
    def loss_scale(self) -> float:
        """Undoes FSDP's average over ranks (see the module docstring)."""
        return float(self.world) if self.sharded else 1.0

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    # --- the micro-batch loop --------------------------------------------------------------
    def share(self, n: int) -> Tuple[np.ndarray, bool]:
        """This rank's rows of an n-sample micro-batch: (indices, dummy). Under fsdp every
        rank must run every forward/backward (they are collectives): a rank left without
        rows runs one row with weight 0 (dummy=True)."""
        idx = np.arange(self.rank, n, self.world)
        if len(idx) == 0 and self.sharded:
            return np.arange(min(1, n)), True
        return idx, False

    def reduce_grads(self, params: List[torch.Tensor], bucket_mb: float = 32.0) -> None:
        """ddp: SUM the gradients over ranks, in flat buckets. A parameter keeps grad None
        only if it has none on every rank (as a single process would leave it)."""
        if not self.distributed or self.sharded:
            return
        has = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        dist.all_reduce(has)
        live = [p for p, h in zip(params, has.tolist()) if h > 0]
        limit = max(1, int(bucket_mb * 2**20))
        bucket: List[torch.Tensor] = []
        size = 0
        for p in live:
            if bucket and (size + p.numel() * p.element_size() > limit or p.dtype != bucket[0].dtype):
                self._reduce_bucket(bucket)
                bucket, size = [], 0
            bucket.append(p)
            size += p.numel() * p.element_size()
        if bucket:
            self._reduce_bucket(bucket)

    def _reduce_bucket(self, params: List[torch.Tensor]) -> None:
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(self.device)
                          for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            g = flat[offset:offset + p.numel()].view_as(p).to(p.device)
            offset += p.numel()
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)

    def clip_grad_norm(self, params: List[torch.Tensor], max_norm: float) -> torch.Tensor:
        """The total gradient norm (over all shards under fsdp), gradients clipped to max_norm."""
        if not self.sharded:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if hasattr(norm, "full_tensor"):  # a DTensor: the shards' partial norms combined
            norm = norm.full_tensor()
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return norm

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on one (a step skipped on one rank is skipped on all)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def from_main(self, flag: bool) -> bool:
        """Rank 0's decision on every rank (time-based loops must run the same iterations)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item() > 0)

    def merge_stats(self, acc: List[Tuple[int, dict]]) -> List[dict]:
        """Per micro-batch statistics of the whole micro-batch: each rank's (rows, stats)
        averaged over ranks, weighted by rows (the losses are per-sample means)."""
        if not self.distributed:
            return [s for _, s in acc]
        every: List[Optional[list]] = [None] * self.world
        dist.all_gather_object(every, acc)
        return [merge_rank_stats(parts) for parts in zip(*every)]  # per micro-batch: one entry per rank

    # --- weights ---------------------------------------------------------------------------
    def full_state(self, model: torch.nn.Module) -> Optional[Dict[str, torch.Tensor]]:
        """Full CPU tensors of an fsdp model on rank 0 (a collective: every rank calls it);
        None on the other ranks."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.is_main else None

    def load_full_state(self, model: torch.nn.Module, state: Dict[str, torch.Tensor], strict: bool) -> None:
        """Full tensors (held by every rank) into the shards of an fsdp model."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=strict))

    def full_optimizer_state(self, model: torch.nn.Module, opt) -> Optional[dict]:
        """Name-keyed full optimizer state on rank 0 (a collective), None elsewhere."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        state = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.is_main else None



def load_optimizer_state_by_name(model: torch.nn.Module, opt, state: dict) -> None:
    """A name-keyed full optimizer state (written under fsdp) into `opt`, sharded or not."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))


def optimizer_state_by_name(model: torch.nn.Module, state: dict) -> dict:
    """`optimizer.state_dict()` (keyed by position) -> keyed by parameter name. Positions are
    those of the trainable parameters in `named_parameters` order, as the trainer builds its
    optimizer (`policy.parameters()`)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return {"state": {names[i]: v for i, v in state["state"].items()},
            "param_groups": [dict(g, params=[names[i] for i in g["params"]]) for g in state["param_groups"]]}
