"""pi0-style flow policy made stochastic for RL, on transformers' PI0 classes.

transformers' `PI0ForConditionalGeneration` predicts the flow velocity of an action chunk
given a PaliGemma prefix (images + prompt, run once and cached) and the robot state. Its
`sample_actions` integrates the ODE deterministically, which has no usable likelihood.
Here every Euler step adds Gaussian noise (Flow-Noise, as in piRL):

    x_{k+1} = x_k + dt * v(x_k, t_k) + sigma * eps,      x_0 ~ N(0, I), t: 1 -> 0

so the chunk's log-prob is the sum of the Gaussian log-densities of its K transitions,
computable again under new weights from the stored chain (x_0 .. x_K). sigma comes from a
small head on the pooled prefix (per action element, bounded), a value head reads the same
pooled prefix. Padded action dims (max_action_dim > action_dim) evolve without noise.
"""

from __future__ import annotations

import json
import math
import os

import torch
import torch.nn as nn
from transformers import PI0Config, PI0ForConditionalGeneration

LOG_2PI = math.log(2 * math.pi)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

_SHAPES = {
    "tiny": dict(
        text=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=16, vocab_size=512),
        vision=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4),
        dit=dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64, num_attention_heads=4,
                 num_key_value_heads=1, head_dim=16)),
    "small": dict(
        text=dict(hidden_size=1024, num_hidden_layers=12, intermediate_size=4096, num_attention_heads=8,
                  num_key_value_heads=1, head_dim=128, vocab_size=257152),
        vision=dict(hidden_size=768, num_hidden_layers=12, intermediate_size=3072, num_attention_heads=12,
                    image_size=224, patch_size=16),
        dit=dict(hidden_size=512, num_hidden_layers=12, intermediate_size=2048, num_attention_heads=8,
                 num_key_value_heads=1, head_dim=128)),
}


