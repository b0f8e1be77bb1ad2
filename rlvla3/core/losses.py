"""Policy / value losses for PPO-style training of token-discretised VLA policies (torch).

A sample is one policy decision: an action chunk of ``chunk`` steps x
``action_dim`` dims, emitted as T = chunk * action_dim discrete tokens laid out
step-major (token = step * action_dim + dim). Log-probs arrive per token and can
be aggregated to the granularity at which the importance ratio is taken.

All losses are differentiable only w.r.t. ``logp_new`` / ``values_new``; every
other input is detached so callers cannot leak gradients into stale tensors.
Stats are python floats, computed without grad, over masked-in elements only.

`MicroLoss` (at the end) assembles the terms of one micro-batch for the trainer. The trainer
owns gradient accumulation (and the deferred advantage normalisation of a streamed batch,
which needs the policy-gradient term apart from the others); `MicroLoss` holds what the loss
is: the PPO or decoupled-PPO surrogate at `algo.logprob_level`, the value loss, the
entropy bonus and the KL penalty to a reference policy, each over the sub-actions the env
executed only.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from rlvla3.core.types import SampleBatch

_LEVELS = ("token", "action", "chunk")


def executed_tokens(executed, chunk: int, action_dim: int, device=None) -> torch.Tensor:
    """(N, chunk * action_dim) bool: the tokens of the sub-actions the env executed.

    An episode that ends in the middle of a chunk executes only its first ``executed[i]``
    sub-actions; the others never reached the env, so they must not enter the ratio.
    A negative count means the whole chunk.
    """
    e = torch.tensor(np.asarray(executed, np.int64), device=device).reshape(-1)  # a copy: Ray arrays are read-only
    e = torch.where(e < 0, torch.full_like(e, chunk), e)
    step = torch.arange(chunk, device=device).repeat_interleave(action_dim)  # sub-action of each token
    return step[None, :] < e[:, None]


def ratio_mask(token_mask: torch.Tensor, chunk: int, action_dim: int, level: str) -> torch.Tensor:
    """(N, K) bool: the ratio units of ``level`` that hold executed tokens (see
    ``executed_tokens``); the loss's ``mask``."""
    if level not in _LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {_LEVELS}")
    if level == "token":
        return token_mask
    if level == "action":
        return token_mask.reshape(token_mask.shape[0], chunk, action_dim).any(dim=-1)
    return token_mask.any(dim=-1, keepdim=True)


