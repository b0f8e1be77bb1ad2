"""OFT-style VLA config: the env-facing dims, the named size and the training knobs.

Plain dataclass (no transformers import) so run configs can hold it; `hf_config()` in
`modeling.py` turns it into the transformers config of the chosen size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from rlvla3.core.config_checks import check_at_least, check_choice
from rlvla3.policies.hf_policy import DTYPES, LoraSettings
from rlvla3.policies.text_tokenizer import DEFAULT_VOCAB

SIZES = ("tiny", "small", "1b", "7b")
BACKBONES = ("llama", "qwen2")
HEADS = ("logits", "binned_gaussian")


@dataclass
class OFTPolicyConfig:
    size: str = "tiny"  # tiny (CPU tests) | small (~0.4B) | 1b | 7b (OpenVLA-OFT shapes)
    backbone: str = "llama"  # llama | qwen2: the decoder family
    fuse_dino: bool = False  # add a DINOv2 tower next to SigLIP (OpenVLA's fused encoder; on for 7b)
    # Env-facing dims; 0 = taken from the env at config load (run configs), set them when building
    # a policy by hand. Images are resized to the vision tower's input when sizes differ.
    image_size: int = 0
    proprio_dim: int = 0
    action_dim: int = 0
    chunk_size: int = 4
    n_bins: int = 256  # action bins = the last n_bins ids of the vocabulary
    action_head: str = "logits"  # logits (OFT: LM head rows of the bin tokens) | binned_gaussian (see tiny_vla)
    value_detach: bool = True  # the value head reads detached features
    max_prompt_tokens: int = 16
    tokenizer_path: str = ""  # local HF tokenizer dir for real checkpoints; "" = word tokenizer over `vocab`
    vocab: List[str] = field(default_factory=lambda: list(DEFAULT_VOCAB))
    pretrained: str = ""  # local HF checkpoint of the OFT model (save_pretrained layout) to start from
    dtype: str = "float32"  # float32 | bfloat16 (autocast; weights and optimizer stay float32)
    compile: bool = False  # torch.compile the forward
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)

    @property
    def num_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    def validate(self) -> None:
        p = "policy.oft"
        check_choice(self.size, SIZES, f"{p}.size")
        check_choice(self.backbone, BACKBONES, f"{p}.backbone")
        check_choice(self.action_head, HEADS, f"{p}.action_head")
        check_choice(self.dtype, DTYPES, f"{p}.dtype")
        check_at_least(self, p, 1, "image_size", "proprio_dim", "action_dim", "chunk_size", "max_prompt_tokens")
        check_at_least(self, p, 2, "n_bins")
        self.lora.validate(p)
