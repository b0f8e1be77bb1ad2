"""Trainer: PPO/GRPO updates with micro-batches and gradient accumulation.

Two ways in, same maths (update_epochs passes, one optimizer step per global batch and pass):
- `train_batch(batch)`: the whole-batch update (sync, async-train, async-rollout);
- `accumulate(micro)` + `step()`: the streaming update: the first pass runs forward/backward
  on each micro-batch as soon as it arrives; `step()` applies it and runs the remaining
  passes on the held global batch. A single pass learned nothing on the quick-start task
  (measured: success fell 0.53 -> 0.35 within 40k env steps, with or without streaming),
  so streaming keeps the passes rather than changing the algorithm.
The policy version counts weight publications: one per `train_batch` / streamed global
batch that applied at least one step (`updates` counts optimizer steps). Stale samples
(behaviour version < current version) are clipped around the policy that acted, as fresh
ones are; with `algo.decoupled` they use the decoupled PPO objective with the current
policy, frozen at the start of the update, as the proximal policy.

Data parallel (`trainer.num_ranks` > 1, see `runtime/trainer_group.py`): every rank gets
every call and the whole batch, runs the same loop and computes the loss on its share of
each micro-batch (`distributed/data_parallel.py` holds the collectives).
"""

from __future__ import annotations

import math
import time
from typing import List, Optional

import numpy as np
import torch

from rlvla3.core.losses import MicroLoss, normalize
from rlvla3.core.types import ObsBatch, SampleBatch, TrainResult, WeightsMessage
from rlvla3.distributed.data_parallel import RankContext, rendezvous_address
from rlvla3.policies import build_policy
from rlvla3.process.determinism import use_deterministic_kernels
from rlvla3.process.heap import release_free_memory
from rlvla3.workers import trainer_weights
from rlvla3.workers.fault_hooks import crash_process_if
from rlvla3.workers.reference_policy import ReferencePolicy
from rlvla3.workers.role import Role
from rlvla3.workers.trainer_bench import train_alone
from rlvla3.workers.trainer_checkpoint import load_checkpoint, save_checkpoint


_OWN_FORWARD = object()  # proximal log-probs: those of the pass being computed (see accumulate)


