"""The trainer's reference policy for `algo.kl_ref_coef`: the weights RL started from.

The trainer builds its policy from `policy.init_from` (the SFT checkpoint) and only then loads
a resumed run's checkpoint, so a copy taken at construction is the SFT policy on a fresh run
and on a resumed one alike. With LoRA the frozen base is the reference and no copy is made
(`HFPolicy.reference`): the KL is then to the base model, as in RLHF with adapters.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch

from rlvla3.core.types import SampleBatch


class ReferencePolicy:
    def __init__(self, policy):
        lora = getattr(getattr(policy, "cfg", None), "lora", None)  # the HF families' LoraSettings
        self._lora = bool(lora and lora.enabled)
        self._own: Optional[object] = None if self._lora else copy.deepcopy(policy)
        if self._own is not None:
            for p in self._own.parameters():
                p.requires_grad_(False)

    def logp(self, policy, mb: SampleBatch) -> torch.Tensor:
        """Token log-probs (N, T) of `mb`'s sampled tokens under the reference, without grad.
        `policy`: the trainer's policy (its frozen base serves with LoRA)."""
        with torch.no_grad():
            if self._lora:
                with policy.reference():
                    return policy.evaluate(mb.obs(), mb.tokens).logp.detach()
            return self._own.evaluate(mb.obs(), mb.tokens).logp.detach()
