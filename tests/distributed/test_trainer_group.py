"""A 2-rank data-parallel TrainerGroup (Ray actors, gloo) takes the same update as one
Trainer on the same batch and seed: whole batches, streamed micro-batches, skipped steps."""

import numpy as np
import pytest

from rlvla3.runtime.backend import LocalBackend, RayBackend
from rlvla3.distributed.data_parallel import load_optimizer_state_by_name, optimizer_state_by_name
from rlvla3.runtime.config import ConfigError, load_config
from rlvla3.workers.trainer import Trainer
from rlvla3.runtime.trainer_group import TrainerGroup
from tests.distributed.trainer_helpers import assert_same_results, assert_same_weights, config, make_batch, split


@pytest.fixture(scope="module")
def backend():
    b = RayBackend(num_cpus=2)
    yield b
    b.shutdown()


def test_train_batch_matches_one_trainer(backend, tmp_path):
    cfg = config("trainer.num_ranks=2", "algo.decoupled=true")
    batch = make_batch(cfg, stale=4)  # stale rows: the decoupled objective with a proximal policy
    ref = Trainer(cfg, seed=0)
    want = ref.train_batch(batch)
    group = TrainerGroup(backend, cfg, seed=0, torch_threads=1)
    got = backend.get(group.train_batch.remote(batch))
    assert_same_results(got, want)
    assert_same_weights(backend.get(group.get_weights.remote()), ref.get_weights())
    assert_same_weights(backend.get(group.ranks[1].get_weights.remote()), ref.get_weights())  # replicas agree
    assert backend.get(group.stats.remote())["samples_trained"] == ref.stats()["samples_trained"] == 20  # 10 samples x 2 passes, every one trained

    # a non-finite loss on some rows: every rank skips the step and keeps its weights
    before = [backend.get(rank.get_weights.remote()) for rank in group.ranks]
    bad = make_batch(cfg, n=cfg.algo.global_batch, seed=2)  # one global step per pass, holding row 1
    bad.returns[1] = np.nan  # PPO: the value loss of the rank holding row 1 is NaN
    results = backend.get(group.train_batch.remote(bad))
    assert all(r.skipped for r in results)
    for rank, weights in zip(group.ranks, before):
        assert_same_weights(backend.get(rank.get_weights.remote()), weights, atol=0)
        assert backend.get(rank.stats.remote())["steps_skipped"] == 2

    # rank 0 saves; every rank loads the same file back after a further update
    path = str(tmp_path / "ckpt")
    backend.get(group.save.remote(path, {"step": 2}))
    backend.get(group.train_batch.remote(make_batch(cfg, seed=4)))
    assert backend.get(group.load.remote(path)) == {"step": 2}
    for rank, weights in zip(group.ranks, before):
        assert_same_weights(backend.get(rank.get_weights.remote()), weights, atol=0)


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_streamed_update_matches_one_trainer(backend, algo):
    """`accumulate` x k + `step` (the `full` schedule). PPO normalises the advantages over
    the global batch after the first pass (the deferred buffers); GRPO uses them as given."""
    cfg = config("trainer.num_ranks=2", f"algo.name={algo}")
    batch = make_batch(cfg, n=8)
    micros = split(batch)
    ref = Trainer(cfg, seed=0)
    for mb in micros:
        ref.accumulate(mb, 8)
    want = ref.step()
    group = TrainerGroup(backend, cfg, seed=0, torch_threads=1)
    refs = [group.accumulate.remote(mb, 8) for mb in micros]
    got = backend.get(group.step.remote())
    backend.get(refs)
    assert_same_results(got, want)
    assert_same_weights(backend.get(group.get_weights.remote()), ref.get_weights())
    assert_same_weights(backend.get(group.ranks[1].get_weights.remote()), ref.get_weights())


@pytest.mark.parametrize("overrides, message", [
    (["trainer.num_ranks=0"], "trainer.num_ranks must be >= 1"),
    (["trainer.sharding=zero"], "trainer.sharding must be one of"),
    (["trainer.sharding=fsdp"], "trainer.sharding=fsdp supports policy.type=oft only (got 'tiny')"),
    (["trainer.num_ranks=2", "run.backend=local"], "needs run.backend=ray"),
    (["trainer.collective_timeout_s=0"], "trainer.collective_timeout_s must be > 0"),
])
def test_bad_trainer_configs_are_refused(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(["preset=tiny-test", *overrides])
    assert message in str(e.value)


def test_a_group_needs_the_ray_backend():
    with pytest.raises(ValueError, match="run.backend=ray"):
        TrainerGroup(LocalBackend(), config("trainer.num_ranks=2"), seed=0, torch_threads=1)


def test_optimizer_state_by_name_round_trips():
    """How a checkpoint of one plain trainer resumes under fsdp (positions -> parameter names)."""
    cfg = config()
    a, b = Trainer(cfg, seed=0), Trainer(cfg, seed=1)
    a.train_batch(make_batch(cfg, policy=a.policy))
    load_optimizer_state_by_name(b.policy.model, b.opt, optimizer_state_by_name(a.policy.model, a.opt.state_dict()))
    want, got = a.opt.state_dict(), b.opt.state_dict()
    groups = lambda sd: [dict(g, betas=tuple(g["betas"])) for g in sd["param_groups"]]  # noqa: E731
    assert groups(got) == groups(want) and set(got["state"]) == set(want["state"])
    for i, s in want["state"].items():
        for k, v in s.items():
            assert np.array_equal(got["state"][i][k], v), (i, k)


def test_errors_of_the_ranks_reach_the_driver_once(backend, tmp_path):
    group = TrainerGroup(backend, config("trainer.num_ranks=2"), seed=0, torch_threads=1)
    with pytest.raises(Exception, match="no trainer_state.pt"):
        backend.get(group.load.remote(str(tmp_path)))  # every rank fails: rank 0's error, through its ref
    assert backend.get(group.get_version.remote()) == 0  # rank 1's identical error is not raised again
    bad = group.ranks[1].load.remote("/nonexistent")  # as if only rank 1 had failed a group call
    group._pending.append((group.ranks[0].get_version.remote(), [bad]))
    backend.ray.wait([bad])
    with pytest.raises(Exception, match="no trainer_state.pt"):
        group.get_version.remote()  # raised at the next call
