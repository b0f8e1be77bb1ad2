"""Trainer -> generators weight channel (generator.weight_transport=collective) over gloo:
real processes for the channel itself, then whole training runs on Ray."""

import multiprocessing as mp
import threading
import time

import pytest
import torch

from rlvla3.core.placement import plan_placement
from rlvla3.distributed.weight_channel import WeightReceiver, WeightSender, layout_of
from rlvla3.runtime.config import ConfigError, load_config
from rlvla3.runtime.train_loop import train


def _state(seed: int, extra: bool = False):
    g = torch.Generator().manual_seed(seed)
    s = {"a.weight": torch.randn(300, 200, generator=g), "a.bias": torch.randn(300, generator=g),
         "half": torch.randn(16, generator=g).to(torch.bfloat16), "steps": torch.tensor([seed])}
    if extra:
        s["b.weight"] = torch.zeros(3)
    return s


def _receiver(rank: int, port: int, world: int, sends: int, bad: bool, out) -> None:
    try:
        rx = WeightReceiver("127.0.0.1", port, rank, world, 0, "gloo", "cpu", layout_of(_state(99, extra=bad)), 30)
        for _ in range(sends):
            version, state = rx.receive(0.05)
            ref = _state(version)
            out.put((rank, version, all(torch.equal(state[k], ref[k]) for k in ref)))
    except ValueError as e:
        out.put((rank, "error", str(e)))


def _start(world: int, sends: int, bad_rank: int = -1):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    sender = WeightSender(timeout_s=30)
    _, port = sender.listen()
    procs = [ctx.Process(target=_receiver, args=(r, port, world, sends, r == bad_rank, out), daemon=True)
             for r in range(1, world)]
    for p in procs:
        p.start()
    sender.join(0, world, "gloo", "cpu")
    return sender, procs, out


def test_every_generator_receives_each_version_exactly_in_buckets():
    sender, procs, out = _start(world=3, sends=2)
    time.sleep(1.0)  # the receivers wait for the announcement, not in the collective
    first = sender.send(_state(5), 5, bucket_mb=0.05)
    second = sender.send(_state(6), 6, bucket_mb=0.05)
    got = sorted(out.get(timeout=60) for _ in range(4))
    for p in procs:
        p.join(timeout=30)
    assert got == [(1, 5, True), (1, 6, True), (2, 5, True), (2, 6, True)]
    assert first["buckets"] >= 3 and first["bytes"] == sum(v.numel() * v.element_size() for v in _state(5).values())
    assert second["version"] == 6 and second["epoch"] == 0


def test_a_generator_with_another_layout_makes_every_member_raise():
    sender, procs, out = _start(world=3, sends=1, bad_rank=2)
    with pytest.raises(ValueError, match="different layouts"):
        sender.send(_state(5), 5, bucket_mb=0.05)
    got = sorted(out.get(timeout=60) for _ in range(2))
    assert [r for r, kind, _ in got if kind == "error"] == [1, 2]


def test_a_receive_of_an_abandoned_epoch_returns_none():
    sender = WeightSender(timeout_s=30)
    _, port = sender.listen()
    holder = {}

    def member():
        holder["rx"] = WeightReceiver("127.0.0.1", port, 1, 2, 0, "gloo", "cpu", layout_of(_state(0)), 30)

    t = threading.Thread(target=member)
    t.start()
    sender.join(0, 2, "gloo", "cpu")
    t.join(timeout=30)
    rx = holder["rx"]
    result = {}
    waiting = threading.Thread(target=lambda: result.setdefault("r", rx.receive(0.05)))
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive(), "a receive must wait for a send"
    rx.abandoned.set()
    waiting.join(timeout=5)
    assert not waiting.is_alive() and result["r"] is None


def test_nccl_only_when_every_member_has_a_gpu_of_its_own():
    assert plan_placement("disaggregated", 2, 1, 1).weight_channel_backend() == "nccl"
    assert plan_placement("colocated", 1, 1, 1).weight_channel_backend() == "gloo"
    assert plan_placement("disaggregated", 2, 1, 2).weight_channel_backend() == "gloo"  # two generators, one GPU


def test_collective_transport_needs_ray_and_a_known_name():
    with pytest.raises(ConfigError, match="weight_transport"):
        load_config(["preset=tiny-test", "generator.weight_transport=nccl"])
    with pytest.raises(ConfigError, match="run.backend=ray"):
        load_config(["preset=tiny-test", "run.backend=local", "generator.weight_transport=collective"])


@pytest.mark.parametrize("mode", ["sync", "full"])
def test_training_publishes_over_the_channel(tmp_path, mode):
    cfg = load_config(["preset=tiny-test", f"run.mode={mode}", f"run.output_dir={tmp_path}", "run.name=w",
                       "run.total_env_steps=600", "generator.weight_transport=collective",
                       "generator.num_generators=2", "generator.weight_bucket_mb=0.1"])
    summary = train(cfg)
    w = summary["weights"]
    assert w["transport"] == "collective" and w["backend"] == "gloo" and w["epochs"] == 1
    assert w["publishes"] >= 1 and w["failed_sends"] == 0
    assert w["sends_timed"] >= 1 and w["bytes_per_send"] > 0
    # the generators follow the trainer to (nearly: the last send may be in flight) its last version
    last = summary["policy_version"]
    assert last >= 2 and all(last - 1 <= v <= last for v in w["generator_versions"])
    if mode == "full":
        acc = summary["async"]
        assert max(int(k) for k in acc["staleness_hist"]) <= cfg.algo.staleness
        assert acc["samples_trained"] == summary["samples_trained"] > 0


def test_a_dead_generator_gets_a_new_channel_epoch_and_the_run_goes_on(tmp_path):
    cfg = load_config(["preset=tiny-test", "run.mode=full", f"run.output_dir={tmp_path}", "run.name=wdead",
                       "run.total_env_steps=1200", "generator.weight_transport=collective",
                       "generator.num_generators=2", "faults.generator_crash_after_requests=30"])
    summary = train(cfg)
    w = summary["weights"]
    assert summary["faults"]["generator_restarts"] == 1
    assert w["epochs"] == 2, "the replacement joined a new channel epoch"
    assert summary["env_steps"] >= 1200 and summary["samples_trained"] > 0
    # both replicas, the replacement too, follow the trainer to the end over the new epoch
    last = summary["policy_version"]
    assert last >= 5 and all(last - 1 <= v <= last for v in w["generator_versions"])
    acc = summary["async"]
    assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                       + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_a_data_parallel_trainer_publishes_from_rank_0(tmp_path, sharding):
    policy = ["policy=oft-tiny"] if sharding == "fsdp" else []
    cfg = load_config(["preset=tiny-test", "run.mode=full", f"run.output_dir={tmp_path}", "run.name=wdp",
                       "run.total_env_steps=250", "generator.weight_transport=collective", "trainer.num_ranks=2",
                       f"trainer.sharding={sharding}", *policy])
    summary = train(cfg)
    w = summary["weights"]
    last = summary["policy_version"]
    assert w["failed_sends"] == 0 and w["sends_timed"] >= 2
    assert last >= 2 and all(last - 1 <= v <= last for v in w["generator_versions"])
