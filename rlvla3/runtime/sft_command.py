"""`rlvla3 sft`: collect noisy scripted-expert demonstrations and behaviour-clone the policy."""

from __future__ import annotations

import time

import torch

from rlvla3.envs.factory import env_config
from rlvla3.policies import build_policy
from rlvla3.runtime.sft import collect_demos, train_sft


def run_sft(cfg, out_dir: str, logger=None) -> dict:
    s = cfg.sft
    torch.manual_seed(cfg.run.seed)
    torch.set_num_threads(max(1, cfg.run.torch_threads))
    policy = build_policy(cfg.policy)
    t0 = time.perf_counter()
    demos = collect_demos(env_config(cfg), s.demos_per_task, s.noise_std, policy.chunk_size, cfg.run.seed + 1)
    t_collect = time.perf_counter() - t0
    say = logger.print if logger else print
    say(f"SFT: {demos.episodes} expert demos ({demos.successes} successful, {len(demos)} samples, "
        f"{demos.env_steps} env steps) collected in {t_collect:.1f}s")
    log = (lambda e, m: logger.log(e, m, 0)) if logger else None
    t0 = time.perf_counter()
    losses = train_sft(policy, demos, s.epochs, s.batch_size, s.lr, cfg.run.seed, log=log)
    policy.version = 0
    policy.save_pretrained(out_dir)
    say(f"SFT: {s.epochs} epochs in {time.perf_counter() - t0:.1f}s, final loss "
        f"{losses[-1] if losses else float('nan'):.3f}; saved {out_dir}")
    return {"demos": demos.episodes, "samples": len(demos), "losses": losses}
