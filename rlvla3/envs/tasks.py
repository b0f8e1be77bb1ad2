"""Task list, instruction text and fixed initial states.

Initial states are a pure function of (task key, split, init_id): each one gets
its own numpy Generator seeded from a stable hash, so train/eval sets are
identical across processes, env seeds and family subsets.
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from .base import SPLITS
from .config import FAMILIES
from .sim import BLOCK_HALF, CONTACT, NUM_BLOCKS, NUM_ZONES, ZONE_RADIUS, SimState

BLOCK_COLOURS = ("red", "green", "blue")  # index = block id in SimState.blocks
ZONE_COLOURS = ("yellow", "purple")  # index = zone id in SimState.zones
INSTRUCTION_CHARSET = "abcdefghijklmnopqrstuvwxyz0123456789 "
INSTRUCTION_MAX_LEN = 64

# Sampling ranges / separations (workspace units). Blocks stay >= 0.3 from the
# walls so the pre-push pose behind any block is always reachable.
_ZONE_RANGE = 0.6
_BLOCK_RANGE = 0.7
_GRIPPER_RANGE = 0.85
_ZONE_SEP = 2 * ZONE_RADIUS + 0.25
_BLOCK_SEP = 0.3
_BLOCK_ZONE_SEP = ZONE_RADIUS + BLOCK_HALF + 0.05  # blocks start visibly outside every zone
_TASK_DIST = 0.45  # push/pick: block-to-zone; reach: gripper-to-block (non-trivial episodes)
_GRIPPER_BLOCK_SEP = CONTACT + 0.15


@dataclass(frozen=True)
class TaskSpec:
    task_id: int
    family: str  # reach | push | pick_place
    obj: str  # block colour
    target: str  # zone colour ("" for reach)
    instruction: str

    @property
    def obj_index(self) -> int:
        return BLOCK_COLOURS.index(self.obj)

    @property
    def target_index(self) -> int:
        return ZONE_COLOURS.index(self.target) if self.target else -1

    @property
    def key(self) -> str:
        """Stable identity independent of task_id (which depends on the family subset)."""
        return f"{self.family}/{self.obj}/{self.target}"


def _instruction(family: str, obj: str, target: str) -> str:
    if family == "reach":
        return f"reach the {obj} block"
    if family == "push":
        return f"push the {obj} block to the {target} zone"
    return f"put the {obj} block in the {target} zone"


def build_tasks(families: Sequence[str]) -> List[TaskSpec]:
    """Deterministic task list; families are taken in canonical order (reach, push, pick_place)
    so the ids do not depend on how the config lists them."""
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise ValueError(f"unknown families {bad}; valid: {list(FAMILIES)}")
    tasks: List[TaskSpec] = []
    for fam in FAMILIES:
        if fam not in families:
            continue
        targets = ("",) if fam == "reach" else ZONE_COLOURS
        for obj in BLOCK_COLOURS:
            for tgt in targets:
                tasks.append(TaskSpec(len(tasks), fam, obj, tgt, _instruction(fam, obj, tgt)))
    return tasks


TASKS: List[TaskSpec] = build_tasks(FAMILIES)  # every task of every family


def init_seed(task: TaskSpec, split: str, init_id: int) -> int:
    return zlib.crc32(f"{task.key}|{split}|{init_id}".encode())


def _far(p, others, d: float) -> bool:
    return all(math.hypot(p[0] - o[0], p[1] - o[1]) >= d for o in others)


def _draw(rng: np.random.Generator, lim: float, ok) -> List[float]:
    for _ in range(10_000):
        p = rng.uniform(-lim, lim, 2).tolist()
        if ok(p):
            return p
    raise RuntimeError("init-state sampling failed; separations are too tight")


@functools.lru_cache(maxsize=4096)
def _sample(task: TaskSpec, split: str, init_id: int) -> SimState:
    rng = np.random.default_rng(init_seed(task, split, init_id))
    obj, tgt = task.obj_index, task.target_index
    for _ in range(1000):  # restart if a late constraint cannot be met
        zones: List[List[float]] = []
        for _z in range(NUM_ZONES):
            zones.append(_draw(rng, _ZONE_RANGE, lambda p: _far(p, zones, _ZONE_SEP)))
        blocks: List[List[float]] = []
        try:
            for i in range(NUM_BLOCKS):
                need_far = task.family != "reach" and i == obj

                def ok(p, need_far=need_far):
                    return (_far(p, blocks, _BLOCK_SEP) and _far(p, zones, _BLOCK_ZONE_SEP)
                            and (not need_far or _far(p, [zones[tgt]], _TASK_DIST)))

                blocks.append(_draw(rng, _BLOCK_RANGE, ok))
            reach_far = [blocks[obj]] if task.family == "reach" else []
            grip = _draw(rng, _GRIPPER_RANGE,
                         lambda p: _far(p, blocks, _GRIPPER_BLOCK_SEP) and _far(p, reach_far, _TASK_DIST))
        except RuntimeError:
            continue
        return SimState(gripper=grip, blocks=blocks, zones=zones)
    raise RuntimeError(f"could not sample an initial state for {task.key}")


def initial_state(task: TaskSpec, split: str, init_id: int) -> SimState:
    """Fixed initial state ``init_id`` of ``split`` for ``task`` (a fresh copy, safe to mutate)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if init_id < 0:
        raise ValueError(f"init_id must be >= 0, got {init_id}")
    return _sample(task, split, int(init_id)).copy()
