"""Scripted (privileged) expert for demonstrations and sanity checks.

It reads the env's true state. The plan is a stateless function of the state,
so it re-plans every step and naturally recovers from noise and misalignment.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from .sim import CONTACT, GRASP_RANGE, GRIPPER_RADIUS, MAX_MOVE, SimState, is_success, physics_step
from .tasks import TaskSpec

_BEHIND_GAP = 0.04  # pre-push pose: this far beyond contact, behind the block
_ORBIT_GAP = 0.07  # radius margin when circling a block to get behind it
_ORBIT_STEP = 0.7  # rad: how far along the circle each waypoint is
_PUSH_DEPTH = 0.06  # push target: this far inside contact, so each step advances ~MAX_MOVE
_ALIGN_RATIO = 0.35  # pushing while |lateral| < ratio * |along| (~19 degrees)
_PREGRASP_ANGLES = 16  # candidate sides from which to grasp a block


def _move(gx: float, gy: float, tx: float, ty: float) -> Tuple[float, float]:
    """Action towards (tx, ty), scaled (direction preserved) into the [-1, 1] box."""
    ax, ay = (tx - gx) / MAX_MOVE, (ty - gy) / MAX_MOVE
    m = max(abs(ax), abs(ay))
    return (ax / m, ay / m) if m > 1.0 else (ax, ay)


def _seg_dist(px, py, ax, ay, bx, by) -> float:
    """Distance from point p to segment a-b."""
    vx, vy = bx - ax, by - ay
    L2 = vx * vx + vy * vy
    t = 0.0 if L2 < 1e-12 else max(0.0, min(1.0, ((px - ax) * vx + (py - ay) * vy) / L2))
    return math.hypot(px - ax - t * vx, py - ay - t * vy)


def _push(s: SimState, obj: int, zone: int) -> Tuple[float, float, float]:
    (gx, gy), (bx, by), (zx, zy) = s.gripper, s.blocks[obj], s.zones[zone]
    if s.closed and s.held >= 0:  # carrying something: put it down first
        return 0.0, 0.0, -1.0
    dz = math.hypot(zx - bx, zy - by) or 1e-9
    ux, uy = (zx - bx) / dz, (zy - by) / dz
    rx, ry = gx - bx, gy - by
    along, lat = rx * ux + ry * uy, -rx * uy + ry * ux
    if along < -0.5 * CONTACT and abs(lat) < _ALIGN_RATIO * -along and math.hypot(rx, ry) < CONTACT + 0.1:
        # behind the block: drive through it along the block->zone line (steering out lateral error)
        tx, ty = bx - ux * (CONTACT - _PUSH_DEPTH), by - uy * (CONTACT - _PUSH_DEPTH)
        return (*_move(gx, gy, tx, ty), -1.0)
    hx, hy = bx - ux * (CONTACT + _BEHIND_GAP), by - uy * (CONTACT + _BEHIND_GAP)
    if _seg_dist(bx, by, gx, gy, hx, hy) >= CONTACT + 0.01:
        return (*_move(gx, gy, hx, hy), -1.0)
    # the straight path would shove the block: circle around it towards the behind pose
    tg, td = math.atan2(ry, rx), math.atan2(-uy, -ux)
    diff = (td - tg + math.pi) % (2 * math.pi) - math.pi
    ang = tg + math.copysign(min(abs(diff), _ORBIT_STEP), diff)
    r = CONTACT + _ORBIT_GAP
    return (*_move(gx, gy, bx + r * math.cos(ang), by + r * math.sin(ang)), -1.0)


def _pregrasp(s: SimState, obj: int) -> Tuple[float, float]:
    """Gripper pose touching block ``obj``: on the approach side if no other block is near it,
    else on the side that keeps other blocks out of grasp range (grasp takes the nearest)."""
    (gx, gy), (bx, by) = s.gripper, s.blocks[obj]
    base = math.atan2(gy - by, gx - bx)
    best, best_m = None, -1.0
    for k in range(_PREGRASP_ANGLES):  # k = 0 is the approach side, then alternating outwards
        ang = base + math.copysign(((k + 1) // 2) * 2 * math.pi / _PREGRASP_ANGLES, (-1) ** k)
        px, py = bx + CONTACT * math.cos(ang), by + CONTACT * math.sin(ang)
        if max(abs(px), abs(py)) > 1.0 - GRIPPER_RADIUS:
            continue
        m = min((math.hypot(o[0] - px, o[1] - py) for i, o in enumerate(s.blocks) if i != obj), default=9.0)
        if m >= CONTACT + 0.12:
            return px, py
        if m > best_m:
            best, best_m = (px, py), m
    return best if best is not None else (bx, by)


def _pick_place(s: SimState, obj: int, zone: int) -> Tuple[float, float, float]:
    (gx, gy), (bx, by), (zx, zy) = s.gripper, s.blocks[obj], s.zones[zone]
    if s.held == obj:
        if math.hypot(bx - zx, by - zy) < 0.05:
            return 0.0, 0.0, -1.0  # over the zone centre: release
        return (*_move(gx, gy, zx - s.held_offset[0], zy - s.held_offset[1]), 1.0)
    if s.held >= 0:
        return 0.0, 0.0, -1.0  # holding the wrong block: drop it
    dists = [math.hypot(o[0] - gx, o[1] - gy) for o in s.blocks]
    d = dists[obj]
    others = min(v for i, v in enumerate(dists) if i != obj)
    if not s.closed and d <= GRASP_RANGE - 0.005 and others > d + 0.005:
        return 0.0, 0.0, 1.0  # touching only the target: close to grasp it
    px, py = _pregrasp(s, obj)
    if math.hypot(px - gx, py - gy) < 0.01:
        return 0.0, 0.0, -1.0  # at the pre-grasp pose: open (the next step closes)
    # travel open (lowered) if that shoves no block, else lifted (closed) over the blocks;
    # only lift when nothing is in grasp range, or closing would pick up the wrong block
    clear = all(_seg_dist(o[0], o[1], gx, gy, px, py) >= (CONTACT - 1e-6 if i == obj else CONTACT + 0.01)
                for i, o in enumerate(s.blocks))
    lift = not clear and (s.closed or min(dists) > GRASP_RANGE + 0.01)
    return (*_move(gx, gy, px, py), 1.0 if lift else -1.0)


def plan_action(state: SimState, task: TaskSpec) -> np.ndarray:
    """Noise-free expert action (3,) float32 for ``task`` in ``state``."""
    obj, zone = task.obj_index, task.target_index
    if task.family == "reach":
        (gx, gy), (bx, by) = state.gripper, state.blocks[obj]
        a = (*_move(gx, gy, bx, by), -1.0)
    elif task.family == "push":
        a = _push(state, obj, zone)
    else:
        a = _pick_place(state, obj, zone)
    return np.asarray(a, np.float32)


def add_action_noise(a: np.ndarray, rng: Optional[np.random.Generator], noise_std: float) -> np.ndarray:
    """Gaussian noise on an expert action, clipped to the action box (demonstration diversity)."""
    if noise_std > 0:
        rng = rng if rng is not None else np.random.default_rng()
        a = np.clip(a + rng.normal(0.0, noise_std, a.shape), -1.0, 1.0).astype(np.float32)
    return a


def expert_action(env, rng: Optional[np.random.Generator] = None, noise_std: float = 0.0) -> np.ndarray:
    """One (3,) action for the env's current state (env must be reset)."""
    if env.state is None:
        raise RuntimeError("call env.reset() before querying the expert")
    return add_action_noise(plan_action(env.state, env.task), rng, noise_std)


def expert_chunk(env, k: int, rng: Optional[np.random.Generator] = None, noise_std: float = 0.0) -> np.ndarray:
    """(k, 3) actions, planned by simulating ahead on a copy of the state (noise included,
    so later actions account for where the noisy earlier ones actually lead)."""
    if env.state is None:
        raise RuntimeError("call env.reset() before querying the expert")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s, t = env.state.copy(), env.task
    out = np.empty((k, 3), np.float32)
    for i in range(k):
        a = add_action_noise(plan_action(s, t), rng, noise_std)
        out[i] = a
        physics_step(s, float(a[0]), float(a[1]), float(a[2]))
        if is_success(s, t.family, t.obj_index, t.target_index):
            out[i + 1:] = a  # the env stops here anyway; keep the padding harmless
            break
    return out


class ScriptedExpert:
    """Convenience wrapper holding the env, noise level and its own RNG."""

    def __init__(self, env, noise_std: float = 0.0, seed: Optional[int] = None):
        self.env = env
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)

    def act(self) -> np.ndarray:
        return expert_action(self.env, self.rng, self.noise_std)

    def act_chunk(self, k: int) -> np.ndarray:
        return expert_chunk(self.env, k, self.rng, self.noise_std)
