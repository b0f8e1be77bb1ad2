import sys, time, numpy as np, torch
if sys.argv[1] == "off":
    torch.backends.mkldnn.enabled = False
from rlvla3.bench.synthetic import random_obs
from rlvla3.core.types import SampleBatch
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config
from rlvla3.workers.trainer import Trainer
cfg = load_config(["preset=quickstart", "run.mode=full", "algo.staleness=2"])
t = Trainer(cfg, 0, 1)
pol = build_policy(cfg.policy)
n, micro = cfg.algo.global_batch, cfg.algo.micro_batch
obs = random_obs(n, 64, pol.proprio_dim, ["reach the red block"])
out = pol.act(obs)
rng = np.random.default_rng(0)
def one(k):
    v = t.version
    batch = SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, out.logp, out.values,
                        rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
                        np.maximum(v - rng.integers(0, 3, n), 0), np.arange(n) + k * n)
    for lo in range(0, n, micro):
        t.accumulate(batch.take(np.arange(lo, min(n, lo + micro))), n)
    t.step()
for k in range(3): one(k)
t0 = time.perf_counter(); c0 = time.process_time()
for k in range(12): one(k)
dt = time.perf_counter() - t0
print(sys.argv[1], "new samples/s", round(12 * n / dt, 1), "cpu/wall", round((time.process_time() - c0) / dt, 2))
