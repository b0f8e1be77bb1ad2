"""The loss terms of one micro-batch, assembled from `core/losses.py` for the trainer.

The trainer owns gradient accumulation (and the deferred advantage normalisation of a
streamed batch, which needs the policy-gradient term apart from the others); this holds what
the loss is: the PPO or decoupled-PPO surrogate at `algo.logprob_level`, the value loss and
the entropy bonus, each over the sub-actions the env executed only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from rlvla3.core import losses as L
from rlvla3.core.types import SampleBatch


class MicroLoss:
    """`out`: the policy's `evaluate` on `mb` (with grad); `prox`: proximal token log-probs
    (stale samples) or None (fresh: behaviour = proximal, plain PPO). `warmup`: the policy
    terms are left out (PPO critic warm-up)."""

    def __init__(self, algo, out, mb: SampleBatch, prox: Optional[torch.Tensor], chunk: int, action_dim: int,
                 device, warmup: bool = False):
        self.algo, self.device = algo, device
        # An episode that ended mid-chunk never ran the chunk's later sub-actions: they leave
        # the ratio, the statistics and the entropy bonus.
        tok = L.executed_tokens(mb.executed, chunk, action_dim, device)
        agg = lambda x: L.aggregate_logprobs(x, chunk, action_dim, algo.logprob_level, tok)  # noqa: E731
        self.mask = L.ratio_mask(tok, chunk, action_dim, algo.logprob_level)
        behav = torch.tensor(mb.logp, device=device)  # a copy: Ray hands over read-only arrays
        self.new, self.behav = agg(out.logp), agg(behav)
        self.prox = agg(prox) if prox is not None else None
        self.rest = torch.zeros((), device=device)  # the terms that do not depend on the advantages
        self.stats = {f"kl_behav_{k}": v for k, v in L.kl_estimates(behav[tok], out.logp.detach()[tok]).items()}
        if algo.name == "ppo":
            vl = L.value_loss(out.values, torch.tensor(mb.values, device=device),
                              torch.tensor(mb.returns, device=device), algo.value_clip if algo.value_clip > 0 else None)
            self.rest = self.rest + algo.vf_coef * vl
            self.stats["value_loss"] = float(vl.detach())
        ent = L.entropy_mean(out.entropy, tok)
        if algo.ent_coef > 0 and not warmup:
            self.rest = self.rest - algo.ent_coef * ent
        self.stats["entropy"] = float(ent.detach())

    def policy_loss(self, advantages) -> tuple:
        """(surrogate loss, its statistics) for these advantages (N,)."""
        a = self.algo
        adv = torch.tensor(np.asarray(advantages, np.float32), device=self.device)  # a copy: Ray arrays are read-only
        dual = a.dual_clip if a.dual_clip > 0 else None
        if self.prox is None:
            return L.ppo_policy_loss(self.new, self.behav, adv, a.clip_low, a.clip_high, dual, mask=self.mask)
        return L.decoupled_ppo_loss(self.new, self.prox, self.behav, adv, a.clip_low, a.clip_high, dual,
                                    a.behav_weight_cap, mask=self.mask)
