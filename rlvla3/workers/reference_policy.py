"""The trainer's reference policy for `algo.kl_ref_coef`: the weights RL started from.

The trainer builds its policy from `policy.init_from` (the SFT checkpoint) and only then loads
a resumed run's checkpoint, so a copy taken at construction is the SFT policy on a fresh run
and on a resumed one alike. With LoRA the frozen base is the reference and no copy is made
(`HFPolicy.reference`): the KL is then to the base model, as in RLHF with adapters.

The reference never changes, so a sample's log-probs under it are computed once and kept by
sample id: `algo.update_epochs` passes over a batch pay for one reference forward, not one
per pass (the forward cost 15% of MT10's throughput on the 2-core VM before the cache).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch

from rlvla3.core.types import SampleBatch


class ReferencePolicy:
    def __init__(self, policy, cache_rows: int = 16384):
        lora = getattr(getattr(policy, "cfg", None), "lora", None)  # the HF families' LoraSettings
        self._lora = bool(lora and lora.enabled)
        self._own: Optional[object] = None if self._lora else copy.deepcopy(policy)
        if self._own is not None:
            for p in self._own.parameters():
                p.requires_grad_(False)
        self._cache: "OrderedDict[int, torch.Tensor]" = OrderedDict()  # sample id -> (T,) log-probs
        self._cache_rows = cache_rows  # the oldest rows go first (a batch is done with after its epochs)
        self.forwards = 0  # samples that went through the reference model (the cache's misses)

    def logp(self, policy, mb: SampleBatch) -> torch.Tensor:
        """Token log-probs (N, T) of `mb`'s sampled tokens under the reference, without grad.
        `policy`: the trainer's policy (its frozen base serves with LoRA)."""
        ids = np.asarray(getattr(mb, "sample_ids", ()), np.int64)
        if len(ids) == 0 or len(np.unique(ids)) != len(ids):  # no ids to key on: compute
            return self._forward(policy, mb)
        keys = ids.tolist()
        if all(k in self._cache for k in keys):
            return torch.stack([self._cache[k] for k in keys])
        out = self._forward(policy, mb)
        for i, row in zip(keys, out):
            self._cache[i] = row
        while len(self._cache) > self._cache_rows:
            self._cache.popitem(last=False)
        return out

    def _forward(self, policy, mb) -> torch.Tensor:
        self.forwards += len(mb.tokens)
        with torch.no_grad():
            if self._lora:
                with policy.reference():
                    return policy.evaluate(mb.obs(), mb.tokens).logp.detach()
            return self._own.evaluate(mb.obs(), mb.tokens).logp.detach()
