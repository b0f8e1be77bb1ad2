"""Turn finished episodes into training samples: advantages computed once, where the data is.

PPO: GAE per episode/segment, bootstrapped with V(s_L) when cut: at the rollout horizon, or
by a time limit that the observation does not show (then the schedule computes V(s_L) first:
`pending_bootstrap` / `set_bootstrap`).
GRPO: episodes grouped by `group_key`; a group is complete when it holds `group_size`
episodes; its advantages are the group-normalised episode returns, broadcast to every
decision of the episode; all-success / all-fail groups carry no signal and are dropped.
An episode's return is its undiscounted reward (the outcome), so it does not depend on the
episode's length unless the length discount is asked for (`discount`, `algo.grpo_discount`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from rlvla3.core.types import Episode, ObsBatch, SampleBatch

SAMPLE_ID_STRIDE = 1 << 12  # decisions per episode never exceed this


# --- advantage estimators, one segment / one group at a time ---------------------------------
def _as_1d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def compute_gae(rewards, values, bootstrap_value: float, terminated: bool,
                gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Advantage Estimation over one segment of T decision steps.

    If ``terminated`` the state after the last step is terminal, so its value is
    0 and ``bootstrap_value`` is ignored. Otherwise the segment was truncated
    (time limit / segment boundary) and V(s_T) = ``bootstrap_value`` is used:
    truncation is not a true end, so treating it as terminal would bias values.
    Returns float32 (advantages, returns) with returns = advantages + values.
    """
    r = _as_1d(rewards, "rewards")
    v = _as_1d(values, "values")
    if r.shape != v.shape:
        raise ValueError(f"rewards {r.shape} and values {v.shape} differ")
    T = r.shape[0]
    # Accumulate in float64 so long segments don't drift, cast at the end.
    next_v = 0.0 if terminated else float(bootstrap_value)
    adv = np.zeros(T, dtype=np.float64)
    last = 0.0
    for t in range(T - 1, -1, -1):
        delta = r[t] + gamma * next_v - v[t]
        last = delta + gamma * lam * last
        adv[t] = last
        next_v = v[t]
    return adv.astype(np.float32), (adv + v).astype(np.float32)  # returns = advantages + values


def discounted_return(rewards, gamma: float) -> float:
    """Discounted return sum_t gamma^t r_t of a whole episode from step 0."""
    r = _as_1d(rewards, "rewards")
    g = 0.0
    for x in r[::-1]:  # Horner form: avoids computing large powers of gamma
        g = float(x) + gamma * g
    return float(g)


def grpo_advantages(returns, eps: float = 1e-6, normalize_std: bool = True) -> np.ndarray:
    """Group-relative advantages for G rollouts of the same task/seed.

    (r - mean) / (std + eps) with population std (ddof=0); ``normalize_std``
    False gives the plain mean-centred variant (Dr. GRPO style), which avoids
    up-weighting groups whose returns barely differ.
    """
    r = _as_1d(returns, "returns")
    if r.size == 0:
        raise ValueError("empty group")
    centred = r - r.mean()
    if normalize_std:
        centred = centred / (r.std() + eps)
    return centred.astype(np.float32)


def is_degenerate_group(returns, tol: float = 1e-8) -> bool:
    """True when all returns in the group are (numerically) equal.

    Such groups (all-success / all-fail) have zero advantage everywhere: they
    cost compute but carry no gradient signal, so the trainer filters them.
    """
    r = _as_1d(returns, "returns")
    if r.size == 0:
        return True
    return bool(r.max() - r.min() <= tol)


# --- episodes into samples ---------------------------------------------------------------------


@dataclass
class ExperienceStats:
    episodes: int = 0
    samples: int = 0
    groups_kept: int = 0
    groups_dropped_degenerate: int = 0
    episodes_dropped: int = 0  # e.g. incomplete GRPO groups
    successes: int = 0

    def merge(self, other: "ExperienceStats") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


def episode_samples(ep: Episode, advantages: np.ndarray, returns: np.ndarray) -> SampleBatch:
    n = len(ep)
    if n >= SAMPLE_ID_STRIDE:
        raise ValueError(f"episode has {n} decisions; at most {SAMPLE_ID_STRIDE - 1} are supported")
    return SampleBatch(
        images=ep.images,
        proprio=ep.proprio.astype(np.float32),
        instructions=[ep.instruction] * n,
        tokens=ep.tokens,
        logp=ep.logp.astype(np.float32),
        values=ep.values.astype(np.float32),
        advantages=np.asarray(advantages, np.float32),
        returns=np.asarray(returns, np.float32),
        versions=ep.versions.astype(np.int64),
        sample_ids=ep.episode_id * SAMPLE_ID_STRIDE + np.arange(n, dtype=np.int64),
        executed=np.full(n, -1, np.int64) if ep.executed is None else ep.executed.astype(np.int64),
    )


