"""A 2-rank data-parallel TrainerGroup (Ray actors, gloo) takes the same update as one
Trainer on the same batch and seed: whole batches, streamed micro-batches, skipped steps."""

import numpy as np
import pytest

from rlvla3.core.types import ObsBatch, SampleBatch
from rlvla3.policies import build_policy
from rlvla3.runtime.backend import RayBackend
from rlvla3.runtime.config import load_config
from rlvla3.workers.trainer import Trainer
from rlvla3.workers.trainer_group import TrainerGroup

INSTRUCTIONS = ["reach the red block", "reach the blue block"]
# micro-batches of 3 rows: shares of 2 and 1 rows, uneven on purpose; 2 passes: 2 permutations
TINY = ["preset=tiny-test", "algo.micro_batch=3", "algo.global_batch=8", "algo.update_epochs=2"]


def config(*extra):
    return load_config([*TINY, *extra])


def make_batch(cfg, n=10, stale=0, seed=1) -> SampleBatch:
    """Rollout-like samples of the config's policy; the first `stale` rows one version old."""
    rng = np.random.default_rng(seed)
    pol = cfg.policy.tiny if cfg.policy.type == "tiny" else cfg.policy.oft
    obs = ObsBatch.random(n, pol.image_size, pol.proprio_dim, INSTRUCTIONS, seed=seed)
    out = build_policy(cfg.policy).act(obs)
    logp = (out.logp + rng.normal(0, 0.05, out.logp.shape)).astype(np.float32)  # ratios != 1
    versions = np.where(np.arange(n) < stale, -1, 0)
    return SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, logp, out.values,
                       rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32), versions,
                       np.arange(n))


@pytest.fixture(scope="module")
def backend():
    b = RayBackend(num_cpus=2)
    yield b
    b.shutdown()


def assert_same_weights(got, want, atol=1e-5):
    assert got.version == want.version
    assert set(got.state) == set(want.state)
    for k, v in want.state.items():
        np.testing.assert_allclose(got.state[k], v, atol=atol, rtol=1e-4, err_msg=k)


def assert_same_results(got, want):
    assert [(r.samples, r.skipped, r.version) for r in got] == [(r.samples, r.skipped, r.version) for r in want]
    for g, w in zip(got, want):
        assert set(g.metrics) == set(w.metrics)
        for k, v in w.metrics.items():  # merged over the ranks: the single-process statistics
            assert g.metrics[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k


def test_train_batch_matches_one_trainer(backend):
    cfg = config("trainer.num_ranks=2")
    batch = make_batch(cfg, stale=4)  # stale rows: the decoupled objective with a proximal policy
    ref = Trainer(cfg, seed=0)
    want = ref.train_batch(batch)
    group = TrainerGroup(backend, cfg, seed=0, torch_threads=1)
    got = backend.get(group.train_batch.remote(batch))
    assert_same_results(got, want)
    assert_same_weights(backend.get(group.get_weights.remote()), ref.get_weights())
    assert_same_weights(backend.get(group.ranks[1].get_weights.remote()), ref.get_weights())  # replicas agree
    assert backend.get(group.stats.remote())["samples_trained"] == ref.stats()["samples_trained"] == 16

    # a non-finite loss on some rows: every rank skips the step and keeps its weights
    before = ref.get_weights()
    bad = make_batch(cfg, seed=2)
    bad.returns[1] = np.nan  # PPO: the value loss of the rank holding row 1 is NaN
    results = backend.get(group.train_batch.remote(bad))
    assert all(r.skipped for r in results)
    for rank in group.ranks:
        assert_same_weights(backend.get(rank.get_weights.remote()), before, atol=0)
        assert backend.get(rank.stats.remote())["steps_skipped"] == 2


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_streamed_update_matches_one_trainer(backend, algo):
    """`accumulate` x k + `step` (the `full` schedule). PPO normalises the advantages over
    the global batch after the first pass (the deferred buffers); GRPO uses them as given."""
    cfg = config("trainer.num_ranks=2", f"algo.name={algo}")
    batch = make_batch(cfg, n=8)
    micros = [batch.take(np.arange(lo, min(8, lo + 3))) for lo in range(0, 8, 3)]
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
