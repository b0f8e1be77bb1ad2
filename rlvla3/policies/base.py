"""The policy interface every VLA implements (tiny, OFT-style, pi0-style).

`act` serves generators (no grad, numpy in/out); `evaluate` serves the trainer
(torch, with grad). Token-level log-probs let the trainer aggregate at token,
action or chunk level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import torch

from rlvla3.core.types import ObsBatch


@dataclass
class ActOutput:
    actions: np.ndarray  # (n, chunk, action_dim) float32 in [-1, 1]
    tokens: np.ndarray  # (n, D): int64 action-bin ids (tiny, OFT) or the float32 denoising chain (pi0)
    logp: np.ndarray  # (n, chunk * action_dim) float32, per (step, dim)
    values: np.ndarray  # (n,) float32
    version: int


@dataclass
class EvalOutput:
    logp: torch.Tensor  # (n, chunk * action_dim)
    entropy: torch.Tensor  # (n, chunk * action_dim)
    values: torch.Tensor  # (n,)


class Policy(Protocol):
    version: int
    chunk_size: int
    action_dim: int
    proprio_dim: int
    image_size: int

    def act(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0) -> ActOutput: ...

    def evaluate(self, obs: ObsBatch, tokens: np.ndarray | torch.Tensor) -> EvalOutput: ...

    def sft_loss(self, obs: ObsBatch, actions: np.ndarray) -> torch.Tensor:
        """Imitation loss on expert chunks (n, chunk, action_dim) in [-1, 1]."""
        ...

    def parameters(self): ...

    def state_dict(self, dtype: Optional[torch.dtype] = None) -> dict:
        """CPU tensors; `dtype`: floating tensors cast to it on their device first (a bfloat16
        publication copies half the bytes off the GPU and casts there, not on the host's cores)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...

    def save_pretrained(self, path: str) -> None: ...
