"""OFT-style policy: the act / evaluate / sft_loss interface over `OFTVLAModel`."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.utils import logging as hf_logging

from rlvla3.core.types import ObsBatch
from rlvla3.policies.action_tokenizer import ActionTokenizer
from rlvla3.policies.base import ActOutput, EvalOutput
from rlvla3.policies.hf_policy import HFPolicy, LoraSettings, PromptEncoder, pixels, sample_bins
from rlvla3.policies.oft.config import OFTPolicyConfig
from rlvla3.policies.oft.modeling import (DINO_MEAN, DINO_STD, SIGLIP_MEAN, SIGLIP_STD, OFTVLAConfig, OFTVLAModel,
                                          hf_config)

PROMPT = "In: What action should the robot take to {instruction}?\nOut:"  # OpenVLA's prompt

hf_logging.disable_progress_bar()


class OFTPolicy(HFPolicy):
    policy_type = "oft"
    lora_modules_to_save = ["projector", "proprio_proj", "action_queries", "value_head", "gauss_head"]

    def __init__(self, cfg: OFTPolicyConfig, device: str = "cpu", model: nn.Module | None = None,
                 model_config: dict | None = None):
        super().__init__(cfg, device, model, model_config)
        hf = self.core_model.config
        vocab = hf.text_config.vocab_size
        # Word ids sit above 3 special ids and below the action-bin ids.
        self.prompt = PromptEncoder(cfg.max_prompt_tokens, cfg.vocab, first_id=3, tokenizer_path=cfg.tokenizer_path,
                                    template=PROMPT)
        if not cfg.tokenizer_path and 3 + self.prompt.id_span() > vocab - cfg.n_bins:
            raise ValueError(f"policy.oft: vocabulary {vocab} too small for {len(cfg.vocab)} words + {cfg.n_bins} bins")
        self.action_tokenizer = ActionTokenizer(cfg.n_bins)
        self._vision_size = hf.vision_config.image_size
        self._fused = hf.dino_config is not None

    def _build_model(self, model_config: dict | None) -> nn.Module:
        return OFTVLAModel(OFTVLAConfig.from_dict(model_config) if model_config else hf_config(self.cfg))

    def model_config(self) -> dict:
        return self.core_model.config.to_dict()

    def _load_pretrained(self, path: str) -> nn.Module:
        model = OFTVLAModel.from_pretrained(path, local_files_only=True)
        hf = model.config
        if (hf.proprio_dim, hf.num_action_tokens, hf.n_bins) != (self.cfg.proprio_dim, self.cfg.num_tokens,
                                                                 self.cfg.n_bins):
            raise ValueError(f"{path}: checkpoint has proprio {hf.proprio_dim}, {hf.num_action_tokens} action tokens,"
                             f" {hf.n_bins} bins; the config asks for {self.cfg.proprio_dim}, {self.cfg.num_tokens},"
                             f" {self.cfg.n_bins}")
        return model

    @classmethod
    def config_from_dict(cls, raw: dict) -> OFTPolicyConfig:
        raw = dict(raw)
        raw["lora"] = LoraSettings(**raw.get("lora", {}))
        known = {f.name for f in fields(OFTPolicyConfig)}
        return OFTPolicyConfig(**{k: v for k, v in raw.items() if k in known})

    def _inputs(self, obs: ObsBatch):
        ids, mask = self.prompt.encode(obs.instructions)
        dev = self.device
        x = dict(pixel_values=pixels(obs.images, self._vision_size, SIGLIP_MEAN, SIGLIP_STD, dev),
                 proprio=torch.tensor(np.asarray(obs.proprio), dtype=torch.float32, device=dev),
                 input_ids=torch.tensor(ids, device=dev), prompt_mask=torch.tensor(mask, device=dev))
        if self._fused:
            x["dino_pixel_values"] = pixels(obs.images, self._vision_size, DINO_MEAN, DINO_STD, dev)
        return x

    def _core(self, **inputs):
        with self.autocast():
            logits, values = self.model(**inputs)
        return logits.float(), values.float()

    @torch.no_grad()
    def act(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0) -> ActOutput:
        self.model.eval()
        logits, values = self._forward(**self._inputs(obs))
        tokens, logp = sample_bins(logits, deterministic, temperature)
        tok = tokens.cpu().numpy()
        actions = self.action_tokenizer.decode(tok).reshape(len(obs), self.chunk_size, self.action_dim)
        return ActOutput(actions, tok, logp.cpu().numpy(), values.cpu().numpy(), self.version)

    def evaluate(self, obs: ObsBatch, tokens) -> EvalOutput:
        self.model.train()
        logits, values = self._forward(**self._inputs(obs))
        logp_all = F.log_softmax(logits, dim=-1)
        tok = torch.tensor(np.asarray(tokens), dtype=torch.long, device=self.device)  # copy: Ray arrays are read-only
        logp = logp_all.gather(-1, tok[..., None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return EvalOutput(logp, entropy, values)

    def sft_loss(self, obs: ObsBatch, actions: np.ndarray) -> torch.Tensor:
        """Cross-entropy on the bins of expert action chunks (n, chunk, action_dim)."""
        self.model.train()
        logits, _ = self._forward(**self._inputs(obs))
        target = torch.as_tensor(self.action_tokenizer.encode(actions).reshape(len(obs), -1), device=self.device)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
