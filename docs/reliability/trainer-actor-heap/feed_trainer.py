"""Trainer as a Ray actor fed synthetic streamed micro-batches through the object store, with the heap probe."""
import sys, time, numpy as np, ray
from rlvla3.runtime.config import load_config
from rlvla3.runtime.backend import make_backend
from rlvla3.workers.trainer import Trainer
from rlvla3.bench.synthetic import random_obs
from rlvla3.core.types import SampleBatch
from rlvla3.policies import build_policy
minutes, log = float(sys.argv[1]), sys.argv[2]
cfg = load_config(["preset=quickstart", "run.mode=full", f"trainer.memory_log={log}", "trainer.memory_log_every=10"])
b = make_backend("ray")
t = b.actor(Trainer, cfg, 0, 1)
pol = build_policy(cfg.policy)
n, micro = cfg.algo.global_batch, cfg.algo.micro_batch
obs = random_obs(n, 64, pol.proprio_dim, ["reach the red block"])
out = pol.act(obs)
rng = np.random.default_rng(0)
t0, steps = time.time(), 0
while time.time() - t0 < minutes * 60:
    v = b.get(t.get_version.remote())
    batch = SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, out.logp, out.values,
                        rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
                        np.full(n, v), np.arange(n) + steps * n)
    refs = [t.accumulate.remote(batch.take(np.arange(lo, min(n, lo + micro))), n) for lo in range(0, n, micro)]
    b.get(refs); b.get(t.step.remote()); steps += 1
print("global batches", steps, "in", time.time() - t0)
