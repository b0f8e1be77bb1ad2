"""Turn a `PlacementPlan` (core/placement.py) into Ray resources: one placement group with a
one-GPU bundle per planned GPU, and per actor its bundle and its share of that GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from rlvla3.core.placement import PlacementPlan, Slot, plan_placement


@dataclass
class GpuPlacement:
    plan: PlacementPlan
    group: object  # ray.util.placement_group.PlacementGroup

    def options(self, slot: Slot) -> dict:
        """Keyword arguments of `backend.actor` for an actor on `slot`."""
        return {"num_gpus": share(slot.share), "placement": (self.group, slot.gpu)}

    def trainer(self, rank: int) -> dict:
        return self.options(self.plan.trainer[rank])

    def generator(self, i: int) -> dict:
        return self.options(self.plan.generators[i])


def share(x: float) -> float:
    """Ray keeps resources to 1e-4: round down so that a GPU's shares never add up past 1."""
    return math.floor(x * 1e4) / 1e4


def reserve(backend, plan: PlacementPlan, timeout_s: float = 60.0) -> GpuPlacement:
    """Reserve the plan's GPUs; fail with the numbers when the cluster cannot hold them
    (a placement group that does not fit would otherwise wait forever)."""
    ray = backend.ray
    have = ray.cluster_resources().get("GPU", 0)
    if have < plan.gpus:
        raise RuntimeError(f"{plan.describe()}: needs {plan.gpus} GPUs, the Ray cluster has {have:g}")
    from ray.util.placement_group import placement_group

    group = placement_group([{"GPU": 1} for _ in range(plan.gpus)], strategy="PACK")
    ready = group.wait(timeout_seconds=timeout_s)
    if not ready:
        ray.util.remove_placement_group(group)
        raise RuntimeError(f"{plan.describe()}: could not reserve {plan.gpus} whole GPUs in {timeout_s:g} s "
                           f"(free: {ray.available_resources().get('GPU', 0):g})")
    return GpuPlacement(plan, group)


def placement_for(backend, cfg) -> Optional[GpuPlacement]:
    """The session's GPU layout, or None when the policy runs on the CPU."""
    if not cfg.policy.device.startswith("cuda") or getattr(backend, "name", "") != "ray":
        return None  # the local backend runs every worker in this process
    p = cfg.placement
    plan = plan_placement(p.preset, p.gpus, cfg.trainer.num_ranks, cfg.generator.num_generators)
    return reserve(backend, plan, p.reserve_timeout_s)
