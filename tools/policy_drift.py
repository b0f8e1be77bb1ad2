"""How far a trained policy moved from the one it started from, per task, on its own rollouts.

    python tools/policy_drift.py SETTINGS_FILE START_POLICY TRAINED_POLICY [--inits 3]

SETTINGS_FILE holds the run's key=value overrides (e.g. a benchmark folder's settings.txt).
In one process, without Ray: for each task and `--inits` training initial states, the trained
policy acts for one episode; at every decision the script takes its sampled tokens' log-probs
under both policies. Prints per task the k1 estimate of KL(trained ‖ start) per token (the mean
of log p_trained - log p_start) and both policies' entropies per token. One env at a time:
MT10 at 64² takes about 20 s on one core.
"""

import argparse

import numpy as np
import torch

from rlvla3.core.losses import kl_estimates
from rlvla3.core.types import ObsBatch
from rlvla3.envs.factory import env_config, make_env
from rlvla3.policies import load_policy
from rlvla3.runtime.config import load_config


def drift(settings, start_dir: str, trained_dir: str, inits: int = 3, max_decisions: int = 100) -> dict:
    torch.manual_seed(0)  # the trained policy's samples: the same numbers on a second run
    cfg = load_config(list(settings))
    env = make_env(env_config(cfg), seed=0)
    trained, start = load_policy(trained_dir), load_policy(start_dir)
    rows = {}
    for t in range(env.num_tasks):
        got = []
        for i in range(min(inits, env.num_init_states("train"))):
            o, _ = env.reset(options={"task_id": t, "init_id": i, "split": "train"})
            for _ in range(max_decisions):
                ob = ObsBatch(o["image"][None], o["proprio"][None], [o["instruction"]])
                out = trained.act(ob)
                with torch.no_grad():
                    a, b = trained.evaluate(ob, out.tokens), start.evaluate(ob, out.tokens)
                got.append((kl_estimates(a.logp, b.logp)["k1"], float(a.entropy.mean()), float(b.entropy.mean())))
                o, _, term, trunc, _ = env.chunk_step(out.actions[0])
                if term or trunc:
                    break
        rows[o["instruction"]] = np.mean(got, axis=0).tolist()
    env.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings")
    ap.add_argument("start")
    ap.add_argument("trained")
    ap.add_argument("--inits", type=int, default=3)
    a = ap.parse_args()
    with open(a.settings) as f:
        rows = drift(f.read().split(), a.start, a.trained, a.inits)
    print("| task | KL(trained ‖ start) per token, k1 | entropy trained | entropy start |\n|---|---:|---:|---:|")
    for name, (kl, ea, eb) in rows.items():
        print(f"| {name} | {kl:.2f} | {ea:.2f} | {eb:.2f} |")
    kl, ea, eb = np.mean(list(rows.values()), axis=0)
    print(f"| **mean over tasks** | {kl:.2f} | {ea:.2f} | {eb:.2f} |")


if __name__ == "__main__":
    main()
