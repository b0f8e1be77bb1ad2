"""LIBERO (MuJoCo + robosuite) behind the same interface as the built-in tabletop env.

- Tasks are one suite's tasks (or `task_ids`), with their language instruction; episodes
  start from the benchmark's fixed initial states (`init_id` indexes them, so a GRPO group
  shares one). Both splits use those fixed states, as the field evaluates on them.
- Observations: `image` = agentview, `wrist_image` = eye-in-hand camera, both rotated 180°
  (MuJoCo renders them upside down) at `image_size`²; `proprio` (8) = end-effector position
  (3), orientation as an axis-angle (3), gripper finger positions (2).
- Actions: 7-D OSC_POSE deltas in [-1, 1]; the last one drives the gripper with LIBERO's
  own convention (-1 open, +1 close).
- Success is the environment's own check; an episode ends on success (reward 1) or at the
  suite's step limit.
- Rendering only what is used: the cameras are disabled while a chunk's sub-steps run and
  rendered once after its last sub-step (or on reset); resets keep the loaded model
  (`hard_reset=False`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rlvla3.envs.base import EnvTaskInfo
from rlvla3.envs.libero_config import LiberoConfig, prepare_libero_runtime

CAMERAS = ("agentview", "robot0_eye_in_hand")
# Env slots step on a worker's threads, but a GL context is current in one thread at a time
# and robosuite makes it current only when it creates it: renders in one process take
# turns, each binding its env's context first and releasing it after.
_RENDER_LOCK = threading.Lock()


def _release_gl_context() -> None:
    if os.environ.get("MUJOCO_GL") == "egl":
        from robosuite.renderers.context import egl_context as egl

        egl.EGL.eglMakeCurrent(egl.EGL_DISPLAY, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_CONTEXT)


@dataclass(frozen=True)
class LiberoTask:
    task_id: int
    name: str
    instruction: str
    bddl_file: str


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> axis * angle (robosuite's order)."""
    x, y, z, w = (float(v) for v in q)
    w = max(-1.0, min(1.0, w))
    s = np.sqrt(max(0.0, 1.0 - w * w))
    if s < 1e-8:
        return np.zeros(3, np.float32)
    return (np.array([x, y, z]) / s * 2.0 * np.arccos(w)).astype(np.float32)


