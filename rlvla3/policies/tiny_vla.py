"""A tiny VLA: CNN image encoder (FiLM-conditioned on the instruction) + proprio MLP
-> parallel decoding of chunk x action_dim discrete action tokens (256 bins), plus a
value head. Small enough to train on a 2-core laptop, same interface as the real VLAs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rlvla3.core.config_checks import check, check_at_least, check_choice
from rlvla3.core.types import ObsBatch
from rlvla3.policies.action_tokenizer import ActionTokenizer, bins_cross_entropy, bins_logp_entropy, sample_bins
from rlvla3.policies.base import ActOutput, EvalOutput
from rlvla3.policies.checkpoint_files import CONFIG_NAME, checkpoint_paths, load_weights, read_config, write_weights
from rlvla3.policies.host_copy import host_tensors
from rlvla3.policies.text_tokenizer import DEFAULT_VOCAB, WordTokenizer

ACTION_HEADS = ("binned_gaussian", "gaussian_plus_logits", "logits")


@dataclass
class TinyVLAConfig:
    image_size: int = 64  # square RGB input
    proprio_dim: int = 4
    action_dim: int = 3
    chunk_size: int = 4  # actions decoded per policy call
    n_bins: int = 256  # action bins per dimension
    channels: List[int] = field(default_factory=lambda: [16, 32, 32])  # CNN widths: stride 2, then stride 1
    downsample: int = 2  # leading conv layers with stride 2 (the rest keep resolution)
    hidden: int = 256  # fused feature width
    word_dim: int = 32
    action_head: str = "binned_gaussian"  # binned_gaussian | gaussian_plus_logits | logits (see action_logits)
    value_detach: bool = True  # the value head reads detached features: critic gradients cannot disturb the policy
    max_instruction_tokens: int = 12
    vocab: List[str] = field(default_factory=lambda: list(DEFAULT_VOCAB))

    def validate(self) -> None:
        check(1 <= self.downsample <= len(self.channels), f"policy.downsample must be in [1, len(policy.channels)="
              f"{len(self.channels)}], got {self.downsample}")
        check(self.image_size >= 16 and self.image_size % (2 ** self.downsample) == 0, f"policy.image_size must be "
              f">= 16 and divisible by 2**policy.downsample={2 ** self.downsample}, got {self.image_size}")
        check_at_least(self, "policy", 1, "proprio_dim", "action_dim", "chunk_size", "hidden", "word_dim",
                       "max_instruction_tokens")
        check_at_least(self, "policy", 2, "n_bins")
        check_choice(self.action_head, ACTION_HEADS, "policy.action_head")

    @property
    def num_tokens(self) -> int:
        return self.chunk_size * self.action_dim


class FiLMConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        gamma, beta = self.film(cond).chunk(2, dim=-1)
        # FiLM lets the instruction pick which coloured object the features track.
        return F.relu(h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])


class TinyVLAModel(nn.Module):
    def __init__(self, cfg: TinyVLAConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        vocab_size = len(cfg.vocab) + 2
        self.word_emb = nn.Embedding(vocab_size, cfg.word_dim, padding_idx=0)
        self.pos_emb = nn.Parameter(torch.zeros(cfg.max_instruction_tokens, cfg.word_dim))
        self.text_proj = nn.Sequential(nn.Linear(cfg.max_instruction_tokens * cfg.word_dim, cfg.hidden), nn.ReLU())
        blocks, c_in = [], 3 + 2  # RGB + x/y coordinate channels (CoordConv) for localisation
        for k, c in enumerate(cfg.channels):
            blocks.append(FiLMConvBlock(c_in, c, cfg.hidden, stride=2 if k < cfg.downsample else 1))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        side = cfg.image_size // (2 ** cfg.downsample)
        # Flattened feature map (position kept by CoordConv + layout): in a probe on this env it
        # learned "where is the block" ~20x faster than spatial-softmax keypoints.
        self.img_proj = nn.Sequential(nn.Linear(c_in * side * side, cfg.hidden), nn.ReLU())
        self.proprio_proj = nn.Sequential(nn.Linear(cfg.proprio_dim, 64), nn.ReLU())
        self.trunk = nn.Sequential(
            nn.Linear(2 * cfg.hidden + 64, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU()
        )
        # free per-bin logits only for the heads that use them
        self.action_head = nn.Linear(cfg.hidden, cfg.num_tokens * cfg.n_bins) if cfg.action_head != "binned_gaussian" \
            else None
        self.gauss_head = nn.Linear(cfg.hidden, cfg.num_tokens * 2)
        centers = -1.0 + (2.0 * torch.arange(cfg.n_bins) + 1.0) / cfg.n_bins
        self.register_buffer("bin_centers", centers, persistent=False)
        self.value_head = nn.Sequential(nn.Linear(cfg.hidden, 128), nn.ReLU(), nn.Linear(128, 1))
        lin = torch.linspace(-1.0, 1.0, cfg.image_size)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)
        if self.action_head is not None:
            nn.init.zeros_(self.action_head.bias)
            nn.init.normal_(self.action_head.weight, std=0.01)

    def forward(self, images: torch.Tensor, proprio: torch.Tensor, text_ids: torch.Tensor):
        """images (n,H,W,3) uint8; returns logits (n, T, n_bins) and values (n,)."""
        n = images.shape[0]
        words = self.word_emb(text_ids) + self.pos_emb
        cond = self.text_proj(words.flatten(1))
        x = images.permute(0, 3, 1, 2).float().div(255.0)
        x = torch.cat([x, self.coords.expand(n, -1, -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x, cond)
        h = torch.cat([self.img_proj(x.flatten(1)), cond, self.proprio_proj(proprio)], dim=-1)
        h = self.trunk(h)
        v_in = h.detach() if self.cfg.value_detach else h
        return self.action_logits(h), self.value_head(v_in).squeeze(-1)

    def action_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(n, T, n_bins) logits over action bins.

        `logits`: one free logit per bin (OpenVLA). Each bin is learned on its own, so with
        little data the argmax lands on noise, and an RL update that raises one sampled bin
        does nothing for its neighbours. `binned_gaussian`: the log-density of a Gaussian
        (predicted mean and scale) at each bin centre, so neighbouring bins share evidence
        and RL moves the mean and the spread; it is still an exact 256-way categorical with
        token log-probs and entropy. `gaussian_plus_logits` adds free logits to it.
        """
        n, cfg = h.shape[0], self.cfg
        if cfg.action_head == "logits":
            return self.action_head(h).view(n, cfg.num_tokens, cfg.n_bins)
        mu, log_s = self.gauss_head(h).view(n, cfg.num_tokens, 2).unbind(-1)
        # Floor at ~2 bins (0.018 in action units): a sharper Gaussian gives improbable sampled
        # tokens huge log-prob gradients that dominate the RL update.
        sigma = log_s.clamp(-4.0, 0.5).exp()[..., None]
        z = (self.bin_centers - torch.tanh(mu)[..., None]) / sigma
        gauss = -0.5 * z * z
        if cfg.action_head == "gaussian_plus_logits":
            return gauss + self.action_head(h).view(n, cfg.num_tokens, cfg.n_bins)
        return gauss


