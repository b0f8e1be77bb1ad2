"""Discretisation of continuous actions in [-1, 1] into uniform bins (OpenVLA-style)."""

from __future__ import annotations

import numpy as np
import torch


class ActionTokenizer:
    def __init__(self, n_bins: int = 256):
        if n_bins < 2:
            raise ValueError(f"policy.n_bins must be >= 2, got {n_bins}")
        self.n_bins = n_bins
        # Bin centres: token i covers [-1 + 2i/n, -1 + 2(i+1)/n).
        self.centers = (-1.0 + (2.0 * np.arange(n_bins) + 1.0) / n_bins).astype(np.float32)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        ids = np.floor((a + 1.0) * 0.5 * self.n_bins).astype(np.int64)
        return np.clip(ids, 0, self.n_bins - 1)

    def decode(self, tokens) -> np.ndarray:
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.cpu().numpy()
        return self.centers[np.asarray(tokens, dtype=np.int64)]
