"""Advantage estimators (numpy only).

GAE for critic-based PPO, and group-relative advantages for critic-free GRPO.
Everything works on one trajectory segment / one group at a time so callers can
batch however suits their data layout.
"""
from __future__ import annotations

import numpy as np


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
    ret = adv + v
    return adv.astype(np.float32), ret.astype(np.float32)


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
