"""OFT-style policy: the act / evaluate / sft_loss interface over `OFTVLAModel`."""

from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
from transformers.utils import logging as hf_logging

from rlvla3.core.types import ObsBatch
from rlvla3.policies.action_tokenizer import ActionTokenizer, bins_cross_entropy, bins_logp_entropy, sample_bins
from rlvla3.policies.base import ActOutput, EvalOutput
from rlvla3.policies.hf_policy import HFPolicy, PromptEncoder, pixels
from rlvla3.policies.oft.config import OFTPolicyConfig
from rlvla3.policies.oft.modeling import (DINO_MEAN, DINO_STD, SIGLIP_MEAN, SIGLIP_STD, OFTVLAConfig, OFTVLAModel,
                                          hf_config)

PROMPT = "In: What action should the robot take to {instruction}?\nOut:"  # OpenVLA's prompt

hf_logging.disable_progress_bar()


class OFTPolicy(HFPolicy):
    policy_type = "oft"
    config_class = OFTPolicyConfig
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
        logits, values = self._infer(**self._inputs(obs))
        tokens, logp = sample_bins(logits, deterministic, temperature)
        tok = tokens.cpu().numpy()
        actions = self.action_tokenizer.decode(tok).reshape(len(obs), self.chunk_size, self.action_dim)
        return ActOutput(actions, tok, logp.cpu().numpy(), values.cpu().numpy(), self.version)

    def evaluate(self, obs: ObsBatch, tokens) -> EvalOutput:
        self.model.train()
        logits, values = self._forward(**self._inputs(obs))
        logp, entropy = bins_logp_entropy(logits, tokens)
        return EvalOutput(logp, entropy, values)

    def sft_loss(self, obs: ObsBatch, actions: np.ndarray) -> torch.Tensor:
        """Cross-entropy on the bins of expert action chunks (n, chunk, action_dim)."""
        self.model.train()
        logits, _ = self._forward(**self._inputs(obs))
        return bins_cross_entropy(logits, self.action_tokenizer, actions)
