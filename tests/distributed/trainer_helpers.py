"""Shared builders for the data-parallel trainer tests (tiny configs, CPU)."""

import numpy as np
import pytest

from rlvla3.bench.synthetic import random_obs
from rlvla3.core.types import SampleBatch
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config

INSTRUCTIONS = ["reach the red block", "reach the blue block"]
# micro-batches of 3 rows: shares of 2 and 1 rows, uneven on purpose; 2 passes: 2 permutations
TINY = ["preset=tiny-test", "algo.micro_batch=3", "algo.global_batch=8", "algo.update_epochs=2"]


def config(*extra):
    return load_config([*TINY, *extra])


def make_batch(cfg, n=10, stale=0, seed=1, policy=None) -> SampleBatch:
    """Rollout-like samples of `policy` (default: the config's, built); the first `stale` rows
    one version old."""
    rng = np.random.default_rng(seed)
    pol = cfg.policy.tiny if cfg.policy.type == "tiny" else cfg.policy.oft
    obs = random_obs(n, pol.image_size, pol.proprio_dim, INSTRUCTIONS, seed=seed)
    out = (policy or build_policy(cfg.policy)).act(obs)
    logp = (out.logp + rng.normal(0, 0.05, out.logp.shape)).astype(np.float32)  # ratios != 1
    versions = np.where(np.arange(n) < stale, -1, 0)
    return SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, logp, out.values,
                       rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32), versions,
                       np.arange(n))


def split(batch, bounds=(0, 3, 6, 7, 8)):
    """Streamed micro-batches of 3, 3, 1 and 1 rows: a 1-row micro-batch leaves one of 2
    ranks without rows (ddp: it adds nothing; fsdp: it runs a weight-0 row)."""
    return [batch.take(np.arange(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def assert_same_weights(got, want, atol=1e-5):
    assert got.version == want.version
    assert set(got.state) == set(want.state)
    for k, v in want.state.items():
        np.testing.assert_allclose(got.state[k], v, atol=atol, rtol=1e-4, err_msg=k)


def assert_same_results(got, want, skip=()):
    assert [(r.samples, r.skipped, r.version) for r in got] == [(r.samples, r.skipped, r.version) for r in want]
    for g, w in zip(got, want):
        assert set(g.metrics) == set(w.metrics)
        for k, v in w.metrics.items():  # merged over the ranks: the single-process statistics
            if k in skip:
                continue
            assert g.metrics[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
