"""OFT-style VLA model on stock transformers (no fork, no remote code).

    image --SigLIP (+ DINOv2, channel-fused)--> patch features --MLP projector--> P tokens
    proprio --MLP--> 1 token
    [image tokens | proprio token | prompt tokens | chunk x action_dim action slots] --> decoder

The decoder (Llama or Qwen2) runs with a boolean 4-D mask: causal over the prefix,
bidirectional inside the action block, so all action tokens are decoded in one parallel
pass (OpenVLA-OFT's parallel decoding). Action logits are the LM-head rows of the last
`n_bins` vocabulary ids (OpenVLA's action-bin tokens). A value head reads the mean of the
action-slot states. Registered with AutoConfig/AutoModel as `rlvla3_oft`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, Dinov2Config, Dinov2Model, LlamaConfig,
                          PreTrainedConfig, PreTrainedModel, Qwen2Config, SiglipVisionConfig, SiglipVisionModel)

SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
DINO_MEAN, DINO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Published shapes: SigLIP so400m/14 and DINOv2 ViT-L/14 at 224 px, Llama-2-7B (OpenVLA's
# vocabulary is padded to 32064); the smaller sizes use SigLIP-B/16 with TinyLlama- or
# Qwen2-0.5B/1.5B-like decoders.
_VISION = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 image_size=224, patch_size=16),
    "so400m": dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304,
                   image_size=224, patch_size=14),
}
_DINO = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, image_size=224, patch_size=14),
}
_TEXT = {
    "llama": {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128, vocab_size=512),
        "small": dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=8,
                      intermediate_size=2816, vocab_size=32064),
        "1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                   intermediate_size=5632, vocab_size=32064),
        "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                   intermediate_size=11008, vocab_size=32064),
    },
    "qwen2": {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128, vocab_size=512),
        "small": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
        "1b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                   intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True),
        "7b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                   intermediate_size=18944, vocab_size=152064),
    },
}
_VISION_OF = {"tiny": "tiny", "small": "base", "1b": "base", "7b": "so400m"}
_DINO_OF = {"tiny": "tiny", "small": "base", "1b": "base", "7b": "large"}


class OFTVLAConfig(PreTrainedConfig):
    model_type = "rlvla3_oft"
    sub_configs = {"vision_config": AutoConfig, "dino_config": AutoConfig, "text_config": AutoConfig}

    def __init__(self, vision_config=None, dino_config=None, text_config=None, proprio_dim: int = 4,
                 num_action_tokens: int = 12, n_bins: int = 256, action_head: str = "logits",
                 value_detach: bool = True, **kwargs):
        as_cfg = lambda c: AutoConfig.for_model(**c) if isinstance(c, dict) else c  # noqa: E731
        self.vision_config = as_cfg(vision_config) or SiglipVisionConfig()
        self.dino_config = as_cfg(dino_config)
        self.text_config = as_cfg(text_config) or LlamaConfig()
        self.proprio_dim, self.num_action_tokens, self.n_bins = proprio_dim, num_action_tokens, n_bins
        self.action_head, self.value_detach = action_head, value_detach
        self.initializer_range = getattr(self.text_config, "initializer_range", 0.02)
        super().__init__(**kwargs)


def hf_config(cfg) -> OFTVLAConfig:
    """transformers config of an OFTPolicyConfig's size."""
    fuse = cfg.fuse_dino or cfg.size == "7b"
    vision = dict(_VISION[_VISION_OF[cfg.size]])
    if cfg.size == "tiny":  # tiny towers read the env image directly: 8 x 8 patches
        vision.update(image_size=cfg.image_size, patch_size=max(1, cfg.image_size // 8))
    dino = None
    if fuse:
        d = dict(_DINO[_DINO_OF[cfg.size]])
        d.update(image_size=vision["image_size"], patch_size=vision["patch_size"])  # same patch grid as SigLIP
        dino = Dinov2Config(**d)
    text_cls = LlamaConfig if cfg.backbone == "llama" else Qwen2Config
    text = text_cls(**_TEXT[cfg.backbone][cfg.size])
    vision["vision_use_head"] = False  # patch features only: the pooling head would be dead weight
    return OFTVLAConfig(vision_config=SiglipVisionConfig(**vision), dino_config=dino, text_config=text,
                        proprio_dim=cfg.proprio_dim, num_action_tokens=cfg.num_tokens, n_bins=cfg.n_bins,
                        action_head=cfg.action_head, value_detach=cfg.value_detach)


class OFTVLAModel(PreTrainedModel):
    config_class = OFTVLAConfig
    config: OFTVLAConfig
    base_model_prefix = "oft"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: OFTVLAConfig):
        super().__init__(config)
        d_text = config.text_config.hidden_size
        self.vision = SiglipVisionModel(config.vision_config)
        self.dino = Dinov2Model(config.dino_config) if config.dino_config is not None else None
        fused = config.vision_config.hidden_size + (config.dino_config.hidden_size if self.dino is not None else 0)
        if self.dino is not None:  # OpenVLA's fused projector: 3 layers, 4x wide
            self.projector = nn.Sequential(nn.Linear(fused, 4 * fused), nn.GELU(), nn.Linear(4 * fused, d_text),
                                           nn.GELU(), nn.Linear(d_text, d_text))
        else:
            self.projector = nn.Sequential(nn.Linear(fused, d_text), nn.GELU(), nn.Linear(d_text, d_text))
        self.proprio_proj = nn.Sequential(nn.Linear(config.proprio_dim, d_text), nn.GELU(), nn.Linear(d_text, d_text))
        self.llm = AutoModelForCausalLM.from_config(config.text_config)
        self.action_queries = nn.Embedding(config.num_action_tokens, d_text)
        self.gauss_head = nn.Linear(d_text, 2) if config.action_head == "binned_gaussian" else None
        d_v = min(d_text, 512)
        self.value_head = nn.Sequential(nn.Linear(d_text, d_v), nn.GELU(), nn.Linear(d_v, 1))
        centers = -1.0 + (2.0 * torch.arange(config.n_bins) + 1.0) / config.n_bins
        self.register_buffer("bin_centers", centers, persistent=False)
        self.post_init()

    def image_tokens(self, pixel_values, dino_pixel_values=None) -> torch.Tensor:
        feats = self.vision(pixel_values=pixel_values).last_hidden_state
        if self.dino is not None:
            d = self.dino(pixel_values=dino_pixel_values).last_hidden_state[:, 1:]  # drop CLS
            feats = torch.cat([feats, d.to(feats.dtype)], dim=-1)
        return self.projector(feats)

    def forward(self, pixel_values, proprio, input_ids, prompt_mask, dino_pixel_values=None):
        """Returns action-bin logits (n, T, n_bins) and values (n,)."""
        n, T = input_ids.shape[0], self.config.num_action_tokens
        img = self.image_tokens(pixel_values, dino_pixel_values)
        prop = self.proprio_proj(proprio.to(img.dtype))[:, None]
        text = self.llm.get_input_embeddings()(input_ids).to(img.dtype)
        act = self.action_queries.weight[None].expand(n, -1, -1).to(img.dtype)
        embeds = torch.cat([img, prop, text, act], dim=1)
        ones = lambda k: torch.ones(n, k, dtype=torch.bool, device=embeds.device)  # noqa: E731
        valid = torch.cat([ones(img.shape[1] + 1), prompt_mask.bool(), ones(T)], dim=1)
        hidden = self.llm.model(inputs_embeds=embeds, attention_mask=self.block_mask(valid, T),
                                position_ids=valid.long().cumsum(-1) - 1).last_hidden_state[:, -T:]
        v_in = hidden.detach() if self.config.value_detach else hidden
        values = self.value_head(v_in.mean(1)).squeeze(-1)
        return self.bin_logits(hidden), values

    @staticmethod
    def block_mask(valid: torch.Tensor, n_action: int) -> torch.Tensor:
        """(n, 1, S, S) boolean: causal prefix, bidirectional action block, padding hidden as a
        key (each position still sees itself, so padded rows stay finite)."""
        S = valid.shape[1]
        idx = torch.arange(S, device=valid.device)
        allowed = idx[None, :] <= idx[:, None]
        in_act = idx >= S - n_action
        allowed = allowed | (in_act[:, None] & in_act[None, :])
        m = allowed[None] & valid[:, None, :]
        return (m | torch.eye(S, dtype=torch.bool, device=valid.device)[None])[:, None]

    def bin_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.gauss_head is None:
            w = self.llm.get_output_embeddings().weight[-self.config.n_bins:]
            return hidden @ w.to(hidden.dtype).T
        mu, log_s = self.gauss_head(hidden).unbind(-1)
        sigma = log_s.float().clamp(-4.0, 0.5).exp()[..., None]  # floor ~2 bins, as in tiny_vla
        z = (self.bin_centers - torch.tanh(mu.float())[..., None]) / sigma
        return -0.5 * z * z


AutoConfig.register(OFTVLAConfig.model_type, OFTVLAConfig, exist_ok=True)
AutoModel.register(OFTVLAConfig, OFTVLAModel, exist_ok=True)
