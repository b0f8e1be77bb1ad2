"""Shared machinery of the transformers-backed VLAs (OFT-style, pi0-style).

A family provides `_build_model()` (an `nn.Module` built from its dataclass config) and
the act/evaluate/sft_loss maths; this base class owns what is the same for all of them:
device and bf16 autocast, optional LoRA through peft, the weights exchanged with
generators, and the checkpoint layout:

    DIR/config.json         {"policy_type", "version", "config": <family dataclass>,
                             "model_config": <the transformers config: the exact shapes>}
    DIR/model.safetensors   every tensor of the (LoRA-wrapped) model, or, with LoRA on a
                            `pretrained` base checkpoint, only the trainable ones
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rlvla3.core.config_checks import check
from rlvla3.policies.checkpoint_files import (CONFIG_NAME, checkpoint_paths, load_weights, read_config, read_weights,
                                              write_weights)
from rlvla3.policies.host_copy import host_tensors
from rlvla3.policies.text_tokenizer import WordTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class LoraSettings:
    enabled: bool = False
    rank: int = 16  # peft's `r`
    alpha: int = 32
    dropout: float = 0.0
    # Linear layers of the language model / action expert (Llama, Qwen2 and Gemma share these
    # names); vision towers stay frozen unless listed.
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])

    def validate(self, prefix: str) -> None:
        ok = self.rank >= 1 and self.alpha > 0 and 0 <= self.dropout < 1 and bool(self.target_modules)
        check(not self.enabled or ok, f"{prefix}.lora needs rank >= 1, alpha > 0, dropout in [0, 1) and target_modules, "
              f"got rank={self.rank} alpha={self.alpha} dropout={self.dropout}")


class PromptEncoder:
    """Instruction -> fixed-length token ids. A local HF tokenizer directory when given (real
    checkpoints), else the word tokenizer of the config mapped to ids [first_id, ...)."""

    def __init__(self, max_len: int, vocab: List[str], first_id: int, tokenizer_path: str = "",
                 template: str = "{instruction}"):
        self.max_len, self.template, self.first_id = max_len, template, first_id
        self.hf = None
        if tokenizer_path:
            from transformers import AutoTokenizer

            self.hf = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)
        self.words = WordTokenizer(vocab, max_len)
        self._cache: dict = {}

    def id_span(self) -> int:
        """Ids the word tokenizer uses above first_id (pad and unknown included)."""
        return self.words.vocab_size

    def encode_one(self, text: str):
        if text not in self._cache:
            if self.hf is not None:
                ids = self.hf(self.template.format(instruction=text.lower()), add_special_tokens=True)["input_ids"]
                ids = np.asarray(ids[: self.max_len], dtype=np.int64)
            else:
                raw = self.words.encode([text])[0]
                ids = raw[raw > 0] + self.first_id
            row, mask = np.zeros(self.max_len, np.int64), np.zeros(self.max_len, bool)
            row[: len(ids)], mask[: len(ids)] = ids, True
            self._cache[text] = (row, mask)
        return self._cache[text]

    def encode(self, texts: List[str]):
        rows = [self.encode_one(t) for t in texts]
        return np.stack([r for r, _ in rows]), np.stack([m for _, m in rows])


def pixels(images: np.ndarray, size: int, mean, std, device, dtype=torch.float32) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, size, size) normalised floats (resized when H != size)."""
    x = torch.tensor(np.asarray(images), device=device).permute(0, 3, 1, 2).to(dtype).div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    m = torch.tensor(mean, device=device, dtype=dtype)[None, :, None, None]
    s = torch.tensor(std, device=device, dtype=dtype)[None, :, None, None]
    return (x - m) / s


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class HFPolicy:
    """Base of the transformers-backed policies (see the module docstring)."""

    policy_type = ""
    config_class: type = object  # the family's config dataclass
    lora_modules_to_save: List[str] = []  # heads trained in full under LoRA (new, not in the base)

    def __init__(self, cfg, device: str = "cpu", model: nn.Module | None = None, model_config: dict | None = None):
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(device)
        self.version = 0
        if model is None:
            with self.device:  # initialise in place: a 1B model is slow to fill on CPU cores
                model = self._load_pretrained(cfg.pretrained) if cfg.pretrained else self._build_model(model_config)
        if cfg.gradient_checkpointing:
            for m in model.modules():
                if hasattr(m, "gradient_checkpointing_enable") and m is not model:
                    m.gradient_checkpointing_enable()
        self.model = self._wrap_lora(model).to(self.device)
        self._forward = torch.compile(self._core, dynamic=True) if cfg.compile else self._core
        self._infer = self._act_core  # act's device work: CUDA graphs replace it on a generator (use_cuda_graphs)
        self._autocast_cache = True

    chunk_size = property(lambda self: self.cfg.chunk_size)
    action_dim = property(lambda self: self.cfg.action_dim)
    proprio_dim = property(lambda self: self.cfg.proprio_dim)
    image_size = property(lambda self: self.cfg.image_size)

    # --- family hooks ----------------------------------------------------------------------
    def _build_model(self, model_config: dict | None) -> nn.Module:
        """Random init from a saved transformers config, or from the config's named size."""
        raise NotImplementedError

    def model_config(self) -> dict:
        """The transformers config of the model (saved with checkpoints: sizes may change in code)."""
        raise NotImplementedError

    def _load_pretrained(self, path: str) -> nn.Module:
        """The family's HF model from a local checkpoint directory (no hub access)."""
        raise NotImplementedError

    def _core(self, *args, **kwargs):
        raise NotImplementedError

    def _act_core(self, **inputs):
        """What `act` runs on the device, from tensors of a leading batch dimension to a tuple of them."""
        return self._forward(**inputs)

    # --- LoRA ----------------------------------------------------------------------------
    def _wrap_lora(self, model: nn.Module) -> nn.Module:
        lora = self.cfg.lora
        if not lora.enabled:
            return model
        from peft import LoraConfig, get_peft_model

        pcfg = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=list(lora.target_modules), modules_to_save=list(self.lora_modules_to_save))
        return get_peft_model(model, pcfg)

    @property
    def core_model(self) -> nn.Module:
        """The family's model, LoRA layers included, without peft's outer wrapper."""
        return self.model.get_base_model() if self.cfg.lora.enabled else self.model

    def reference(self):
        """Context in which the policy is the frozen base (LoRA off): a free reference policy."""
        if not self.cfg.lora.enabled:
            raise ValueError("a reference policy needs LoRA (policy.<family>.lora.enabled=true)")
        return self.model.disable_adapter()

    def export_adapter(self, path: str) -> None:
        """peft layout (adapter_config.json + adapter_model.safetensors)."""
        if not self.cfg.lora.enabled:
            raise ValueError("export_adapter needs LoRA")
        self.model.save_pretrained(path)

    def load_adapter(self, path: str) -> None:
        """Adapter weights from a directory written by `export_adapter` (peft layout)."""
        if not self.cfg.lora.enabled:
            raise ValueError("load_adapter needs LoRA")
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, read_weights(os.path.join(path, "adapter_model.safetensors")))
        missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if missing:
            raise ValueError(f"{path}: adapter tensors this policy does not have: {missing[:5]}")

    def merged_model(self) -> nn.Module:
        """LoRA folded into the base weights: a plain model for export (this policy's copy is kept)."""
        if not self.cfg.lora.enabled:
            return self.model
        import copy

        return copy.deepcopy(self.model).merge_and_unload()

    # --- numerics ------------------------------------------------------------------------
    def autocast(self):
        if self.cfg.dtype == "float32":
            return contextlib.nullcontext()
        # no cast cache under CUDA graphs: a cached cast would outlive the captured forward
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.cfg.dtype],
                              cache_enabled=self._autocast_cache)

    def use_cuda_graphs(self, max_batch: int, capture=None):
        """Serve `act` from CUDA graphs captured per batch-size bucket up to `max_batch`
        (generator.cuda_graphs). Only for inference replicas: training keeps the eager forward.
        `capture`: tests pass an eager stand-in (cuda_graphs.GraphedForward). Returns the
        GraphedForward (its buckets and replay counts)."""
        from rlvla3.policies import GRAPHABLE
        from rlvla3.policies.cuda_graphs import GraphedForward, buckets_for, cuda_capture

        if self.policy_type not in GRAPHABLE:
            raise ValueError(f"generator.cuda_graphs: policy {self.policy_type!r} has no graphable forward")
        if capture is None and self.device.type != "cuda":
            raise ValueError(f"generator.cuda_graphs needs the policy on a GPU, not {self.device}")
        if self.cfg.compile:
            raise ValueError("generator.cuda_graphs and policy compile=true exclude each other")
        self._autocast_cache = False
        self._infer = GraphedForward(self._act_core, buckets_for(max_batch), self.device, capture or cuda_capture)
        return self._infer

    # --- weights -------------------------------------------------------------------------
    def parameters(self):
        """Trainable parameters (all of them, or the adapter and saved heads under LoRA)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def state_dict(self, dtype: Optional[torch.dtype] = None) -> dict:
        """What a generator needs to follow the trainer: everything, or only the trainable
        tensors under LoRA (the frozen base never changes). `dtype`: as `Policy.state_dict` (base.py)."""
        if self.cfg.lora.enabled:
            return host_tensors(((k, p) for k, p in self.model.named_parameters() if p.requires_grad), dtype)
        return host_tensors(self.model.state_dict().items(), dtype)

    def load_state_dict(self, state: dict) -> None:
        state = {k: v if isinstance(v, torch.Tensor) else torch.tensor(v) for k, v in state.items()}
        if not self.cfg.lora.enabled:
            self.model.load_state_dict(state)
            return
        own = dict(self.model.named_parameters())
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise RuntimeError(f"unexpected tensors for this LoRA policy: {unknown[:5]}")
        self.model.load_state_dict(state, strict=False)

    def _slim(self) -> bool:
        """LoRA on a pretrained base: checkpoints hold the trainable tensors only."""
        return self.cfg.lora.enabled and bool(self.cfg.pretrained)

    def save_pretrained(self, path: str, full: dict | None = None) -> None:
        """`full`: every tensor of the model already on the CPU (an FSDP trainer gathers them)."""
        if full is None:
            full = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if self._slim():
            full = {k: full[k] for k, p in self.model.named_parameters() if p.requires_grad}
        write_weights(full, path)
        with open(os.path.join(path, CONFIG_NAME), "w") as f:
            json.dump({"policy_type": self.policy_type, "version": self.version, "config": asdict(self.cfg),
                       "model_config": self.model_config()}, f, indent=2)

    @classmethod
    def config_from_dict(cls, raw: dict):
        """The family config from its saved dict (unknown keys of other versions ignored)."""
        lora = dict(raw.get("lora", {}))
        if "r" in lora:  # checkpoints written before `lora.r` became `lora.rank`
            lora["rank"] = lora.pop("r")
        raw = dict(raw, lora=LoraSettings(**lora))
        known = {f.name for f in fields(cls.config_class)}
        return cls.config_class(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu"):
        cfg_path, w_path = checkpoint_paths(path)

        def parse(raw: dict):
            cfg = cls.config_from_dict(raw["config"])
            cfg.validate()
            return cfg

        raw, cfg = read_config(cfg_path, parse)
        policy = cls(cfg, device=device, model_config=raw.get("model_config"))
        load_weights(policy.load_state_dict if policy._slim() else policy.model.load_state_dict, w_path, cfg_path)
        policy.version = int(raw.get("version", 0))
        return policy

