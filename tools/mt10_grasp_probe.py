"""Where the hand goes on MetaWorld's grasping tasks, per policy: the median over held-out
episodes of the hand's closest and final distance to the object (as a fraction of the distance
at reset), how many episodes bring it within 3 cm, how many chunks per episode close the gripper
there, and success.
Tells "never reaches the object" from "reaches it but never grasps".

    python tools/mt10_grasp_probe.py RUN/config.yaml POLICY_DIR [POLICY_DIR ...] [--episodes 10]

The env is built from the run's `env.metaworld` settings; actions are sampled (as in training
and evaluation), torch seeded 0; one process, no Ray.
"""

import argparse

import numpy as np
import torch
import yaml

from rlvla3.envs.libero_config import set_render_backend

set_render_backend()  # before MetaWorld imports MuJoCo

from rlvla3.core.types import ObsBatch  # noqa: E402
from rlvla3.envs.metaworld import MetaWorldEnv  # noqa: E402
from rlvla3.envs.metaworld_config import MetaWorldConfig  # noqa: E402
from rlvla3.policies import load_policy  # noqa: E402

TASKS = ("push-v3", "pick-place-v3", "peg-insert-side-v3")
NEAR_M = 0.03


def episode(env, policy, task_id: int, init_id: int):
    obs, _ = env.reset(options={"task_id": task_id, "init_id": init_id, "split": "eval"})
    dist = env.reach_distance  # the hand's distance to the task's object (reach_coef's distance)
    d0 = dist()
    closest, closing_near, done, info = d0, 0, False, {}
    while not done:
        batch = ObsBatch(obs["image"][None], np.asarray(obs["proprio"], np.float32)[None], [obs["instruction"]])
        chunk = np.asarray(policy.act(batch).actions)[0]
        obs, _, term, trunc, info = env.chunk_step(chunk)
        d = dist()
        closest = min(closest, d)
        closing_near += int(d < NEAR_M and chunk[:, 3].mean() > 0)  # +1 closes the gripper
        done = term or trunc
    return d0, closest / d0, dist() / d0, closing_near, bool(info.get("success"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a run's config.yaml (its env.metaworld settings)")
    ap.add_argument("policies", nargs="+", help="policy folders (save_pretrained)")
    ap.add_argument("--episodes", type=int, default=10, help="held-out initial states per task")
    a = ap.parse_args()
    cfg = MetaWorldConfig(**yaml.safe_load(open(a.config))["env"]["metaworld"])
    if not 1 <= a.episodes <= cfg.num_eval_init_states:
        ap.error(f"--episodes must be in [1, {cfg.num_eval_init_states}] (the held-out initial states per task)")
    env = MetaWorldEnv(cfg)
    names = [t.name for t in env.tasks]
    print("| policy | task | d0 (m, median) | closest d/d0 (median) | episodes within 3 cm | final d/d0 (median) | "
          "chunks closing within 3 cm | success |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in a.policies:
        torch.manual_seed(0)
        policy = load_policy(path)
        for task in TASKS:
            r = [episode(env, policy, names.index(task), i) for i in range(a.episodes)]
            d0, closest, final, near, ok = (np.array(c) for c in zip(*r))
            within = int((closest * d0 < NEAR_M).sum())
            print(f"| {path} | {task} | {np.median(d0):.2f} | {np.median(closest):.2f} | {within}/{a.episodes} | "
                  f"{np.median(final):.2f} | {near.mean():.1f} | "
                  f"{int(ok.sum())}/{a.episodes} |", flush=True)
    env.close()


if __name__ == "__main__":
    main()