def pending_bootstrap(episodes: List[Episode]) -> Tuple[List[Episode], Optional[ObsBatch]]:
    """The episodes whose V(s_L) is still to be computed (cut by a time limit that their
    observation does not show: the env worker runs no policy) and their final observations,
    as one batch for the value call that `set_bootstrap` completes."""
    waiting = [ep for ep in episodes if ep.bootstrap_obs is not None]
    return waiting, (ObsBatch.concat([ep.bootstrap_obs for ep in waiting]) if waiting else None)


def set_bootstrap(episodes: List[Episode], values) -> None:
    """Complete `pending_bootstrap`: V(s_L) of each episode, in order."""
    values = np.asarray(values, np.float64).reshape(-1)
    if len(values) != len(episodes):
        raise ValueError(f"{len(values)} bootstrap values for {len(episodes)} episodes")
    for ep, v in zip(episodes, values):
        ep.bootstrap_value, ep.bootstrap_obs = float(v), None


def ppo_samples(episodes: List[Episode], gamma: float, lam: float) -> Tuple[Optional[SampleBatch], ExperienceStats]:
    stats = ExperienceStats()
    parts = []
    for ep in episodes:
        if len(ep) == 0:
            continue
        if ep.bootstrap_obs is not None:  # GAE would take V(s_L) = 0 and call a time limit terminal
            raise ValueError(f"episode {ep.episode_id} still waits for its bootstrap value (set_bootstrap)")
        adv, ret = compute_gae(ep.rewards, ep.values, ep.bootstrap_value, ep.terminated, gamma, lam)
        parts.append(episode_samples(ep, adv, ret))
        stats.episodes += int(ep.final)  # an episode's segments count it once, at its last
        stats.successes += int(ep.success and ep.final)
    batch = SampleBatch.concat(parts) if parts else None
    stats.samples = len(batch) if batch is not None else 0
    return batch, stats


class GroupAssembler:
    """Collects GRPO episodes by group key and releases each group when it is complete."""

    def __init__(self, group_size: int, gamma: float = 1.0, filter_degenerate: bool = True, discount: bool = False):
        """`gamma` discounts the returns only with `discount`: with gamma < 1 successes of
        different lengths get different returns, so an all-success group is not degenerate."""
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2, got {group_size}")
        self.group_size = group_size
        self.gamma = gamma if discount else 1.0
        self.filter_degenerate = filter_degenerate
        self.pending: Dict[str, List[Episode]] = defaultdict(list)

    def add(self, ep: Episode) -> Tuple[Optional[SampleBatch], ExperienceStats]:
        """Add one episode; returns the samples of the group it completes (or None)."""
        stats = ExperienceStats(episodes=1, successes=int(ep.success))
        group = self.pending[ep.group_key]
        group.append(ep)
        if len(group) < self.group_size:
            return None, stats
        del self.pending[ep.group_key]
        returns = np.array([discounted_return(e.rewards, self.gamma) for e in group], np.float64)
        if self.filter_degenerate and is_degenerate_group(returns):
            stats.groups_dropped_degenerate += 1
            return None, stats
        adv = grpo_advantages(returns)
        parts = [episode_samples(e, np.full(len(e), a), np.full(len(e), r)) for e, a, r in zip(group, adv, returns)
                 if len(e) > 0]
        stats.groups_kept += 1
        batch = SampleBatch.concat(parts) if parts else None
        stats.samples = len(batch) if batch is not None else 0
        return batch, stats

    def add_many(self, episodes: List[Episode]) -> Tuple[Optional[SampleBatch], ExperienceStats]:
        stats, parts = ExperienceStats(), []
        for ep in episodes:
            batch, s = self.add(ep)
            stats.merge(s)
            if batch is not None:
                parts.append(batch)
        return (SampleBatch.concat(parts) if parts else None), stats

    def drop_incomplete(self) -> int:
        """Discard groups that can no longer complete (e.g. at the end of a sync rollout)."""
        n = sum(len(g) for g in self.pending.values())
        self.pending.clear()
        return n

    @property
    def num_pending_episodes(self) -> int:
        return sum(len(g) for g in self.pending.values())

