"""The asynchronous generator without Ray: batching, version tags, swap between batches."""

import asyncio
import time

import numpy as np
import torch

from rlvla3.core.types import ActionRequest, ObsBatch, WeightsMessage
from rlvla3.runtime.config import load_config
from rlvla3.workers.async_generator import AsyncGenerator


def _request(i, n=1):
    rng = np.random.default_rng(i)
    obs = ObsBatch(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.zeros((n, 4), np.float32),
                   ["reach the red block"] * n)
    return ActionRequest(i, 0, i, obs)


def _generator(max_batch, max_wait_ms):
    cfg = load_config(["preset=tiny-test"])
    return AsyncGenerator(0, cfg.policy, 0, 1, max_batch, max_wait_ms), cfg


def test_batches_by_size_and_tags_every_reply():
    async def go():
        gen, _ = _generator(max_batch=4, max_wait_ms=1000.0)
        replies = await asyncio.gather(*[gen.infer(_request(i)) for i in range(8)])
        stats = await gen.stats()
        return replies, stats

    replies, stats = asyncio.run(go())
    assert [r.request_id for r in replies] == list(range(8))
    assert all(r.batch_size == 4 and r.version == 0 for r in replies)
    assert stats["batches"] == 2 and stats["fired_by_size"] == 2


def test_infer_many_answers_each_request_with_its_own_rows():
    async def go():
        gen, _ = _generator(max_batch=64, max_wait_ms=5.0)
        return await gen.infer_many([_request(i, n=i + 1) for i in range(3)]), await gen.stats()

    replies, stats = asyncio.run(go())
    assert [r.request_id for r in replies] == [0, 1, 2]
    assert [r.actions.shape[0] for r in replies] == [1, 2, 3]
    assert all(r.batch_size == 6 for r in replies) and stats["batches"] == 1  # they joined one batch


def test_timeout_fires_a_partial_batch():
    async def go():
        gen, _ = _generator(max_batch=64, max_wait_ms=5.0)
        return await asyncio.gather(*[gen.infer(_request(i, n=2)) for i in range(3)])

    replies = asyncio.run(go())
    assert all(r.batch_size == 6 for r in replies)
    assert all(r.actions.shape[0] == 2 for r in replies)


def test_weights_swap_between_batches_and_replies_carry_the_new_version():
    async def go():
        gen, cfg = _generator(max_batch=2, max_wait_ms=1000.0)
        first = await asyncio.gather(gen.infer(_request(0)), gen.infer(_request(1)))
        state = {k: (v + 1.0).numpy() if v.is_floating_point() else v.numpy()
                 for k, v in gen.replica.policy.state_dict().items()}
        await gen.set_weights(WeightsMessage(5, state))
        second = await asyncio.gather(gen.infer(_request(2)), gen.infer(_request(3)))
        w = gen.replica.policy.model.gauss_head.weight.detach().clone()
        return first, second, w, state, (await gen.stats())

    first, second, w, state, stats = asyncio.run(go())
    assert {r.version for r in first} == {0}
    assert {r.version for r in second} == {5}
    torch.testing.assert_close(w, torch.as_tensor(state["gauss_head.weight"]))
    assert stats["swaps"] == 1


def test_weights_are_staged_beside_inference_and_only_the_swap_waits_for_a_batch():
    """Staging a publication (unpack, copy to the device) runs in the receive thread: a request
    sent meanwhile is answered, with the old version, before the staging ends."""
    async def go():
        gen, _ = _generator(max_batch=1, max_wait_ms=1.0)
        gen.set_trace(True)
        await gen.infer(_request(0))  # the serving loop is up
        stage, staged_at = gen.replica.stage_weights, {}

        def slow_stage(msg):
            time.sleep(0.5)
            out = stage(msg)
            staged_at["t"] = time.perf_counter()
            return out

        gen.replica.stage_weights = slow_stage
        state = {k: v.numpy() for k, v in gen.replica.policy.state_dict().items()}
        publish = asyncio.ensure_future(gen.set_weights(WeightsMessage(3, state)))
        await asyncio.sleep(0.05)
        during = await gen.infer(_request(1))
        answered_at = time.perf_counter()
        await publish
        stale = await gen.set_weights(WeightsMessage(2, state))  # older than the staged one: dropped
        after = await gen.infer(_request(2))
        return during, answered_at, staged_at["t"], after, stale, gen.timeline()

    during, answered_at, staged_at, after, stale, spans = asyncio.run(go())
    assert during.version == 0 and answered_at < staged_at
    assert after.version == 3 and stale == 2
    names = [s.name for s in spans]
    assert names.count("weight_stage") == 1 and names.count("weight_swap") == 1


def test_forward_spans_carry_the_threads_cpu_time():
    """`rlvla3 plan` prices a CPU generator's batch by the CPU its forward span used (not its wall
    time, which holds whatever else ran on the cores)."""
    from rlvla3.workers.generator import Generator

    gen = Generator(0, load_config(["preset=tiny-test"]).policy, 0)
    gen.set_trace(True)
    gen.infer_batch(_request(0, n=4).obs)
    span = gen.timeline()[0]
    assert span.name == "infer_batch" and span.args["n"] == 4
    assert 0.0 < span.args["cpu"] <= span.dur * 1.5 + 0.005  # one thread's CPU: about its wall time or less
