"""The trainer alone, for the benchmarks' stage bound (`Trainer.bench_train` calls it): kept out
of the training class, as its checkpoints are (trainer_checkpoint.py)."""

from __future__ import annotations

import time

import numpy as np

from rlvla3.core.types import ObsBatch, SampleBatch


def train_alone(trainer, seconds: float, obs: ObsBatch, streaming: bool = False) -> dict:
    """Stage bound: the trainer alone on a synthetic global batch of observations `obs`
    (this changes the weights, so run it in a session of its own). Returns new samples per
    second, each trained update_epochs times as in a real run; `streaming` goes through
    accumulate/step as `full` does (exact stream normalisation costs a second backward)."""
    n, micro = len(obs), trainer.algo.micro_batch
    rng = np.random.default_rng(0)
    out = trainer.policy.act(obs)
    batch = SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, out.logp, out.values,
                        rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
                        np.full(n, trainer.version), np.arange(n))
    done, t0 = 0, time.perf_counter()
    # at least one global batch; rank 0 decides for all (the ranks' loops must match)
    while done == 0 or trainer.ranks.from_main(time.perf_counter() - t0 < seconds):
        batch.versions[:] = trainer.version
        if streaming:
            for lo in range(0, n, micro):
                trainer.accumulate(batch.take(np.arange(lo, min(n, lo + micro))), n)
            trainer.step()
        else:
            trainer.train_batch(batch)
        done += n
    return {"samples": done, "seconds": time.perf_counter() - t0}
