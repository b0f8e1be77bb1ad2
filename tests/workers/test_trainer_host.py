"""The trainer and a generator as two roles of one process (workers/trainer_host.py): each
view routes its calls to its own role, the trainer's calls run one at a time in call order on
one thread beside the generator's, and a lost generator is not replaced alone."""

import asyncio
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rlvla3.runtime.config import ConfigError, load_config
from rlvla3.runtime.session import Session, host_trainer_and_generator
from rlvla3.workers.trainer_host import RoleView, TrainerHost


class FakeRemote:
    def __init__(self, log):
        self.log = log

    def remote(self, *args, **kwargs):
        self.log.append((args, kwargs))
        return "ref"


class FakeHandle:
    """Stands in for a Ray actor handle: `call.remote` records what it was asked."""

    def __init__(self):
        self.log = []
        self.call = FakeRemote(self.log)
        self._actor_id = "host-id"


def test_a_view_calls_its_role_of_the_host():
    host = FakeHandle()
    trainer, generator = RoleView(host, "trainer"), RoleView(host, "generator")
    assert trainer.accumulate.remote(1, n=2) == "ref"
    generator.infer_many.remote(["r"])
    assert host.log == [(("trainer", "accumulate", 1), {"n": 2}), (("generator", "infer_many", ["r"]), {})]
    assert trainer._actor_id == generator._actor_id == "host-id"  # one process: deadlines name the host


def test_a_view_survives_pickling_as_env_workers_receive_it():
    view = pickle.loads(pickle.dumps(RoleView(FakeHandle(), "generator")))
    view.ping.remote()
    assert view.role == "generator" and view.host.log == [(("generator", "ping"), {})]


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown role 'critic'"):
        RoleView(FakeHandle(), "critic")


class SlowTrainer:
    def __init__(self):
        self.calls = []

    def step(self, i, sleep_s=0.0):
        time.sleep(sleep_s)
        self.calls.append((i, threading.current_thread().name))
        return i


class QuickGenerator:
    def __init__(self):
        self.pings = 0

    async def ping(self):
        self.pings += 1
        return True

    def get_version(self):
        return 7


def bare_host():
    host = TrainerHost.__new__(TrainerHost)  # without building the roles' models
    host.trainer, host.generator = SlowTrainer(), QuickGenerator()
    host._train_thread = ThreadPoolExecutor(1, thread_name_prefix="trainer")
    return host


def test_trainer_calls_run_in_order_on_one_thread_and_serving_goes_on_meanwhile():
    host = bare_host()

    async def scenario():
        first = asyncio.ensure_future(host.call("trainer", "step", 0, sleep_s=0.3))
        rest = [asyncio.ensure_future(host.call("trainer", "step", i)) for i in (1, 2)]
        await asyncio.sleep(0.05)
        # the first trainer call is still running: the generator answers anyway
        assert not first.done() and await host.call("generator", "ping") is True
        assert await host.call("generator", "get_version") == 7  # a plain method is answered too
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [0, 1, 2]
    assert [i for i, _ in host.trainer.calls] == [0, 1, 2]
    assert len({name for _, name in host.trainer.calls}) == 1
    with pytest.raises(ValueError, match="unknown role"):
        asyncio.run(host.call("critic", "step", 0))


def test_a_lost_generator_in_the_trainer_process_stops_the_run_with_the_reason():
    s = Session(cfg=None, backend=None)
    host_trainer_and_generator(s, FakeHandle())
    assert s.trainer.role == "trainer" and [g.role for g in s.generators] == ["generator"]
    with pytest.raises(RuntimeError, match="cannot be replaced alone"):
        s.make_generator(0, 1)


@pytest.mark.parametrize("override,named", [
    ("run.mode=sync", "got sync"), ("generator.num_generators=2", "got 2"), ("trainer.num_ranks=2", "got 2"),
    ("generator.weight_transport=collective", "got collective"), ("run.backend=local", "needs run.backend=ray")])
