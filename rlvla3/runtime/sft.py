"""SFT warm start: behaviour-clone a scripted expert, as real VLA post-training starts from
an SFT checkpoint. Demonstrations execute noisy actions but are labelled with the clean
expert chunk, so the clone learns to recover from its own mistakes (DART-style)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, List, Optional

import numpy as np
import torch

from rlvla3.envs.config import TabletopConfig
from rlvla3.envs.factory import expert_chunk, make_env


@dataclass
class DemoSet:
    images: np.ndarray  # (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, P)
    instructions: List[str]
    actions: np.ndarray  # (N, chunk, action_dim) clean expert action chunks
    episodes: int
    successes: int
    env_steps: int

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def collect_demos(env_cfg, demos_per_task: int, noise_std: float, chunk_size: int, seed: int) -> DemoSet:
    """Noisy scripted-expert episodes on the train initial states of every task, in any env
    with an expert: the tabletop env's planner or MetaWorld's `metaworld.policies`."""
    if isinstance(env_cfg, TabletopConfig):
        # The latency model emulates a remote simulator for the RL workers; demonstrations need not wait for it.
        env_cfg = replace(env_cfg, latency=replace(env_cfg.latency, kind="none"))
    env = make_env(env_cfg, seed=seed)
    rng = np.random.default_rng(seed)
    imgs, props, instrs, chunks = [], [], [], []
    episodes = successes = steps = 0
    for task in range(env.num_tasks):
        for d in range(demos_per_task):
            init_id = d % env_cfg.num_init_states
            obs, _ = env.reset(options={"task_id": task, "init_id": init_id, "split": "train"})
            done = False
            while not done:
                clean = expert_chunk(env, chunk_size, rng, 0.0)
                imgs.append(obs["image"])
                props.append(obs["proprio"])
                instrs.append(obs["instruction"])
                chunks.append(np.asarray(clean, np.float32))
                noisy = np.clip(clean + rng.normal(0.0, noise_std, clean.shape), -1.0, 1.0)
                obs, _, term, trunc, info = env.chunk_step(noisy.astype(np.float32))
                steps += int(info["substeps"])
                done = term or trunc
            episodes += 1
            successes += int(info["success"])
    env.close()
    return DemoSet(np.stack(imgs), np.stack(props).astype(np.float32), instrs, np.stack(chunks), episodes, successes,
                   steps)


def train_sft(policy, demos: DemoSet, epochs: int, batch_size: int, lr: float, seed: int,
              log: Optional[Callable[[int, dict], None]] = None) -> List[float]:
    """The policy's own imitation loss on the expert chunks (cross-entropy on action bins,
    flow matching for flow policies); the value head is untouched."""
    from rlvla3.core.types import ObsBatch

    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    n = len(demos)
    epoch_losses = []
    for epoch in range(epochs):
        perm = gen.permutation(n)
        total, count, t0 = 0.0, 0, time.perf_counter()
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            obs = ObsBatch(demos.images[idx], demos.proprio[idx], [demos.instructions[i] for i in idx])
            loss = policy.sft_loss(obs, demos.actions[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        epoch_losses.append(total / max(count, 1))
        if log:
            log(epoch, {"sft/loss": epoch_losses[-1], "sft/epoch_s": time.perf_counter() - t0})
    return epoch_losses