class Trainer(Role):
    def __init__(self, cfg, seed: int, torch_threads: int = 1, rank: int = 0, world: int = 1):
        super().__init__(torch_threads)
        torch.manual_seed(seed)
        if cfg.run.deterministic:
            use_deterministic_kernels()
        self.cfg = cfg
        self.algo = cfg.algo
        self.policy = build_policy(cfg.policy)
        self.reference = ReferencePolicy(self.policy) if cfg.algo.kl_ref_coef > 0 else None  # before any resume
        self.ranks = RankContext(rank, world, cfg.trainer.sharding)  # world 1: no process group
        self.opt = self._make_optimizer()
        self.rng = np.random.default_rng(seed)  # the same seed on every rank: the same permutations
        self.version = self.policy.version
        self.samples_trained = self.steps_skipped = 0
        self.updates = 0  # optimizer steps taken by this trainer (critic warm-up counts these)
        self._acc: List[tuple] = []  # (rows this rank trained, stats) per micro-batch
        self._acc_samples = 0
        self._held: List[tuple] = []  # (micro, adv, prox, global size) of the streamed global batch
        self._g_adv: Optional[List[torch.Tensor]] = None  # deferred-normalisation gradient buffers
        self._g_one: Optional[List[torch.Tensor]] = None  # exact mode only
        self.adv_baseline = 0.0  # baseline mode: mean raw advantage of the previous streamed batch
        self._first_pass_held = False  # fsdp: the deferred first pass runs at step() (see accumulate)
        self._own_prox: Optional[torch.Tensor] = None
        self.train_time_s, self.weights_bytes = 0.0, 0  # weights_bytes: what get_weights last packed
        t = cfg.trainer
        self.memory_probe = None
        self.weight_sender = None  # the generators' weight channel (weights_listen)
        if t.memory_log and rank == 0:
            from rlvla3.workers.memory_probe import MemoryProbe

            self.memory_probe = MemoryProbe(t.memory_log, trace_python=t.memory_log_python)

    def _make_optimizer(self):
        return torch.optim.AdamW(self.policy.parameters(), lr=self.algo.lr, eps=1e-5, weight_decay=0.0)

    # --- data-parallel set-up (TrainerGroup) -----------------------------------------------
    def rendezvous(self):
        """Rank 0: where the other ranks meet it."""
        return rendezvous_address()

    def setup_distributed(self, addr: str, port: int) -> None:
        """Join the process group (every rank at once), take rank 0's weights, shard (fsdp)."""
        self.ranks.init(addr, port, self.policy.device, self.cfg.trainer.collective_timeout_s)
        self.ranks.prepare(self.policy)
        self.opt = self._make_optimizer()  # after sharding: fsdp replaced the parameters

    # --- weights (workers/trainer_weights.py) ---------------------------------------------
    def get_weights(self, dtype: str = "float32") -> Optional[WeightsMessage]:
        """`dtype`: what the arrays carry (core/weight_wire.py; the publisher resolves generator.weight_dtype)."""
        return trainer_weights.pack_weights(self, dtype)

    def get_version(self) -> int:
        return self.version

    def weights_listen(self):
        """Rank 0: the generators' weight channel (generator.weight_transport=collective)."""
        return trainer_weights.listen(self)

    def weights_join(self, epoch: int, world: int, backend: str) -> None:
        self.weight_sender.join(epoch, world, backend, self.policy.device)

    def weights_send(self) -> Optional[dict]:
        return trainer_weights.send(self)

    # --- losses --------------------------------------------------------------------------
    def _prox_logp(self, mb: SampleBatch) -> torch.Tensor:
        with torch.no_grad():
            return self.policy.evaluate(mb.obs(), mb.tokens).logp

    def _micro_loss(self, mb: SampleBatch, adv: np.ndarray, prox: Optional[torch.Tensor], weight: float,
                    deferred: bool = False):
        """Forward/backward of one micro-batch. `deferred`: `adv` are raw advantages of a
        streamed global batch whose statistics are not known yet; the policy-gradient parts
        linear in the advantage and in a constant go to separate buffers (see `_apply`)."""
        a = self.algo
        out = self.policy.evaluate(mb.obs(), mb.tokens)
        if prox is _OWN_FORWARD:
            prox = self._own_prox = out.logp.detach()
        warmup = a.name == "ppo" and self.updates < a.critic_warmup_steps
        p = self.policy
        ref = self.reference.logp(p, mb) if self.reference is not None else None
        micro = MicroLoss(a, out, mb, prox, p.chunk_size, p.action_dim, p.device, warmup, ref)
        policy_loss, rest = micro.policy_loss, micro.rest
        pg, stats = policy_loss(adv)
        loss = (pg * 0.0 if warmup else pg) + rest  # warm-up: advantages from a random critic are noise
        stats.update(micro.stats, policy_loss=float(pg.detach()), loss=float(loss.detach()))
        if deferred and not warmup:
            # First pass: the ratio is 1, so the surrogate's gradient is linear in the advantage:
            # grad(normalised A) = (grad(A) - mean * grad(1)) / std, once the batch is complete.
            # Baseline mode puts the previous batch's mean in place of this one's: grad(1) is a
            # score-function sum with zero expectation, so that only adds variance.
            if self._g_one is None:
                pg, _ = policy_loss(np.asarray(adv, np.float32) - np.float32(self.adv_baseline))
                terms = ((self._g_adv, pg),)
            else:
                terms = ((self._g_adv, pg), (self._g_one, policy_loss(np.ones(len(mb), np.float32))[0]))
            params = self._trainable()
            for buf, term in terms:
                grads = torch.autograd.grad(term * weight, params, retain_graph=True, allow_unused=True)
                for b, g in zip(buf, grads):
                    if g is not None:
                        b.add_(g)
            if rest.requires_grad:
                (rest * weight).backward()
        else:
            (loss * weight).backward()
        return stats

    # --- streaming API -------------------------------------------------------------------
    def accumulate(self, micro: SampleBatch, global_size: int, adv: Optional[np.ndarray] = None) -> dict:
        """Forward/backward one micro-batch of a global batch of `global_size` samples.
        `adv`: advantages to use as they are; None: the micro-batch's own advantages, which
        (PPO with normalisation) are normalised over the whole global batch at `step()`
        (`algo.stream_normalization`)."""
        t0, w0 = time.perf_counter(), time.time()
        deferred = adv is None and self._normalizes()
        if adv is None:
            adv = micro.advantages
        if deferred and self._g_adv is None:
            params = self._trainable()
            self._g_adv = [torch.zeros_like(p) for p in params]
            if self.algo.stream_normalization == "exact":
                self._g_one = [torch.zeros_like(p) for p in params]
        needs_prox = self._needs_proximal(micro.versions)
        held_first_pass = deferred and self.ranks.sharded
        # The proximal policy is the weights at the start of the global batch, which the first
        # pass still has: one trainer reads it off the first pass's own forward instead of a
        # second one. With several ranks each computes only its rows, and the later passes
        # re-shuffle rows across ranks, so every rank needs all of them: a separate forward.
        own = needs_prox and self.ranks.world == 1 and not held_first_pass
        prox = (_OWN_FORWARD if own else self._prox_logp(micro)) if needs_prox else None
        self._held.append((micro, np.asarray(adv, np.float32), prox, global_size))
        self._acc_samples += len(micro)
        if held_first_pass:
            # fsdp reduces gradients inside backward, so the two advantage-linear buffers cannot
            # be taken with autograd.grad: the first pass waits for the batch statistics.
            self._first_pass_held = True
            self.train_time_s += time.perf_counter() - t0
            return {}
        stats = self._first_pass(micro, adv, prox, len(micro) / global_size, deferred, w0)
        if own:
            self._held[-1] = self._held[-1][:2] + (self._own_prox,) + self._held[-1][3:]
        self.train_time_s += time.perf_counter() - t0
        return stats

    def _first_pass(self, micro: SampleBatch, adv: np.ndarray, prox, weight: float, deferred: bool, w0: float) -> dict:
        stats = self._rank_loss(micro, adv, prox, weight, deferred,
                                extra={"staleness_mean": float(np.mean(self.version - micro.versions))})
        self.spans.record("trainer", "micro_batch", w0, time.time() - w0, n=len(micro), new=True,
                          lag=self._lag(micro.versions))
        return stats

    def _rank_loss(self, mb: SampleBatch, adv: np.ndarray, prox: Optional[torch.Tensor], weight: float,
                   deferred: bool = False, extra: Optional[dict] = None) -> dict:
        """`_micro_loss` on this rank's rows of `mb` (all of them on one rank). `weight` is
        the whole micro-batch's share of the global batch; each rank takes its rows' part,
        so the ranks' gradients sum to the single-process one."""
        rows, dummy = self.ranks.share(len(mb))
        if len(rows) == 0:
            stats = {}  # ddp: nothing to add; the all-reduce at the step still counts this rank
        else:
            part = 0.0 if dummy else weight * (len(rows) / len(mb)) * self.ranks.loss_scale  # x1.0 on one rank
            if len(rows) < len(mb):
                prox = prox[torch.as_tensor(rows, device=prox.device)] if prox is not None else None
                mb, adv = mb.take(rows), np.asarray(adv)[rows]
            stats = self._micro_loss(mb, adv, prox, part, deferred)
        if stats:
            stats.update(extra or {})
        self._acc.append((0 if dummy else len(rows), stats))
        return stats

    def step(self) -> List[TrainResult]:
        """End a streamed global batch: apply the first pass, then run the other passes on it."""
        held, self._held = self._held, []
        adv = np.concatenate([h[1] for h in held]) if held else np.zeros(0, np.float32)
        offset = None  # baseline mode: the first pass's baseline (the last batch's mean) off this batch's, in stds
        if self._first_pass_held:  # fsdp streaming: the first pass, with the advantages normalised
            self._first_pass_held, offset = False, 0.0
            adv = self._advantages(adv)
            lo = 0
            for micro, _, prox, global_size in held:
                t0, w0 = time.perf_counter(), time.time()
                self._first_pass(micro, adv[lo:lo + len(micro)], prox, len(micro) / global_size, False, w0)
                lo += len(micro)
                self.train_time_s += time.perf_counter() - t0
        elif self._g_adv is not None:  # deferred normalisation: now the batch statistics are known
            mean, std = float(adv.mean()), float(adv.std())
            scale = 1.0 / std if std >= 1e-8 else 0.0  # constant batch: no policy signal (as `normalize`)
            params = self._trainable()
            # Linear in the buffers: each rank combines its own, `_apply` sums the results (ddp).
            for k, (p, ga) in enumerate(zip(params, self._g_adv)):
                g = (ga - mean * self._g_one[k] if self._g_one is not None else ga) * scale
                p.grad = g if p.grad is None else p.grad + g
            offset = 0.0 if self._g_one is not None else (mean - self.adv_baseline) * scale
            self._g_adv = self._g_one = None
            self.adv_baseline = mean
            adv = self._advantages(adv)
        results = [self._apply()]
        if offset is not None:
            results[0].metrics["adv_baseline_offset"] = float(offset)
        if held and self.algo.update_epochs > 1:
            batch = SampleBatch.concat([h[0] for h in held])
            prox = None
            if any(h[2] is not None for h in held):  # fresh micro-batches: behaviour = proximal policy
                prox = torch.cat([h[2] if h[2] is not None else torch.tensor(h[0].logp, device=self.policy.device)
                                  for h in held])
            for _ in range(self.algo.update_epochs - 1):
                results += self._epoch(batch, adv, prox, len(batch))
        return self._publishable(results)

    def _publishable(self, results: List[TrainResult]) -> List[TrainResult]:
        """One new policy version per update that applied at least one optimizer step."""
        crash_process_if(self.cfg.faults.trainer_crash_after_steps, self.updates)  # chaos: a trainer that dies
        if any(not r.skipped for r in results):
            self.version += 1
            self.policy.version = self.version
            self.spans.record("trainer", "version_ready", time.time(), 0.0, version=self.version)  # (bench: lag)
        return results

    def _apply(self) -> TrainResult:
        """Apply the accumulated gradient; skipped (and counted) if it is not finite."""
        t0, w0 = time.perf_counter(), time.time()
        self.ranks.reduce_grads(self._trainable())  # ddp: sum over ranks, once per step
        params = [p for p in self.policy.parameters() if p.grad is not None]
        grad_norm = self.ranks.clip_grad_norm(params, self.algo.max_grad_norm) if params else torch.tensor(0.0)
        acc = self.ranks.merge_stats(self._acc)  # whole micro-batches, the same on every rank
        losses_finite = all(math.isfinite(s["loss"]) for s in acc)
        skipped = self.ranks.any(not (losses_finite and torch.isfinite(grad_norm)))
        if skipped:
            self.steps_skipped += 1
        else:
            self.opt.step()
            self.updates += 1
        self.opt.zero_grad(set_to_none=True)
        if self.cfg.trainer.trim_heap_every > 0 and self.updates % self.cfg.trainer.trim_heap_every == 0:
            release_free_memory()
        if self.memory_probe is not None and self.updates % self.cfg.trainer.memory_log_every == 0:
            self.memory_probe.record(updates=self.updates, samples_trained=self.samples_trained)
        # micro-batches with and without stale samples report different keys
        keys = sorted({k for s in acc for k in s})
        metrics = {k: float(np.mean([s[k] for s in acc if k in s])) for k in keys}
        metrics["grad_norm"] = float(grad_norm)
        n = self._acc_samples
        self.samples_trained += 0 if skipped else n
        self._acc, self._acc_samples = [], 0
        self.train_time_s += time.perf_counter() - t0
        self.spans.record("trainer", "optimizer_step", w0, time.time() - w0)
        return TrainResult(self.version + (0 if skipped else 1), n, metrics, skipped=skipped,
                           note="non-finite loss or gradient: step skipped" if skipped else None)

    # --- whole-batch update (sync, async-train, async-rollout) ---------------------------
    def train_batch(self, batch: SampleBatch) -> List[TrainResult]:
        """update_epochs passes over `batch`, one optimizer step per global batch. Decoupled PPO
        on stale samples: the proximal policy is the current one, frozen before the first step."""
        a = self.algo
        n = len(batch)
        adv_all = self._advantages(batch.advantages)
        prox_all = None
        if self._needs_proximal(batch.versions):
            prox_all = torch.cat([self._prox_logp(batch.take(np.arange(s, min(s + a.micro_batch, n))))
                                  for s in range(0, n, a.micro_batch)])
        gb = min(a.global_batch, n)
        results = []
        for epoch in range(a.update_epochs):
            results += self._epoch(batch, adv_all, prox_all, gb, first_pass=epoch == 0)
        return self._publishable(results)

    def _epoch(self, batch: SampleBatch, adv_all: np.ndarray, prox_all: Optional[torch.Tensor],
               gb: int, first_pass: bool = False) -> List[TrainResult]:
        """One pass over `batch` in a random order, every sample once: ceil(n / gb) optimizer
        steps on near-equal global batches (n = 700, gb = 240: 234 + 233 + 233), so none is
        left out and what the schedules report as trained is true."""
        perm = self.rng.permutation(len(batch))
        results = []
        for idx in np.array_split(perm, max(1, -(-len(batch) // gb))):
            for ms in range(0, len(idx), self.algo.micro_batch):
                sub = idx[ms:ms + self.algo.micro_batch]
                t0, w0 = time.perf_counter(), time.time()
                prox = prox_all[torch.as_tensor(sub, device=prox_all.device)] if prox_all is not None else None
                self._rank_loss(batch.take(sub), adv_all[sub], prox, len(sub) / len(idx))
                self._acc_samples += len(sub)
                self.train_time_s += time.perf_counter() - t0
                self.spans.record("trainer", "micro_batch", w0, time.time() - w0, n=len(sub), new=first_pass,
                                  lag=self._lag(batch.versions[sub]) if first_pass else {})
            results.append(self._apply())
        return results

    def _trainable(self) -> List[torch.Tensor]:
        return [p for p in self.policy.parameters() if p.requires_grad]

    def _lag(self, versions: np.ndarray) -> dict:
        """Staleness histogram {versions behind: samples} of samples trained for the first time."""
        if not self.spans.enabled:
            return {}
        lags, counts = np.unique(self.version - np.asarray(versions), return_counts=True)
        return {int(k): int(c) for k, c in zip(lags, counts)}

    def _needs_proximal(self, versions: np.ndarray) -> bool:
        """The decoupled objective's proximal log-probs are needed: it is on and some sample is stale."""
        return self.algo.decoupled and bool(np.any(np.asarray(versions) < self.version))

    def _normalizes(self) -> bool:
        # GRPO advantages are already normalised within each group.
        return self.algo.normalize_advantages and self.algo.name == "ppo"

    def _advantages(self, adv: np.ndarray) -> np.ndarray:
        return normalize(adv) if self._normalizes() and len(adv) > 1 else adv

    # --- checkpoints (workers/trainer_checkpoint.py) ---------------------------------------
    def save(self, path: str, extra: Optional[dict] = None) -> None:
        save_checkpoint(self, path, extra)

    def load(self, path: str) -> dict:
        return load_checkpoint(self, path)

    # --- benchmarks ------------------------------------------------------------------------
    def bench_train(self, seconds: float, obs: ObsBatch, streaming: bool = False) -> dict:
        """Stage bound: the trainer alone (workers/trainer_bench.py)."""
        return train_alone(self, seconds, obs, streaming)

    def stats(self) -> dict:
        return {"version": self.version, "samples_trained": self.samples_trained,
                "steps_skipped": self.steps_skipped, "train_time_s": self.train_time_s,
                "weights_bytes": self.weights_bytes}  # the last publication's arrays (get_weights)
