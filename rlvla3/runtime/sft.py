"""SFT warm start: behaviour-clone a scripted expert (demonstrations from runtime/demos.py),
as real VLA post-training starts from an SFT checkpoint."""

from __future__ import annotations

import time
from typing import Callable, List, Optional

import numpy as np
import torch

from rlvla3.runtime.demos import DemoSet


def train_sft(policy, demos: DemoSet, epochs: int, batch_size: int, lr: float, seed: int,
              log: Optional[Callable[[int, dict], None]] = None, shift: int = 0) -> List[float]:
    """The policy's own imitation loss on the expert chunks (cross-entropy on action bins,
    flow matching for flow policies); the value head is untouched. `shift` > 0: each image
    is shifted by up to that many pixels (core.augment.random_shift)."""
    from rlvla3.core.augment import random_shift
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
            obs = ObsBatch(random_shift(demos.images[idx], shift, gen), demos.proprio[idx], [demos.instructions[i] for i in idx])
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