def aggregate_logprobs(logp: torch.Tensor, chunk: int, action_dim: int, level: str,
                       token_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum token log-probs (N, T) into ratio units (N, K).

    "token" -> K=T (unchanged), "action" -> K=chunk (joint prob of one step's
    dims), "chunk" -> K=1 (joint prob of the whole decision). Tokens outside
    ``token_mask`` count as log-prob 0 (no gradient): a chunk's joint prob is then
    that of its executed sub-actions.
    """
    if level not in _LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {_LEVELS}")
    if logp.dim() != 2 or logp.shape[1] != chunk * action_dim:
        raise ValueError(
            f"logp shape {tuple(logp.shape)} does not match (N, chunk*action_dim={chunk * action_dim})")
    if token_mask is not None:
        logp = torch.where(token_mask, logp, torch.zeros_like(logp))
    if level == "token":
        return logp
    if level == "action":
        return logp.reshape(logp.shape[0], chunk, action_dim).sum(dim=-1)
    return logp.sum(dim=-1, keepdim=True)


def _weights(mask, like: torch.Tensor) -> torch.Tensor:
    """Per-element 0/1 weights shaped like ``like`` from a per-sample (N,) mask."""
    if mask is None:
        return torch.ones_like(like)
    m = torch.as_tensor(mask, dtype=like.dtype, device=like.device).detach()
    if m.shape == like.shape:
        return m
    if m.dim() != 1 or m.shape[0] != like.shape[0]:
        raise ValueError(f"mask shape {tuple(m.shape)} incompatible with {tuple(like.shape)}")
    return m.reshape(-1, *([1] * (like.dim() - 1))).expand_as(like)


def _masked_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # clamp the denominator so an all-masked batch yields 0 (with a valid graph), not NaN
    return (x * w).sum() / w.sum().clamp(min=1.0)


def _stat_mean(x: torch.Tensor, w: torch.Tensor) -> float:
    return float(_masked_mean(x.detach().to(w.dtype), w))


def _stat_max(x: torch.Tensor, w: torch.Tensor) -> float:
    sel = x.detach()[w > 0]
    return float(sel.max()) if sel.numel() else 0.0


def _broadcast_adv(advantages, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(advantages, dtype=like.dtype, device=like.device).detach()
    if a.dim() == 1 and like.dim() == 2:
        if a.shape[0] != like.shape[0]:
            raise ValueError(f"advantages {tuple(a.shape)} vs logp {tuple(like.shape)}")
        a = a.unsqueeze(-1)
    return a.expand_as(like)


def _clipped_surrogate(logp_new, logp_ref, advantages, clip_low, clip_high, dual_clip):
    """Per-element PPO loss around a reference policy, plus diagnostics.

    Returns (loss_elems, ratio, clipped_active, dual_active, adv) where
    ``clipped_active`` marks elements whose gradient the clip zeroes and
    ``dual_active`` elements capped by the dual clip.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if logp_new.shape != logp_ref.shape:
        raise ValueError(f"logp shapes differ: {tuple(logp_new.shape)} vs {tuple(logp_ref.shape)}")
    adv = _broadcast_adv(advantages, logp_new)
    ratio = torch.exp(logp_new - logp_ref.detach())
    surr1 = ratio * adv
    surr2 = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    surr = torch.min(surr1, surr2)  # pessimistic bound (maximised objective)
    clipped_active = surr2 < surr1
    dual_active = torch.zeros_like(clipped_active)
    if dual_clip is not None:
        # For A<0 a huge ratio makes min(...) unboundedly negative (stale or
        # very off-policy samples); bound the objective below by dual_clip*A.
        floor = dual_clip * adv
        dual_active = (adv < 0) & (surr < floor)
        surr = torch.where(dual_active, floor, surr)
    return -surr, ratio, clipped_active, dual_active, adv


def _common_stats(ratio, log_ratio, clipped_active, dual_active, w) -> dict:
    r = ratio.detach()
    lr = log_ratio.detach()
    return {
        "clip_frac": _stat_mean(clipped_active, w),
        "approx_kl": _stat_mean((r - 1.0) - lr, w),  # k3: unbiased, always >= 0
        "ratio_mean": _stat_mean(r, w),
        "ratio_max": _stat_max(r, w),
        "dual_clip_frac": _stat_mean(dual_active, w),
    }


def ppo_policy_loss(logp_new, logp_old, advantages, clip_low=0.2, clip_high=0.2,
                    dual_clip=None, mask=None):
    """Clipped PPO surrogate on (N, K) log-probs; advantages (N,) or (N, K).

    Asymmetric clip ("clip-higher": clip_high > clip_low) lets low-prob tokens
    grow faster, which helps keep exploration alive. Returns (loss, stats).
    """
    loss_el, ratio, clipped, dual, _ = _clipped_surrogate(
        logp_new, logp_old, advantages, clip_low, clip_high, dual_clip)
    w = _weights(mask, loss_el)
    loss = _masked_mean(loss_el, w)
    stats = _common_stats(ratio, logp_new - logp_old.detach(), clipped, dual, w)
    return loss, stats


def decoupled_ppo_loss(logp_new, logp_prox, logp_behav, advantages, clip_low=0.2, clip_high=0.2,
                       dual_clip=None, behav_weight_cap=2.0, mask=None):
    """Decoupled PPO for stale data (Hilton et al. 2022; as used by AReaL).

    The trust region is centred on the proximal policy (recent, detached), not
    on the stale behaviour policy that generated the data: clipping around a
    policy many versions old would either freeze learning or allow huge steps.
    The behaviour->proximal mismatch is corrected by w = exp(prox - behav), detached.
    Elements with w > ``behav_weight_cap`` are masked out (weight 0, still counted in the
    mean's denominator), as AReaL does: such a sample is too far off-policy for its
    gradient to be trusted, and clamping w would keep that gradient, only rescaled.
    Equals ``ppo_policy_loss`` exactly when prox == behav (w == 1).
    """
    if behav_weight_cap <= 0:
        raise ValueError(f"behav_weight_cap must be > 0, got {behav_weight_cap}")
    if logp_prox.shape != logp_behav.shape:
        raise ValueError(f"prox {tuple(logp_prox.shape)} vs behav {tuple(logp_behav.shape)}")
    loss_el, ratio, clipped, dual, _ = _clipped_surrogate(
        logp_new, logp_prox, advantages, clip_low, clip_high, dual_clip)
    raw_w = torch.exp(logp_prox.detach() - logp_behav.detach())
    over = raw_w > behav_weight_cap
    bw = torch.where(over, torch.zeros_like(raw_w), raw_w)
    # where, not a product: an overflowing loss element must not turn the masked ones into NaN
    w = _weights(mask, loss_el)
    loss = _masked_mean(torch.where(over, torch.zeros_like(loss_el), bw * loss_el), w)
    stats = _common_stats(ratio, logp_new - logp_prox.detach(), clipped, dual, w)
    stats["behav_weight_mean"] = _stat_mean(raw_w, w * ~over)  # over the elements kept
    stats["behav_weight_masked_frac"] = _stat_mean(over, w)
    return loss, stats


def value_loss(values_new, values_old, returns, clip=None, mask=None):
    """0.5 * (v - R)^2, optionally PPO-style value clipping around v_old.

    With clipping the max of clipped/unclipped errors is taken (pessimistic),
    so the critic cannot move further than ``clip`` from v_old to reduce loss.
    """
    v_old = torch.as_tensor(values_old, dtype=values_new.dtype, device=values_new.device).detach()
    ret = torch.as_tensor(returns, dtype=values_new.dtype, device=values_new.device).detach()
    if values_new.shape != ret.shape or values_new.shape != v_old.shape:
        raise ValueError(f"shape mismatch: new {tuple(values_new.shape)}, old {tuple(v_old.shape)}, "
                         f"returns {tuple(ret.shape)}")
    err = (values_new - ret) ** 2
    if clip is not None:
        v_clip = v_old + torch.clamp(values_new - v_old, -clip, clip)
        err = torch.max(err, (v_clip - ret) ** 2)
    return _masked_mean(0.5 * err, _weights(mask, err))


def entropy_mean(entropy, mask=None):
    """Masked mean token entropy (N, T) -> scalar (kept differentiable for bonuses)."""
    return _masked_mean(entropy, _weights(mask, entropy))


EXP_SAFE = 30.0  # nats: exp(30) ~ 1e13 is finite in float32 and bfloat16, and far past any useful cap


def ref_kl_penalty(logp_new: torch.Tensor, logp_ref, mask=None, estimator: str = "k3",
                   clip: float = 0.0) -> torch.Tensor:
    """Masked mean over tokens of an estimate of KL(new || ref) at the sampled tokens, with
    r = log ref - log new; >= 0, zero where the two agree, differentiable in ``logp_new`` only
    (``algo.kl_ref_coef``: keeps the policy near the one RL started from, so that tasks already
    solved are not traded for others).

    k3 = exp(r) - 1 - r: grows exponentially where the reference is far more likely than the
    policy; with Gaussian action heads r reaches hundreds of nats and the loss overflows to
    inf (the step is then skipped: 15-22 of 700-1,200 steps on MT10,
    docs/benchmarks/cpu-dec05c-mt10-long/).
    k2 = r^2 / 2: quadratic, never overflows; on the policy's own samples its gradient is
    that of KL(new || ref) itself. On MT10 its gradient norms were 10^3-10^5 (median 5,800) and held-out
    success fell from 35.5% to 1.5% (docs/benchmarks/cpu-dec06b-mt10-kl-clip/).
    clip > 0 caps each token's penalty there: a token past the cap adds `clip` and no gradient,
    so a few far tokens can neither overflow the loss nor outweigh the others. r is held below
    EXP_SAFE first, so that exp stays finite (an inf times the cap's zero gradient is nan)."""
    r = torch.as_tensor(logp_ref, device=logp_new.device).detach() - logp_new
    if clip > 0:
        r = torch.clamp(r, max=EXP_SAFE)
    per_token = 0.5 * r * r if estimator == "k2" else torch.exp(r) - 1.0 - r
    if clip > 0:
        per_token = torch.clamp(per_token, max=clip)
    return _masked_mean(per_token, _weights(mask, logp_new))


@torch.no_grad()
def kl_estimates(logp_a, logp_b) -> dict:
    """Sample estimates of KL(a || b) from log-probs of samples drawn from a.

    k1 = E[log a - log b] (unbiased, noisy, can be negative);
    k3 = E[exp(b - a) - 1 - (b - a)] (unbiased, low variance, >= 0).
    """
    a = torch.as_tensor(logp_a).detach().double()
    b = torch.as_tensor(logp_b).detach().double()
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    d = b - a
    return {"k1": float((-d).mean()), "k3": float((torch.exp(d) - 1.0 - d).mean())}


def normalize(x, eps: float = 1e-8) -> np.ndarray:
    """Batch normalisation to mean 0, std 1 (population std).

    A single element (or a constant batch) has std 0: it maps to 0 rather than
    dividing by ~0 and blowing up.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a.astype(np.float32)
    centred = a - a.mean()
    std = a.std()
    if std < eps:
        return np.zeros(a.shape, dtype=np.float32)
    return (centred / std).astype(np.float32)


# --- the loss of one micro-batch -------------------------------------------------------------
class MicroLoss:
    """`out`: the policy's `evaluate` on `mb` (with grad); `prox`: proximal token log-probs
    (stale samples) or None (fresh: behaviour = proximal, plain PPO). `warmup`: the policy
    terms are left out (PPO critic warm-up)."""

    def __init__(self, algo, out, mb: SampleBatch, prox: Optional[torch.Tensor], chunk: int, action_dim: int,
                 device, warmup: bool = False, ref: Optional[torch.Tensor] = None):
        self.algo, self.device = algo, device
        # An episode that ended mid-chunk never ran the chunk's later sub-actions: they leave
        # the ratio, the statistics and the entropy bonus.
        tok = executed_tokens(mb.executed, chunk, action_dim, device)
        agg = lambda x: aggregate_logprobs(x, chunk, action_dim, algo.logprob_level, tok)  # noqa: E731
        self.mask = ratio_mask(tok, chunk, action_dim, algo.logprob_level)
        behav = torch.tensor(mb.logp, device=device)  # a copy: Ray hands over read-only arrays
        self.new, self.behav = agg(out.logp), agg(behav)
        self.prox = agg(prox) if prox is not None else None
        self.rest = torch.zeros((), device=device)  # the terms that do not depend on the advantages
        self.stats = {f"kl_behav_{k}": v for k, v in kl_estimates(behav[tok], out.logp.detach()[tok]).items()}
        if algo.name == "ppo":
            vl = value_loss(out.values, torch.tensor(mb.values, device=device),
                            torch.tensor(mb.returns, device=device), algo.value_clip if algo.value_clip > 0 else None)
            self.rest = self.rest + algo.vf_coef * vl
            self.stats["value_loss"] = float(vl.detach())
        ent = entropy_mean(out.entropy, tok)
        if algo.ent_coef > 0 and not warmup:
            self.rest = self.rest - algo.ent_coef * ent
        self.stats["entropy"] = float(ent.detach())
        if ref is not None:  # token log-probs of the reference policy (algo.kl_ref_coef)
            kl = ref_kl_penalty(out.logp, ref, tok, algo.kl_ref_estimator, algo.kl_ref_clip)
            if not warmup:
                self.rest = self.rest + algo.kl_ref_coef * kl
            self.stats["kl_ref"] = float(kl.detach())

    def policy_loss(self, advantages) -> tuple:
        """(surrogate loss, its statistics) for these advantages (N,)."""
        a = self.algo
        adv = torch.tensor(np.asarray(advantages, np.float32), device=self.device)  # a copy: Ray arrays are read-only
        dual = a.dual_clip if a.dual_clip > 0 else None
        if self.prox is None:
            return ppo_policy_loss(self.new, self.behav, adv, a.clip_low, a.clip_high, dual, mask=self.mask)
        return decoupled_ppo_loss(self.new, self.prox, self.behav, adv, a.clip_low, a.clip_high, dual,
                                  a.behav_weight_cap, mask=self.mask)
