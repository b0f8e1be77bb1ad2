"""FSDP2 over gloo: an OFT-style policy sharded over 2 processes takes the same PPO-style
gradient step as one unsharded process on the whole batch."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("transformers")

from rlvla3.core.types import ObsBatch  # noqa: E402
from rlvla3.distributed.fsdp import full_state_dict, shard_model, transformer_blocks  # noqa: E402
from rlvla3.policies.oft.config import OFTPolicyConfig  # noqa: E402
from rlvla3.policies.oft.policy import OFTPolicy  # noqa: E402

CFG = dict(image_size=32, proprio_dim=4, action_dim=3, chunk_size=4)


def _batch(n=8):
    rng = np.random.default_rng(0)
    obs = ObsBatch(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.normal(size=(n, 4)).astype(np.float32),
                   ["reach the red block", "push the blue cube to the green zone"] * (n // 2))
    tokens = rng.integers(0, 256, (n, 12))
    return obs, tokens


def _step(policy, obs, tokens, lr=0.05):
    opt = torch.optim.SGD(policy.parameters(), lr=lr)
    loss = -policy.evaluate(obs, tokens).logp.mean()
    loss.backward()
    opt.step()


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.distributed.device_mesh import init_device_mesh

        torch.manual_seed(0)
        policy = OFTPolicy(OFTPolicyConfig(**CFG))
        shard_model(policy.model, init_device_mesh("cpu", (world,)))
        obs, tokens = _batch()
        half = np.arange(rank * 4, rank * 4 + 4)
        _step(policy, obs.take(half), tokens[half])  # each rank its half; FSDP averages the gradients
        state = full_state_dict(policy.model)
        if rank == 0:
            out.put({k: v.numpy() for k, v in state.items()})
    finally:
        dist.destroy_process_group()


def test_sharded_step_matches_the_unsharded_step():
    torch.manual_seed(0)
    ref = OFTPolicy(OFTPolicyConfig(**CFG))
    assert len(transformer_blocks(ref.model)) == 4  # 2 vision + 2 decoder layers
    obs, tokens = _batch()
    _step(ref, obs, tokens)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    sharded = out.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
    want = ref.model.state_dict()
    assert set(sharded) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(sharded[k], v.numpy(), atol=1e-5, rtol=1e-4, err_msg=k)
