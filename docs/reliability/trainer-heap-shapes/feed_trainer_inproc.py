"""Trainer in this process (no Ray) fed synthetic streamed global batches, with the heap probe.

usage: python feed_trainer_inproc.py MINUTES LOG.jsonl fresh|stale|varied
- fresh: every row at the trainer's current version (the on-policy path)
- stale: rows one or two versions behind, as under algo.staleness=2 (the decoupled-PPO path)
- varied: stale rows and micro-batches of random size, as when stale rows are filtered out
"""
import sys
import time

import numpy as np

from rlvla3.bench.synthetic import random_obs
from rlvla3.core.types import SampleBatch
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config
from rlvla3.workers.trainer import Trainer

minutes, log, kind = float(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = load_config(["preset=quickstart", "run.mode=full", "algo.staleness=2", f"trainer.memory_log={log}",
                   "trainer.memory_log_every=10"])
t = Trainer(cfg, 0, 1)
pol = build_policy(cfg.policy)
n, micro = cfg.algo.global_batch, cfg.algo.micro_batch
obs = random_obs(n, 64, pol.proprio_dim, ["reach the red block"])
out = pol.act(obs)
rng = np.random.default_rng(0)
t0, steps = time.time(), 0
while time.time() - t0 < minutes * 60:
    v = t.version
    lag = np.zeros(n, np.int64) if kind == "fresh" else rng.integers(0, 3, n)
    batch = SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, out.logp, out.values,
                        rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
                        np.maximum(v - lag, 0), np.arange(n) + steps * n)
    if kind == "varied":
        cuts = np.sort(rng.choice(np.arange(1, n), size=n // micro + 2, replace=False))
        bounds = [0, *cuts.tolist(), n]
    else:
        bounds = list(range(0, n, micro)) + [n]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        t.accumulate(batch.take(np.arange(lo, hi)), n)
    t.step()
    steps += 1
print(kind, "global batches", steps, "in", round(time.time() - t0, 1), "s")
