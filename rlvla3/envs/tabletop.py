"""TabletopEnv: a fast 2-D manipulation task family with image, proprio and language.

Gymnasium API plus ``chunk_step`` (action chunks, as VLA policies emit them).
Observations: {"image": (S,S,3) uint8, "proprio": [gx, gy, closed, t/T] float32,
"instruction": str}. Actions: [dx, dy, grip] in [-1, 1] (grip > 0 closes).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .base import EnvTaskInfo
from .config import TabletopConfig, to_tabletop_config
from .latency import LatencyModel
from .render import Renderer
from .sim import SimState, is_success, physics_step
from .tasks import INSTRUCTION_CHARSET, INSTRUCTION_MAX_LEN, TaskSpec, build_tasks, initial_state


class TabletopEnv(EnvTaskInfo, gym.Env):
    PROPRIO_DIM, ACTION_DIM = 4, 3
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    # proprio[3] = t/T: the time limit is part of the state, so a time-limit cut is terminal
    obs_has_time = True

    def __init__(self, config: Optional[TabletopConfig] = None, render_mode: Optional[str] = "rgb_array",
                 seed: Optional[int] = None):
        self.config = to_tabletop_config(config)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._tasks = build_tasks(self.config.families)
        size = self.config.image_size
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32, seed=seed)
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
            "proprio": spaces.Box(np.array([-1, -1, 0, 0], np.float32), np.ones(4, np.float32),
                                  (4,), np.float32),
            "instruction": spaces.Text(INSTRUCTION_MAX_LEN, min_length=1, charset=INSTRUCTION_CHARSET),
        }, seed=seed)
        self._renderer = Renderer(size)
        self._latency = LatencyModel(self.config.latency, seed)
        if seed is not None:  # constructor seed makes an unseeded first reset() reproducible
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self.total_steps = 0  # low-level steps since construction
        self.total_resets = 0
        self._state: Optional[SimState] = None
        self._task: Optional[TaskSpec] = None
        self._steps = 0
        self._done = False
        self._success = False
        self._episode: Dict[str, Any] = {}

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> Optional[SimState]:
        """Live privileged state (for the scripted expert); treat as read-only."""
        return self._state

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        if seed is not None:
            self._latency.seed(seed)
        split, task_id, init_id = self.reset_choice(options, draw=lambda n: int(self.np_random.integers(n)))

        self._latency.spend(self._latency.reset_cost_s())
        self._task = self._tasks[task_id]
        self._state = initial_state(self._task, split, init_id)
        self._steps = 0
        self._done = False
        self._success = False
        self.total_resets += 1
        self._episode = {"task_id": task_id, "init_id": init_id, "split": split,
                         "instruction": self._task.instruction, "family": self._task.family}
        return self._obs(self.render()), dict(self._episode, success=False, steps=0)

    def step(self, action):
        acts = self._prepare(action)
        if len(acts) != 1:
            raise ValueError(f"step() takes one action of shape (3,), got {np.shape(action)}")
        if self._latency.enabled:
            self._latency.spend(self._latency.step_cost_s())
        reward, terminated, truncated = self._advance(*acts[0])
        # no wall-clock values here: infos must be deterministic (gymnasium env_checker)
        return self._obs(self.render()), reward, terminated, truncated, self._info()

    def chunk_step(self, actions) -> Tuple[Dict[str, Any], float, bool, bool, Dict[str, Any]]:
        """Execute up to k low-level steps, stopping as soon as the episode ends.

        Renders once at the end (or every sub-step if ``config.render_substeps``,
        returned as info["frames"] of shape (n, S, S, 3)).
        """
        t0 = time.perf_counter()
        acts = self._prepare(actions)
        total, wait, terminated, truncated, n = 0.0, 0.0, False, False, 0
        frames = [] if self.config.render_substeps else None
        for ax, ay, ag in acts:
            wait += self._latency.step_cost_s() if self._latency.enabled else 0.0
            reward, terminated, truncated = self._advance(ax, ay, ag)
            total += reward
            n += 1
            if frames is not None:
                frames.append(self.render())
            if terminated or truncated:
                break
        # One wait for the chunk's emulated steps: a simulator that runs elsewhere answers a
        # chunk in one round trip, and a wake-up per sub-step cost this process CPU it would not.
        self._latency.spend(wait)
        obs = self._obs(frames[-1].copy() if frames else self.render())
        info = self._info()
        info["substeps"] = n
        if frames is not None:
            info["frames"] = np.stack(frames)
        info["sim_time_s"] = time.perf_counter() - t0
        return obs, total, terminated, truncated, info

    def render(self) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("call reset() before render()")
        return self._renderer.render(self._state)

    # ------------------------------------------------------------------ internals
    def _prepare(self, actions) -> List[List[float]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("episode has ended (terminated/truncated); call reset()")
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] < 1:
            raise ValueError(f"actions must have shape (3,) or (k, 3) with k >= 1, got {np.shape(actions)}")
        # NaN -> 0 so a diverging policy cannot corrupt the state; then clip to the box
        return np.clip(np.nan_to_num(a, nan=0.0), -1.0, 1.0).tolist()

    def _advance(self, ax: float, ay: float, ag: float) -> Tuple[float, bool, bool]:
        s, t = self._state, self._task
        physics_step(s, ax, ay, ag)
        self._steps += 1
        self.total_steps += 1
        self._success = is_success(s, t.family, t.obj_index, t.target_index)
        truncated = not self._success and self._steps >= self.config.max_steps
        self._done = self._success or truncated
        return (1.0 if self._success else 0.0), self._success, truncated

    def _obs(self, image: np.ndarray) -> Dict[str, Any]:
        s = self._state
        proprio = np.array([s.gripper[0], s.gripper[1], 1.0 if s.closed else 0.0,
                            self._steps / self.config.max_steps], np.float32)
        return {"image": image, "proprio": proprio, "instruction": self._task.instruction}

    def _info(self) -> Dict[str, Any]:
        return dict(self._episode, success=self._success, steps=self._steps)