class LiberoEnv(EnvTaskInfo):
    PROPRIO_DIM, ACTION_DIM = 8, 7
    # The 8-D proprio holds no time: a state at the step limit could go on, so a time-limit cut
    # is not terminal and PPO bootstraps V(s_T) there.
    obs_has_time = False

    def __init__(self, config: Optional[LiberoConfig] = None, seed: int = 0):
        self.config = (config or LiberoConfig()).validate()
        prepare_libero_runtime()
        from libero.libero import benchmark, get_libero_path

        suite = benchmark.get_benchmark_dict()[self.config.suite]()
        ids = self.config.task_ids or list(range(suite.n_tasks))
        bad = [i for i in ids if not 0 <= i < suite.n_tasks]
        if bad:
            raise ValueError(f"env.libero.task_ids: {bad} out of range for {self.config.suite} ({suite.n_tasks} tasks)")
        root = get_libero_path("bddl_files")
        self._tasks: List[LiberoTask] = []
        self._init_states: List[np.ndarray] = []
        for k, i in enumerate(ids):
            t = suite.get_task(i)
            self._tasks.append(LiberoTask(k, t.name, t.language, f"{root}/{t.problem_folder}/{t.bddl_file}"))
            self._init_states.append(np.asarray(suite.get_task_init_states(i)))
        self.max_steps = self.config.episode_steps()
        self._seed = seed
        self._env = None
        self._env_task = -1
        self._task: Optional[LiberoTask] = None
        self._steps = 0
        self._done = True
        self._success = False
        self._last: Dict[str, Any] = {}

    # --- the interface the workers use -------------------------------------------------
    def num_init_states(self, split: str = "train") -> int:
        return len(self._init_states[0]) if self._init_states else 0

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        options = options or {}
        task_id = int(options.get("task_id", 0))
        if not 0 <= task_id < self.num_tasks:
            raise ValueError(f"task_id {task_id} out of range [0, {self.num_tasks})")
        states = self._init_states[task_id]
        init_id = int(options.get("init_id", 0)) % len(states)
        env = self._env_for(task_id)
        env.reset()
        # The Panda gripper integrates its command and only a hard reset zeroes it: without
        # this an episode's start depends on the one before, and a GRPO group would not share one.
        for robot in env.env.robots:
            for g in (robot.gripper.values() if isinstance(robot.gripper, dict) else [robot.gripper]):
                g.current_action = np.zeros_like(g.current_action)
        env.set_init_state(states[init_id])
        settle = np.zeros(self.action_dim)
        settle[-1] = -1.0  # gripper open while the objects settle (the usual LIBERO wait steps)
        for _ in range(self.config.settle_steps):
            env.step(settle)
        raw = self._render_now()
        self._task, self._steps, self._done, self._success = self._tasks[task_id], 0, False, False
        obs = self._obs(raw)
        return obs, {"task_id": task_id, "init_id": init_id, "success": False, "steps": 0}

    def chunk_step(self, actions) -> Tuple[Dict[str, Any], float, bool, bool, Dict[str, Any]]:
        """Execute up to len(actions) sub-steps, stopping at the episode's end; only the
        observation after the last sub-step is rendered."""
        if self._done:
            raise RuntimeError("chunk_step on a finished episode: reset first")
        actions = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise ValueError(f"actions must have shape (chunk, {self.action_dim}), got {actions.shape}")
        reward, substeps = 0.0, 0
        for a in actions:
            _, r, success, _ = self._env.step(a)
            self._steps += 1
            substeps += 1
            reward += float(r)
            if success:
                self._success = True
                break
            if self._steps >= self.max_steps:
                break
        terminated = self._success
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        obs = self._obs(self._render_now())
        info = {"success": self._success, "steps": self._steps, "substeps": substeps}
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    # --- internals ---------------------------------------------------------------------
    def _env_for(self, task_id: int):
        """One MuJoCo model per task: switching task rebuilds it (the layout differs)."""
        if self._env is not None and self._env_task == task_id:
            return self._env
        self.close()
        from libero.libero.envs import OffScreenRenderEnv

        size = self.config.image_size
        with _RENDER_LOCK:  # building makes the new env's GL context current in this thread
            self._env = OffScreenRenderEnv(bddl_file_name=self._tasks[task_id].bddl_file,
                                           camera_names=list(CAMERAS), camera_heights=size, camera_widths=size,
                                           hard_reset=False)
            _release_gl_context()
        self._cameras(False)
        self._env.seed(self._seed)
        self._env_task = task_id
        return self._env

    def _cameras(self, on: bool) -> None:
        inner = self._env.env
        for cam in CAMERAS:
            inner.modify_observable(f"{cam}_image", "enabled", on)

    def _render_now(self) -> Dict[str, Any]:
        inner = self._env.env
        with _RENDER_LOCK:
            ctx = getattr(inner.sim, "_render_context_offscreen", None)
            if ctx is not None:
                ctx.gl_ctx.make_current()
            self._cameras(True)
            inner._update_observables(force=True)
            raw = inner._get_observations()
            self._cameras(False)
            _release_gl_context()
        return raw

    def _obs(self, raw: Dict[str, Any]) -> Dict[str, Any]:
        proprio = np.concatenate([raw["robot0_eef_pos"], quat_to_axis_angle(raw["robot0_eef_quat"]),
                                  raw["robot0_gripper_qpos"]]).astype(np.float32)
        self._last = {
            "image": np.ascontiguousarray(raw["agentview_image"][::-1, ::-1]),
            "wrist_image": np.ascontiguousarray(raw["robot0_eye_in_hand_image"][::-1, ::-1]),
            "proprio": proprio,
            "instruction": self._task.instruction if self._task else "",
        }
        return dict(self._last)