class TinyVLAPolicy:
    """Wraps the model with tokenizers and the act/evaluate interface."""

    def __init__(self, cfg: TinyVLAConfig, device: str = "cpu"):
        self.cfg = cfg
        self.model = TinyVLAModel(cfg).to(device)
        self.device = torch.device(device)
        self.action_tokenizer = ActionTokenizer(cfg.n_bins)
        self.text_tokenizer = WordTokenizer(cfg.vocab, cfg.max_instruction_tokens)
        self._text_cache: dict = {}
        self.version = 0

    chunk_size = property(lambda self: self.cfg.chunk_size)
    action_dim = property(lambda self: self.cfg.action_dim)
    proprio_dim = property(lambda self: self.cfg.proprio_dim)
    image_size = property(lambda self: self.cfg.image_size)

    def _inputs(self, obs: ObsBatch):
        ids = []
        for text in obs.instructions:
            if text not in self._text_cache:
                self._text_cache[text] = self.text_tokenizer.encode([text])[0]
            ids.append(self._text_cache[text])
        # torch.tensor copies: arrays from Ray's object store are read-only
        to = lambda a, dt: torch.tensor(np.asarray(a), dtype=dt, device=self.device)  # noqa: E731
        return to(obs.images, torch.uint8), to(obs.proprio, torch.float32), to(np.stack(ids), torch.long)

    @torch.no_grad()
    def act(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0) -> ActOutput:
        self.model.eval()
        logits, values = self.model(*self._inputs(obs))
        tokens, logp = sample_bins(logits, deterministic, temperature)
        tok = tokens.cpu().numpy()
        actions = self.action_tokenizer.decode(tok).reshape(len(obs), self.cfg.chunk_size, self.cfg.action_dim)
        return ActOutput(actions, tok, logp.cpu().numpy(), values.float().cpu().numpy(), self.version)

    def evaluate(self, obs: ObsBatch, tokens) -> EvalOutput:
        self.model.train()
        logits, values = self.model(*self._inputs(obs))
        logp, entropy = bins_logp_entropy(logits, tokens)
        return EvalOutput(logp, entropy, values.float())

    def sft_loss(self, obs: ObsBatch, actions: np.ndarray) -> torch.Tensor:
        """Cross-entropy on the bins of expert action chunks (n, chunk, action_dim)."""
        self.model.train()
        logits, _ = self.model(*self._inputs(obs))
        return bins_cross_entropy(logits, self.action_tokenizer, actions)

    # --- weights -----------------------------------------------------------------------
    def parameters(self):
        return self.model.parameters()

    def state_dict(self, dtype: Optional[torch.dtype] = None) -> dict:
        return host_tensors(self.model.state_dict().items(), dtype)

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict({k: torch.tensor(v) if not isinstance(v, torch.Tensor) else v for k, v in state.items()})

    def save_pretrained(self, path: str) -> None:
        write_weights(self.state_dict(), path)
        with open(os.path.join(path, CONFIG_NAME), "w") as f:
            json.dump({"policy_type": "tiny", "version": self.version, **asdict(self.cfg)}, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu") -> "TinyVLAPolicy":
        cfg_path, w_path = checkpoint_paths(path)

        def parse(raw: dict) -> TinyVLAConfig:
            cfg = TinyVLAConfig(**{k: v for k, v in raw.items() if k not in ("version", "policy_type")})
            cfg.validate()
            return cfg

        raw, policy_cfg = read_config(cfg_path, parse)
        policy = cls(policy_cfg, device=device)
        load_weights(policy.load_state_dict, w_path, cfg_path)
        policy.version = int(raw.get("version", 0))
        return policy
