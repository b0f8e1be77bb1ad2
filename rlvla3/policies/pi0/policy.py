"""pi0-style flow policy: the act / evaluate / sft_loss interface over `PI0FlowModel`.

The "tokens" a flow policy emits are its denoising chain, flattened to (n, (K+1) * chunk *
width) float32: what the trainer needs to recompute the chunk's log-prob. Log-probs are per
(step, action dim), shape (n, chunk * action_dim), like the binned policies', so the
token / action / chunk ratio levels mean the same thing for both families.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
from transformers.utils import logging as hf_logging

from rlvla3.core.types import ObsBatch
from rlvla3.policies.base import ActOutput, EvalOutput
from rlvla3.policies.hf_policy import HFPolicy, PromptEncoder, pixels
from rlvla3.policies.pi0.config import PI0PolicyConfig
from rlvla3.policies.pi0.modeling import SIGLIP_MEAN, SIGLIP_STD, PI0FlowModel, hf_config, load_pi0

hf_logging.disable_progress_bar()
BOS = 2  # Gemma's


class PI0Policy(HFPolicy):
    policy_type = "pi0"
    config_class = PI0PolicyConfig
    lora_modules_to_save = ["value_head", "noise_head", "embed_action_time", "action_out_proj"]

    def __init__(self, cfg: PI0PolicyConfig, device: str = "cpu", model: nn.Module | None = None,
                 model_config: dict | None = None):
        super().__init__(cfg, device, model, model_config)
        c = self.core_model.pi0.config
        self._vision_size = c.vlm_config.vision_config.image_size
        patches = (self._vision_size // c.vlm_config.vision_config.patch_size) ** 2
        self._image_ids = np.full(patches, c.vlm_config.image_token_id, np.int64)
        self.prompt = PromptEncoder(cfg.max_prompt_tokens - 1, cfg.vocab, first_id=3,
                                    tokenizer_path=cfg.tokenizer_path)
        vocab = c.vlm_config.text_config.vocab_size
        if not cfg.tokenizer_path and 3 + self.prompt.id_span() > vocab:
            raise ValueError(f"policy.pi0: vocabulary {vocab} too small for {len(cfg.vocab)} words")
        if not cfg.noise_learnable:
            self.core_model.noise_head.requires_grad_(False)

    def _wrap(self, pi0) -> PI0FlowModel:
        c = self.cfg
        return PI0FlowModel(pi0, c.action_dim, c.noise_init, c.noise_min, c.noise_max, c.value_detach)

    def _build_model(self, model_config: dict | None) -> nn.Module:
        from transformers import PI0Config, PI0ForConditionalGeneration

        hf = PI0Config.from_dict(model_config) if model_config else hf_config(self.cfg)
        return self._wrap(PI0ForConditionalGeneration(hf))

    def model_config(self) -> dict:
        return self.core_model.pi0.config.to_dict()

    def _load_pretrained(self, path: str) -> nn.Module:
        pi0 = load_pi0(path)
        c = pi0.config
        if (c.chunk_size, c.max_state_dim, c.max_action_dim) != (self.cfg.chunk_size, self.cfg.state_width,
                                                                 self.cfg.action_width):
            raise ValueError(f"{path}: checkpoint has chunk {c.chunk_size}, state {c.max_state_dim}, action "
                             f"{c.max_action_dim}; the config asks for {self.cfg.chunk_size}, "
                             f"{self.cfg.state_width}, {self.cfg.action_width} (policy.pi0.max_*_dim)")
        return self._wrap(pi0)

    # --- inputs ----------------------------------------------------------------------------
    def _inputs(self, obs: ObsBatch):
        n, dev = len(obs), self.device
        words, wmask = self.prompt.encode(obs.instructions)
        ids = np.concatenate([np.tile(self._image_ids, (n, 1)), np.full((n, 1), BOS), words], axis=1)
        mask = np.concatenate([np.ones((n, len(self._image_ids) + 1), bool), wmask], axis=1)
        px = pixels(obs.images, self._vision_size, SIGLIP_MEAN, SIGLIP_STD, dev)[:, None]  # one camera
        state = torch.zeros(n, self.cfg.state_width, device=dev)
        state[:, : self.cfg.proprio_dim] = torch.tensor(np.asarray(obs.proprio), dtype=torch.float32, device=dev)
        return dict(input_ids=torch.tensor(ids, device=dev), pixel_values=px,
                    pixel_attention_mask=torch.ones(n, 1, dtype=torch.bool, device=dev),
                    attention_mask=torch.tensor(mask, dtype=torch.long, device=dev)), state

    # --- interface -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0) -> ActOutput:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model.eval()
        prefix_in, state = self._inputs(obs)
        n = len(obs)
        scale = torch.full((n, 1, 1), 0.0 if deterministic else float(temperature), device=self.device)
        chain, logp, values = self._infer(state=state, noise_scale=scale, **prefix_in)
        actions = chain[:, -1, :, : self.action_dim].clamp(-1, 1).float().cpu().numpy()
        return ActOutput(actions, chain.float().reshape(n, -1).cpu().numpy(),
                         logp.reshape(n, -1).float().cpu().numpy(), values.cpu().numpy(), self.version)

    def _act_core(self, state, noise_scale, **prefix_in):
        """The prefix, the heads and the sampled chain: the whole of `act` on the device
        (replayed from CUDA graphs under generator.cuda_graphs)."""
        m = self.core_model
        with self.autocast():
            cache, pooled = m.prefix(**prefix_in)
            values, log_sigma = m.heads(pooled)
            chain, logp = m.sample_chain(state, cache, prefix_in["attention_mask"], log_sigma, self.cfg.num_steps,
                                         noise_scale)
        return chain, logp, values

    def evaluate(self, obs: ObsBatch, tokens) -> EvalOutput:
        self.model.train()
        m, (prefix_in, state) = self.core_model, self._inputs(obs)
        chain = torch.tensor(np.asarray(tokens), dtype=torch.float32, device=self.device)  # copy: read-only input
        chain = chain.reshape(len(obs), self.cfg.num_steps + 1, self.cfg.chunk_size, self.cfg.action_width)
        with self.autocast():
            cache, pooled = m.prefix(**prefix_in)
            values, log_sigma = m.heads(pooled)
            logp, entropy = m.chain_logp(chain, state, cache, prefix_in["attention_mask"], log_sigma)
        n = len(obs)
        return EvalOutput(logp.reshape(n, -1).float(), entropy.reshape(n, -1).float(), values)

    def sft_loss(self, obs: ObsBatch, actions: np.ndarray) -> torch.Tensor:
        """Flow matching (pi0's own objective) on expert chunks (n, chunk, action_dim)."""
        self.model.train()
        prefix_in, state = self._inputs(obs)
        n = len(obs)
        target = torch.zeros(n, self.chunk_size, self.cfg.action_width, device=self.device)
        target[..., : self.action_dim] = torch.as_tensor(np.asarray(actions), dtype=torch.float32,
                                                         device=self.device)
        with self.autocast():
            out = self.core_model.pi0(state=state, actions=target, **prefix_in)
        return out.loss.float()
