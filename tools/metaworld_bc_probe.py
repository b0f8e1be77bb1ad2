"""How well does behaviour cloning alone do on MetaWorld? Collect noisy expert demos on the train
variations, run the SFT, evaluate on the held-out variations (sampled and greedy actions).
Used to pick the SFT settings and the camera of the MetaWorld presets (docs/metaworld.md).

  python tools/metaworld_bc_probe.py preset=metaworld-smoke sft.demos_per_task=80 --episodes 20
"""

from __future__ import annotations

import argparse
import time

import torch

from rlvla3.core.types import ObsBatch
from rlvla3.envs.factory import env_config, make_env
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config
from rlvla3.runtime.demos import collect_demos
from rlvla3.runtime.sft import train_sft


def evaluate(policy, env, episodes: int, deterministic: bool, seed: int):
    """Held-out success over all tasks, and per task (instruction -> rate)."""
    torch.manual_seed(seed)
    wins = total = 0
    per_task = {}
    n_eval = env.num_init_states("eval")
    for task in range(env.num_tasks):
        for e in range(episodes):
            obs, _ = env.reset(options={"task_id": task, "init_id": e % n_eval, "split": "eval"})
            done = False
            while not done:
                out = policy.act(ObsBatch(obs["image"][None], obs["proprio"][None], [obs["instruction"]]),
                                 deterministic=deterministic)
                obs, _, term, trunc, info = env.chunk_step(out.actions[0])
                done = term or trunc
            wins += int(info["success"])
            total += 1
            name = obs["instruction"]
            per_task[name] = per_task.get(name, 0.0) + float(info["success"]) / episodes
    return wins / max(total, 1), per_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--episodes", type=int, default=20, help="held-out episodes per task and mode")
    args = ap.parse_args()
    preset = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("preset=")), "metaworld-smoke")
    cfg = load_config([o for o in args.overrides if not o.startswith("preset=")], preset=preset)
    torch.manual_seed(cfg.run.seed)
    torch.set_num_threads(max(1, cfg.run.torch_threads))
    policy = build_policy(cfg.policy)
    t0 = time.perf_counter()
    s = cfg.sft
    demos = collect_demos(env_config(cfg), s.demos_per_task, s.noise_std, policy.chunk_size, cfg.run.seed + 1,
                          workers=s.collect_workers or cfg.rollout.num_env_workers)
    print(f"demos: {demos.episodes} episodes, {demos.successes} successful, {len(demos)} samples "
          f"in {time.perf_counter() - t0:.1f}s", flush=True)
    env = make_env(env_config(cfg), seed=cfg.run.seed + 7)
    t0 = time.perf_counter()
    losses = train_sft(policy, demos, s.epochs, s.batch_size, s.lr, cfg.run.seed,
                       log=lambda e, m: print(f"  epoch {e}: loss {m['sft/loss']:.3f}", flush=True)
                       if e % 5 == 4 else None, shift=s.augment_shift)
    print(f"sft: {s.epochs} epochs in {time.perf_counter() - t0:.1f}s, final loss {losses[-1]:.3f}", flush=True)
    for det in (False, True):
        sr, per_task = evaluate(policy, env, args.episodes, det, cfg.run.seed)
        print(f"held-out success ({'greedy' if det else 'sampled'}): {sr:.1%}", flush=True)
        if len(per_task) > 1:
            print("  " + ", ".join(f"{k}: {v:.0%}" for k, v in per_task.items()), flush=True)
    env.close()


if __name__ == "__main__":
    main()
