"""Detection of misbehaving simulators inside an env worker.

A step whose observation or reward is not finite is treated exactly like a simulator that
raised: the episode it belongs to is unusable (its return and advantages would be NaN and
poison a whole optimizer step), so it is dropped and counted before it is ever recorded.
"""

from __future__ import annotations

import math

import numpy as np


class EnvFault(RuntimeError):
    """A simulator returned something unusable (non-finite observation or reward)."""


def check_obs(obs: dict, where: str) -> None:
    proprio = np.asarray(obs["proprio"])
    if not np.isfinite(proprio).all():
        raise EnvFault(f"{where}: non-finite proprio observation {proprio.tolist()}")
    image = np.asarray(obs["image"])
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise EnvFault(f"{where}: non-finite image observation")


def check_step(obs: dict, reward, where: str) -> None:
    """Raise EnvFault if the step's reward or observation is not finite."""
    if not math.isfinite(float(reward)):
        raise EnvFault(f"{where}: non-finite reward {reward}")
    check_obs(obs, where)
