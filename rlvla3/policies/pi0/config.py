"""pi0-style flow policy config (plain dataclass; `modeling.hf_config` builds the PI0Config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from rlvla3.core.config_checks import check, check_at_least, check_choice
from rlvla3.policies.hf_policy import DTYPES, LoraSettings
from rlvla3.policies.text_tokenizer import DEFAULT_VOCAB

SIZES = ("tiny", "small", "full")


@dataclass
class PI0PolicyConfig:
    size: str = "tiny"  # tiny (CPU tests) | small (~0.5B) | full (pi0: PaliGemma-3B + Gemma-300M expert)
    # Env-facing dims; 0 = taken from the env at config load (run configs), set them when building
    # a policy by hand. Images are resized to the vision tower's input when sizes differ.
    image_size: int = 0
    proprio_dim: int = 0
    action_dim: int = 0
    chunk_size: int = 4
    max_state_dim: int = 0  # padded state width of the model; 0 = proprio_dim (full: 32, as published)
    max_action_dim: int = 0  # padded action width; 0 = action_dim (full: 32)
    num_steps: int = 4  # denoising steps per action chunk (pi0 uses 10)
    # Flow-Noise: each denoising step adds Gaussian noise, so the chunk has a density (the
    # product of the step transitions) that PPO/GRPO can ratio. sigma is learned per action
    # element from the expert's state, bounded to [noise_min, noise_max].
    noise_init: float = 0.2
    noise_min: float = 0.02
    noise_max: float = 0.5
    noise_learnable: bool = True  # false: fixed sigma = noise_init
    value_detach: bool = True  # the value head reads detached prefix features
    max_prompt_tokens: int = 16
    tokenizer_path: str = ""  # local HF tokenizer dir (PaliGemma's) for real checkpoints; "" = word tokenizer
    vocab: List[str] = field(default_factory=lambda: list(DEFAULT_VOCAB))
    pretrained: str = ""  # local PI0 checkpoint: transformers layout, or lerobot layout (keys renamed on load)
    dtype: str = "float32"  # float32 | bfloat16 (autocast)
    compile: bool = False
    gradient_checkpointing: bool = False  # not supported: PI0 needs the prefix KV cache that checkpointing turns off
    lora: LoraSettings = field(default_factory=LoraSettings)

    @property
    def state_width(self) -> int:
        return self.max_state_dim or (32 if self.size == "full" else self.proprio_dim)

    @property
    def action_width(self) -> int:
        return self.max_action_dim or (32 if self.size == "full" else self.action_dim)

    def validate(self) -> None:
        p = "policy.pi0"
        check_choice(self.size, SIZES, f"{p}.size")
        check_choice(self.dtype, DTYPES, f"{p}.dtype")
        check_at_least(self, p, 1, "image_size", "proprio_dim", "action_dim", "chunk_size", "num_steps",
                       "max_prompt_tokens")
        check(self.state_width >= self.proprio_dim and self.action_width >= self.action_dim,
              f"{p}.max_state_dim / max_action_dim must be >= proprio_dim / action_dim")
        check(0 < self.noise_min <= self.noise_init <= self.noise_max, f"{p} needs 0 < noise_min <= noise_init <= "
              f"noise_max, got {self.noise_min}, {self.noise_init}, {self.noise_max}")
        check(not self.gradient_checkpointing, f"{p}.gradient_checkpointing is not supported: transformers turns the "
              "KV cache off under checkpointing, and the action expert reads the prefix from it (use LoRA or bf16)")
        self.lora.validate(p)