def hf_config(cfg) -> PI0Config:
    """PI0Config of a PI0PolicyConfig's size ("full" = transformers' defaults = published pi0)."""
    common = dict(chunk_size=cfg.chunk_size, max_state_dim=cfg.state_width, max_action_dim=cfg.action_width,
                  num_inference_steps=cfg.num_steps)
    if cfg.size == "full":
        return PI0Config(**common)
    s = _SHAPES[cfg.size]
    vision = dict(model_type="siglip_vision_model", vision_use_head=False, **s["vision"])
    if cfg.size == "tiny":  # tiny towers read the env image directly: 8 x 8 patches
        vision.update(image_size=cfg.image_size, patch_size=max(1, cfg.image_size // 8))
    vlm = dict(text_config=dict(model_type="gemma", **s["text"]), vision_config=vision,
               projection_dim=s["text"]["hidden_size"], image_token_id=s["text"]["vocab_size"])
    return PI0Config(vlm_config=vlm, dit_config=dict(model_type="gemma", **s["dit"]), **common)


_LEROBOT_VARIANTS = {("gemma_2b", "gemma_300m")}


def load_pi0(path: str) -> PI0ForConditionalGeneration:
    """A local PI0 checkpoint. transformers renames lerobot-layout keys on load; a lerobot
    config.json (`"type": "pi0"`, named Gemma variants) is mapped to the published shapes."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"no PI0 checkpoint at {path} (missing config.json)")
    with open(cfg_path) as f:
        raw = json.load(f)
    if raw.get("model_type") == "pi0":
        return PI0ForConditionalGeneration.from_pretrained(path, local_files_only=True)
    if raw.get("type") != "pi0":
        raise ValueError(f"{cfg_path} is neither a transformers PI0 config nor a lerobot pi0 config")
    variant = (raw.get("paligemma_variant", "gemma_2b"), raw.get("action_expert_variant", "gemma_300m"))
    if variant not in _LEROBOT_VARIANTS:
        raise ValueError(f"{cfg_path}: lerobot variants {variant} are not supported (known: {_LEROBOT_VARIANTS})")
    hf = PI0Config(chunk_size=raw.get("chunk_size", 50), max_state_dim=raw.get("max_state_dim", 32),
                   max_action_dim=raw.get("max_action_dim", 32), num_inference_steps=raw.get("num_steps", 10))
    return PI0ForConditionalGeneration.from_pretrained(path, config=hf, local_files_only=True)


class PI0FlowModel(nn.Module):
    def __init__(self, pi0: PI0ForConditionalGeneration, action_dim: int, noise_init: float, noise_min: float,
                 noise_max: float, value_detach: bool):
        super().__init__()
        self.pi0 = pi0
        c = pi0.config
        self.chunk, self.width, self.action_dim = c.chunk_size, c.max_action_dim, action_dim
        self.log_min, self.log_max = math.log(noise_min), math.log(noise_max)
        d = c.vlm_config.text_config.hidden_size
        self.value_head = nn.Sequential(nn.Linear(d, min(d, 512)), nn.GELU(), nn.Linear(min(d, 512), 1))
        self.noise_head = nn.Linear(d, self.chunk * action_dim)
        nn.init.zeros_(self.noise_head.weight)
        # start at sigma = noise_init: the bounded map below is the identity at this bias
        frac = (math.log(noise_init) - self.log_min) / max(self.log_max - self.log_min, 1e-8)
        frac = min(max(frac, 1e-4), 1 - 1e-4)
        nn.init.constant_(self.noise_head.bias, math.log(frac / (1 - frac)))
        self.value_detach = value_detach

    def prefix(self, input_ids, pixel_values, pixel_attention_mask, attention_mask):
        """Run the VLM once: its KV cache, and the masked mean of its states."""
        m = self.pi0.model
        embeds = m.embed_prefix(input_ids, pixel_values, pixel_attention_mask)
        out = m.vlm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=attention_mask.cumsum(-1) - 1,
                    token_type_ids=torch.zeros_like(embeds[:, :, 0]), use_cache=True)
        w = attention_mask[..., None].to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * w).sum(1) / w.sum(1).clamp(min=1)
        return out.cache, pooled

    def heads(self, pooled):
        v_in = pooled.detach() if self.value_detach else pooled
        values = self.value_head(v_in).squeeze(-1).float()
        raw = self.noise_head(pooled).float().view(-1, self.chunk, self.action_dim)
        log_sigma = self.log_min + (self.log_max - self.log_min) * torch.sigmoid(raw)
        return values, log_sigma

    def velocity(self, state, x, t: float, cache, attention_mask):
        n = x.shape[0]
        prefix_len = cache.get_seq_length()
        out = self.pi0(state=state, noise=x, timestep=torch.full((n,), t, dtype=torch.float32, device=x.device),
                       attention_mask=attention_mask, cache=cache)
        cache.crop(prefix_len - cache.get_seq_length())  # the next step attends to the prefix only
        return out.logits.float()

    def chain_logp(self, chain, state, cache, attention_mask, log_sigma):
        """Per-element log-density (n, chunk, action_dim) of the K transitions of `chain`
        (n, K+1, chunk, width), and the per-element entropy of the step noise."""
        K = chain.shape[1] - 1
        a, dt = self.action_dim, -1.0 / K
        sigma = log_sigma.exp()
        logp = torch.zeros_like(log_sigma)
        for k in range(K):
            mu = chain[:, k] + dt * self.velocity(state, chain[:, k], 1.0 + k * dt, cache, attention_mask)
            z = (chain[:, k + 1, :, :a] - mu[..., :a]) / sigma
            logp = logp - 0.5 * z * z - log_sigma - 0.5 * LOG_2PI
        entropy = K * (log_sigma + 0.5 * (1.0 + LOG_2PI))
        return logp, entropy

    @torch.no_grad()
    def sample_chain(self, state, cache, attention_mask, log_sigma, K: int, noise_scale):
        """A chain (n, K+1, chunk, width) and its per-element log-prob (n, chunk, action_dim)
        under temperature 1 (the behaviour density the trainer ratios against). `noise_scale`:
        the step noise's temperature, 0 for the deterministic chain; a float, or a tensor that
        broadcasts to (n, chunk, action_dim) (a CUDA graph's input: the same kernels either way)."""
        n, a = state.shape[0], self.action_dim
        x = torch.randn(n, self.chunk, self.width, device=state.device)
        chain, dt = [x], -1.0 / K
        logp = torch.zeros_like(log_sigma)
        for k in range(K):
            mu = x + dt * self.velocity(state, x, 1.0 + k * dt, cache, attention_mask)
            z = noise_scale * torch.randn_like(log_sigma)
            x = mu.clone()
            x[..., :a] = mu[..., :a] + z * log_sigma.exp()
            logp = logp - 0.5 * z * z - log_sigma - 0.5 * LOG_2PI
            chain.append(x)
        return torch.stack(chain, 1), logp
