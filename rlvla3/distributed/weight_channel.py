"""Trainer -> generators weight channel over torch.distributed (`generator.weight_transport=
collective`): NCCL when every member has a GPU of its own, gloo otherwise.

The channel is a raw ProcessGroup of 1 + G members (trainer rank 0 is member 0), built on a
TCPStore that the trainer hosts, outside the trainer ranks' own world (a data-parallel
trainer already uses the default group). A replaced generator cannot rejoin a group, so the
driver builds a new one, an *epoch*, whenever membership changes; calls of an older epoch
return at once.

A send is announced in the store (`<epoch>/go/<n>`) before the collective starts, and a
receiver waits for that key before it enters the collective: a receiver may be asked long
before the trainer, busy with an optimizer step, gets to the send, and a collective waiting
that long would hit its timeout. Waiting on the store in short slices also lets a receiver
of an abandoned epoch give up.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist

from rlvla3.distributed.data_parallel import node_address
from rlvla3.distributed.weight_broadcast import Collectives, broadcast_state

STORE_PREFIX = "rlvla3-weights"


def make_group(store, rank: int, world: int, epoch: int, backend: str, timeout_s: float):
    prefix = dist.PrefixStore(f"{STORE_PREFIX}/{epoch}/pg", store)
    timeout = timedelta(seconds=timeout_s)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return dist.ProcessGroupNCCL(prefix, rank, world, opts)
    if backend != "gloo":
        raise ValueError(f"weight channel backend must be gloo or nccl, got {backend!r}")
    return dist.ProcessGroupGloo(prefix, rank, world, timeout)


def bucket_device(backend: str, device) -> torch.device:
    """Where a member's flat buckets live: its GPU for NCCL, the CPU for gloo."""
    return torch.device(device if backend == "nccl" else "cpu")


class WeightSender:
    """Trainer side (member 0): hosts the store, sends state dicts."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.store = None
        self.group = None
        self.epoch = -1
        self.sends = 0
        self.device = torch.device("cpu")

    def listen(self) -> Tuple[str, int]:
        """Start the store (once); where the generators find it."""
        if self.store is None:
            self.store = dist.TCPStore("0.0.0.0", 0, None, True, timeout=timedelta(seconds=self.timeout_s),
                                       wait_for_workers=False)
        return node_address(), self.store.port

    def join(self, epoch: int, world: int, backend: str, device) -> None:
        """Build epoch `epoch`'s group (blocks until every generator joins too)."""
        self.group = None  # the old group's members may be gone: never use it again
        self.group = make_group(self.store, 0, world, epoch, backend, self.timeout_s)
        self.epoch, self.sends = epoch, 0
        self.device = bucket_device(backend, device)

    def send(self, state: Dict[str, torch.Tensor], version: int, bucket_mb: float) -> dict:
        if self.group is None:
            raise RuntimeError("weight channel: send before join")
        t0 = time.perf_counter()
        self.sends += 1
        self.store.set(f"{STORE_PREFIX}/{self.epoch}/go/{self.sends}", str(version))
        Collectives(raw=self.group).broadcast(torch.tensor([version], dtype=torch.int64, device=self.device), 0)
        buckets, sent = broadcast_state(state, src=0, bucket_mb=bucket_mb, device=self.device, raw_group=self.group)
        return {"version": version, "epoch": self.epoch, "seconds": time.perf_counter() - t0, "buckets": buckets,
                "bytes": sent}


class WeightReceiver:
    """Generator side (member 1..G): receives into a staging copy, never into the live model,
    so inference goes on with the old weights until the caller swaps."""

    POLL_S = 0.005  # how often a receiver waiting for a send looks for it (and for abandonment)

    def __init__(self, addr: str, port: int, rank: int, world: int, epoch: int, backend: str, device,
                 layout: Dict[str, Tuple[tuple, torch.dtype]], timeout_s: float):
        self.store = dist.TCPStore(addr, port, None, False, timeout=timedelta(seconds=timeout_s))
        self.group = make_group(self.store, rank, world, epoch, backend, timeout_s)
        self.epoch, self.receives = epoch, 0
        self.device = bucket_device(backend, device)
        self.layout = layout
        self.abandoned = threading.Event()  # set when a newer epoch replaces this one

    def receive(self, bucket_mb: float) -> Optional[Tuple[int, Dict[str, torch.Tensor]]]:
        """(version, state) of the next send, or None if this epoch was abandoned first."""
        self.receives += 1
        key = f"{STORE_PREFIX}/{self.epoch}/go/{self.receives}"
        while not self.store.check([key]):  # store.wait would block past an abandonment
            if self.abandoned.is_set():
                return None
            time.sleep(self.POLL_S)
        header = torch.zeros(1, dtype=torch.int64, device=self.device)
        Collectives(raw=self.group).broadcast(header, 0)
        state = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in self.layout.items()}
        broadcast_state(state, src=0, bucket_mb=bucket_mb, device=self.device, raw_group=self.group)
        return int(header.item()), state


def layout_of(state: Dict[str, torch.Tensor]) -> Dict[str, Tuple[tuple, torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
