"""`rlvla3 sft`: collect noisy scripted-expert demonstrations and behaviour-clone the policy."""

from __future__ import annotations

import time

import numpy as np
import torch

from rlvla3.core.action_labels import flat_dims, two_peaked_dims
from rlvla3.core.types import ObsBatch
from rlvla3.envs.factory import env_config
from rlvla3.policies import build_policy
from rlvla3.process.determinism import use_deterministic_kernels
from rlvla3.runtime.demos import collect_demos
from rlvla3.runtime.sft import train_sft

PROGRESS_S = 10.0  # at most one progress line per this many seconds


def _every(interval_s: float):
    """A gate for progress lines: true at most once per `interval_s` (counted from its creation
    and from each time it opened), or whenever forced."""
    last = time.perf_counter()

    def due(force: bool = False) -> bool:
        nonlocal last
        now = time.perf_counter()
        if force or now - last >= interval_s:
            last = now
            return True
        return False

    return due


def run_sft(cfg, out_dir: str, logger=None) -> dict:
    s = cfg.sft
    torch.manual_seed(cfg.run.seed)
    torch.set_num_threads(max(1, cfg.run.torch_threads))
    if cfg.run.deterministic:
        use_deterministic_kernels()
    policy = build_policy(cfg.policy)
    say = logger.print if logger else print
    workers = s.collect_workers or cfg.rollout.num_env_workers
    t0 = time.perf_counter()
    due = _every(PROGRESS_S)

    def progress(done: int, total: int, _part) -> None:
        if due(force=done == total):  # long collections show they are alive
            say(f"SFT: {done}/{total} demos collected ({time.perf_counter() - t0:.0f}s)")

    demos = collect_demos(env_config(cfg), s.demos_per_task, s.noise_std, policy.chunk_size, cfg.run.seed + 1,
                          workers=workers, unit_timeout_s=cfg.faults.call_timeout_s, progress=progress)
    t_collect = time.perf_counter() - t0
    say(f"SFT: {demos.episodes} expert demos ({demos.successes} successful, {len(demos)} samples, "
        f"{demos.env_steps} env steps) collected in {t_collect:.1f}s by up to {workers} processes")
    t_train = time.perf_counter()
    epoch_due = _every(PROGRESS_S)

    def log(epoch: int, metrics: dict) -> None:
        if logger:
            logger.log(epoch, metrics, 0)
        if epoch + 1 < s.epochs and epoch_due():  # long training shows it is alive (the last: the summary line)
            say(f"SFT: epoch {epoch + 1}/{s.epochs}, loss {metrics['sft/loss']:.3f} "
                f"({time.perf_counter() - t_train:.0f}s)")

    losses = train_sft(policy, demos, s.epochs, s.batch_size, s.lr, cfg.run.seed, log=log, shift=s.augment_shift)
    policy.version = 0
    policy.save_pretrained(out_dir)
    say(f"SFT: {s.epochs} epochs in {time.perf_counter() - t_train:.1f}s, final loss "
        f"{losses[-1] if losses else float('nan'):.3f}; saved {out_dir}")
    note = spread_note(policy, demos, seed=cfg.run.seed)  # after the timing: the check is not training
    if note:
        say(note)
    return {"demos": demos.episodes, "samples": len(demos), "losses": losses}


def spread_note(policy, demos, max_samples: int = 512, seed: int = 0) -> str:
    """A note when the clone samples some action dimension almost uniformly on the demos' own
    states (a binned head whose spread saturated), naming labels that sit at both bounds. On the
    quick-start's tabletop this is by design (a weak clone that RL sharpens); on MetaWorld it left
    half the smoke clones at 0% sampled success (docs/metaworld.md, 'The action head')."""
    n_bins = getattr(getattr(policy, "cfg", None), "n_bins", None)
    tokenizer = getattr(policy, "action_tokenizer", None)
    if not n_bins or tokenizer is None or len(demos) == 0:
        return ""
    idx = np.random.default_rng(seed).permutation(len(demos))[:max_samples]
    parts = []
    with torch.no_grad():
        for part in np.array_split(idx, max(1, -(-len(idx) // 64))):  # batches of <= 64: a large VLA fits
            obs = ObsBatch(demos.images[part], demos.proprio[part], [demos.instructions[i] for i in part])
            tokens = tokenizer.encode(demos.actions[part]).reshape(len(part), -1)
            parts.append(policy.evaluate(obs, tokens).entropy.float().cpu().numpy())
    entropy = np.concatenate(parts)
    flat = flat_dims(entropy.reshape(len(idx), policy.chunk_size, policy.action_dim), n_bins)
    if not flat:
        return ""
    peaks = {p.dim: p for p in two_peaked_dims(demos.actions)}
    dims = "; ".join(f"dimension {d}: {e:.2f} of {np.log(n_bins):.2f} nats" + (
        f", its labels {peaks[d].at_low:.0%} at -1 and {peaks[d].at_high:.0%} at +1" if d in peaks else "")
        for d, e in flat)
    head = getattr(policy.cfg, "action_head", "")
    fix = (" The binned_gaussian head fits one peak per dimension; a head with a free logit per bin fits labels at "
           "both bounds (policy.tiny.action_head=gaussian_plus_logits; docs/metaworld.md, 'The action head').") \
        if head == "binned_gaussian" else ""
    return (f"SFT: note: on the demos' own states the clone samples some action dimensions almost uniformly "
            f"({dims}), so RL starts from near-random actions there.{fix}")