def test_the_config_refuses_what_one_process_cannot_host(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(["run.mode=full", "generator.in_trainer_process=true", override])
    load_config(["run.mode=async-rollout", "generator.in_trainer_process=true"])  # accepted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA stream of its own needs a GPU")
def test_a_generator_on_its_own_stream_serves_and_swaps_as_on_the_default_one_beside_busy_default_work():
    """generator.in_trainer_process on a GPU: forwards (from CUDA graphs) and weight swaps on the
    replica's own stream give what the default stream gives, while the trainer's stream is busy."""
    pytest.importorskip("transformers")
    import numpy as np

    from rlvla3.workers.generator import Generator
    from tests.policies.vla_helpers import obs

    cfg = load_config(["policy=oft-tiny", "policy.device=cuda", "policy.oft.image_size=32",
                       "env.tabletop.image_size=32"]).policy
    own, plain = Generator(0, cfg, seed=1, own_stream=True, cuda_graph_batch=4), Generator(0, cfg, seed=1)
    assert own._serve_stream is not None and plain._serve_stream is None
    o = obs(3, proprio=cfg.oft.proprio_dim)
    busy = torch.randn(4096, 4096, device="cuda")

    def answers(gen):
        for _ in range(20):  # the trainer's kernels queued on the default stream meanwhile
            busy @ busy
        return gen.infer_batch(o, deterministic=True)

    a, b = answers(own), answers(plain)
    assert np.array_equal(a.tokens, b.tokens) and np.allclose(a.values, b.values, atol=1e-4)
    new = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
           for k, v in plain.policy.state_dict().items()}
    from rlvla3.core.types import WeightsMessage

    for gen in (own, plain):
        gen.set_weights(WeightsMessage(5, {k: v.cpu().numpy() for k, v in new.items()}))
    a, b = answers(own), answers(plain)
    assert a.version == b.version == 5
    assert np.array_equal(a.tokens, b.tokens) and np.allclose(a.values, b.values, atol=1e-4)
    assert own.stats()["graph_replays"] >= 2


class StepTrainer:
    """A tiny policy whose every step adds 1 to each weight and publishes a version."""

    def __init__(self):
        from rlvla3.core.timeline import SpanRecorder
        from rlvla3.policies import build_policy

        self.policy = build_policy(load_config([]).policy)
        from rlvla3.distributed.data_parallel import RankContext

        self.version, self.weights_bytes, self.spans = 0, 0, SpanRecorder(enabled=True)
        self.ranks = RankContext(0, 1, "ddp")  # one rank, as the host's trainer always is

    def step(self, sleep_s=0.0):
        time.sleep(sleep_s)
        with torch.no_grad():
            for p in self.policy.model.parameters():
                p.add_(1.0)
        self.version += 1


class HoldingGenerator:
    def __init__(self):
        self.received = []

    async def set_weights(self, msg):
        self.received.append(msg)
        return msg.version


def test_a_local_publication_takes_the_weights_in_the_trainers_call_order_and_keeps_them():
    host = bare_host()
    host.trainer, host.generator = StepTrainer(), HoldingGenerator()
    before = {k: v.clone() for k, v in host.trainer.policy.model.state_dict().items()}

    async def scenario():
        step = asyncio.ensure_future(host.call("trainer", "step", sleep_s=0.2))
        await asyncio.sleep(0.05)  # the step is running: the publication waits for it
        version = await host.publish_local()
        await step
        await host.call("trainer", "step")  # a later step must not reach the published copy
        return version

    assert asyncio.run(scenario()) == 1
    (msg,) = host.generator.received
    assert msg.version == 1
    for k, v in msg.tensors().items():
        if v.is_floating_point():
            assert torch.equal(v, before[k] + 1), k
    assert host.trainer.weights_bytes > 0
    assert [s.name for s in host.trainer.spans.spans()] == ["weight_pack"]  # the bench's pack time
