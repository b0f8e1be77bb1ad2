"""Bucketed weight broadcast over gloo, with real processes (the NCCL path is the same code)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlvla3.distributed.weight_broadcast import broadcast_state, plan_buckets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(seed: int, extra: bool = False):
    g = torch.Generator().manual_seed(seed)
    s = {"a.weight": torch.randn(64, 32, generator=g), "a.bias": torch.randn(64, generator=g),
         "b.weight": torch.randn(128, 64, generator=g), "steps": torch.tensor([seed], dtype=torch.int64),
         "half": torch.randn(16, generator=g).to(torch.bfloat16)}
    if extra:
        s["c.weight"] = torch.zeros(3)
    return s


def _worker(rank: int, world: int, port: int, bad_rank: int, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = _state(0 if rank == 0 else 100 + rank, extra=rank == bad_rank)
        try:
            buckets, sent = broadcast_state(state, src=0, bucket_mb=0.01)
        except ValueError as e:
            out.put((rank, "error", str(e)))
            return
        ref = _state(0)
        same = all(torch.equal(state[k], ref[k]) for k in ref)
        out.put((rank, same, buckets))
    finally:
        dist.destroy_process_group()


def _run(world: int, bad_rank: int = -1):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, bad_rank, out)) for r in range(world)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return results


def test_every_rank_ends_with_the_source_weights_in_several_buckets():
    results = _run(3)
    assert [r[0] for r in results] == [0, 1, 2]
    assert all(r[1] is True for r in results)
    assert all(r[2] >= 3 for r in results)  # 10 KB buckets: the 32 KB matrix alone needs its own


def test_a_rank_with_another_layout_makes_every_rank_raise():
    results = _run(3, bad_rank=2)
    assert all(r[1] == "error" and "different layouts" in r[2] for r in results)


def test_buckets_keep_one_dtype_and_respect_the_size():
    state = _state(0)
    buckets = plan_buckets(state, bucket_mb=0.01)
    assert sorted(n for b in buckets for n in b) == sorted(state)
    for b in buckets:
        assert len({state[n].dtype for n in b}) == 1
        if len(b) > 1:
            assert sum(state[n].numel() * state[n].element_size() for n in b) <= 0.01 * 2**20


if __name__ == "__main__":
    pytest.main([__file__])
