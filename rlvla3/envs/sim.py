"""Kinematic 2-D tabletop physics on plain Python floats.

Plain floats instead of numpy because every state has ~10 numbers: numpy's
per-call overhead would dominate and a step must cost well under 0.1 ms.

Physics rules (one low-level step):
  1. gripper command: closed = action[2] > 0.
  2. open -> closed: grasp the nearest free block within GRASP_RANGE of the
     gripper centre (i.e. touching it); its offset to the gripper is frozen.
     closed -> open: release the held block where it is.
  3. the gripper moves by action[:2] * MAX_MOVE (clipped to the workspace);
     a held block moves rigidly with it.
  4. an OPEN gripper is lowered onto the table and pushes: every free block
     whose disk overlaps the gripper disk is moved along gripper->block until
     they just touch. A CLOSED gripper is lifted, so it neither pushes nor
     collides (that is what lets it carry a block over others).
  Blocks never collide with each other and are clipped to the workspace.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

# Geometry, in workspace units ([-1, 1]^2).
GRIPPER_RADIUS = 0.07
BLOCK_HALF = 0.07  # blocks render as squares; collide as disks of this radius
CONTACT = GRIPPER_RADIUS + BLOCK_HALF  # centre distance at which gripper and block touch
ZONE_RADIUS = 0.15
REACH_RADIUS = CONTACT + 0.03  # reach succeeds once the gripper (almost) touches the block
GRASP_RANGE = CONTACT + 0.03  # closing grasps a block at most this far from the gripper centre
MAX_MOVE = 0.06  # gripper displacement for |action| = 1
_G_LIM = 1.0 - GRIPPER_RADIUS
_B_LIM = 1.0 - BLOCK_HALF

NUM_BLOCKS = 3
NUM_ZONES = 2


def _clip(v: float, lim: float) -> float:
    return -lim if v < -lim else (lim if v > lim else v)


@dataclass
class SimState:
    """Full privileged state; cheap to copy so the expert can simulate ahead."""

    gripper: List[float]  # [x, y]
    blocks: List[List[float]]  # NUM_BLOCKS x [x, y]; index = colour id
    zones: List[List[float]]  # NUM_ZONES x [x, y]; static during an episode
    closed: bool = False
    held: int = -1  # index of the held block, -1 if none
    held_offset: List[float] = field(default_factory=lambda: [0.0, 0.0])
    grasped: List[bool] = field(default_factory=lambda: [False] * NUM_BLOCKS)  # ever held this episode

    def copy(self) -> "SimState":
        return SimState(
            gripper=list(self.gripper),
            blocks=[list(b) for b in self.blocks],
            zones=[list(z) for z in self.zones],
            closed=self.closed,
            held=self.held,
            held_offset=list(self.held_offset),
            grasped=list(self.grasped),
        )


def physics_step(s: SimState, ax: float, ay: float, ag: float) -> None:
    """Advance ``s`` in place by one low-level step; actions must already be in [-1, 1]."""
    gx, gy = s.gripper
    close = ag > 0.0
    if close and not s.closed:
        best, best_d = -1, GRASP_RANGE
        for i, (bx, by) in enumerate(s.blocks):
            d = math.hypot(bx - gx, by - gy)
            if d <= best_d:
                best, best_d = i, d
        if best >= 0:
            s.held = best
            s.held_offset = [s.blocks[best][0] - gx, s.blocks[best][1] - gy]
            s.grasped[best] = True
    elif not close and s.closed:
        s.held = -1
    s.closed = close

    ngx = _clip(gx + ax * MAX_MOVE, _G_LIM)
    ngy = _clip(gy + ay * MAX_MOVE, _G_LIM)
    s.gripper = [ngx, ngy]
    if s.held >= 0:
        s.blocks[s.held] = [_clip(ngx + s.held_offset[0], _B_LIM), _clip(ngy + s.held_offset[1], _B_LIM)]
    if close:
        return
    c2 = CONTACT * CONTACT
    for i, b in enumerate(s.blocks):
        dx, dy = b[0] - ngx, b[1] - ngy
        d2 = dx * dx + dy * dy
        if d2 >= c2:
            continue
        d = math.sqrt(d2)
        if d < 1e-9:  # exactly on top: push along the motion (or +x if none)
            mx, my = ngx - gx, ngy - gy
            m = math.hypot(mx, my)
            dx, dy, d = (mx, my, m) if m > 1e-9 else (1.0, 0.0, 1.0)
        k = CONTACT / d
        b[0] = _clip(ngx + dx * k, _B_LIM)
        b[1] = _clip(ngy + dy * k, _B_LIM)


def in_zone(s: SimState, block: int, zone: int) -> bool:
    b, z = s.blocks[block], s.zones[zone]
    return math.hypot(b[0] - z[0], b[1] - z[1]) <= ZONE_RADIUS


def is_success(s: SimState, family: str, obj: int, target: int) -> bool:
    """Task predicate. ``target`` is a zone index (ignored for reach)."""
    if family == "reach":
        b = s.blocks[obj]
        return math.hypot(b[0] - s.gripper[0], b[1] - s.gripper[1]) <= REACH_RADIUS
    if family == "push":  # resting (not carried) inside the zone
        return s.held != obj and in_zone(s, obj, target)
    if family == "pick_place":  # must have been picked up, then released inside the zone
        return s.grasped[obj] and s.held != obj and in_zone(s, obj, target)
    raise ValueError(f"unknown family {family!r}")
