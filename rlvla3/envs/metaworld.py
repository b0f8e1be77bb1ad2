"""MetaWorld (Farama `metaworld`, MuJoCo) behind the same interface as the tabletop and LIBERO envs.

- Tasks: MT1's one task, or MT10's / MT50's tasks, each with a language instruction written
  for this project (metaworld_config.INSTRUCTIONS). Each task has 50 seeded variations (object
  and goal positions); a fixed seeded permutation splits them into `num_init_states` training
  and `num_eval_init_states` held-out evaluation states (disjoint). `init_id` indexes a split.
- Observation: `image` = the chosen camera at `image_size`² (the corner* cameras are defined
  upside down and are rotated 180°); `proprio` (4) = hand xyz and gripper opening (the first 4
  entries of MetaWorld's 39-D state; no object or goal position reaches the policy);
  `instruction`. The full 39-D state stays inside the env for the scripted experts.
- Actions: 4-D in [-1, 1] (hand xyz delta, gripper: +1 closes). Reward: 1 on success
  (sparse, default), MetaWorld's dense reward summed over sub-steps, or sparse plus a
  potential-based progress term (`progress`: the shaped reward's change). An episode ends on
  success (terminated) or at `max_steps` (truncated; the proprio holds no time, so PPO
  bootstraps there) and never reaches MetaWorld's 500-step limit, where it raises.
- Rendering: one `mujoco.Renderer` per task model and image size per process (each holds a GL
  context, ~110-160 MB), with shadows, reflections and MSAA off; only the frames a policy sees
  are rendered (after a chunk's last sub-step and on reset; every sub-step with
  `render_substeps`, returned as info["frames"]).
"""

from __future__ import annotations

import atexit
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rlvla3.envs.base import SPLITS, EnvTaskInfo
from rlvla3.envs.expert import add_action_noise
from rlvla3.envs.metaworld_config import (DENSE_MAX, INSTRUCTIONS, NUM_VARIATIONS, PATH_LIMIT, UPSIDE_DOWN,
                                          MetaWorldConfig, benchmark, import_metaworld)

PROPRIO_DIM = 4
ACTION_DIM = 4
# A GL context is current in one thread at a time and env slots step on a worker's threads:
# renders in one process take turns, each making its renderer's context current and releasing it.
_RENDER_LOCK = threading.Lock()
_RENDERERS: Dict[Tuple[str, int], Any] = {}


@dataclass(frozen=True)
class MetaWorldTask:
    task_id: int
    name: str  # MetaWorld's env name, e.g. "push-v3"
    instruction: str


def split_variations(num_train: int, num_eval: int, seed: int, task_index: int) -> Tuple[List[int], List[int]]:
    """A fixed permutation of a task's 50 variations: the first `num_train` train, the next
    `num_eval` are held out. Seeded by (seed, task_index), so it is the same in every process."""
    perm = np.random.default_rng([seed, task_index]).permutation(NUM_VARIATIONS)
    return [int(i) for i in perm[:num_train]], [int(i) for i in perm[num_train:num_train + num_eval]]


def _release_gl_context() -> None:
    import os

    if os.environ.get("MUJOCO_GL") == "egl":
        from mujoco.egl import EGL_DISPLAY, egl_ext as EGL

        EGL.eglMakeCurrent(EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)


def shared_renderer(name: str, model, size: int):
    """The process's renderer for task `name` at `size`² (call with _RENDER_LOCK held)."""
    key = (name, size)
    if key not in _RENDERERS:
        import mujoco

        model.vis.quality.offsamples = 0  # no MSAA
        model.vis.quality.shadowsize = 0
        model.vis.global_.offwidth = max(size, 16)
        model.vis.global_.offheight = max(size, 16)
        r = mujoco.Renderer(model, size, size)
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        if not _RENDERERS:  # after mujoco.egl registered its own exit hook (eglTerminate), so this one runs first
            atexit.register(_close_renderers)
        _RENDERERS[key] = r
    return _RENDERERS[key]


def _close_renderers() -> None:
    """At exit, before EGL is torn down (a renderer freed later by the garbage collector raises)."""
    with _RENDER_LOCK:
        for r in _RENDERERS.values():
            try:
                r.close()
            except Exception:  # noqa: BLE001 - best effort at interpreter exit
                pass
        _RENDERERS.clear()


class MetaWorldEnv(EnvTaskInfo):
    PROPRIO_DIM, ACTION_DIM = PROPRIO_DIM, ACTION_DIM  # the module's constants
    # The proprio holds no time: a time-limit cut is not terminal, PPO bootstraps V(s_T).
    obs_has_time = False

    def __init__(self, config: Optional[MetaWorldConfig] = None, seed: int = 0):
        self.config = (config or MetaWorldConfig()).validate()
        import_metaworld()
        bench = benchmark(self.config)
        names = self.config.task_list()
        self._tasks = [MetaWorldTask(k, n, INSTRUCTIONS[n]) for k, n in enumerate(names)]
        by_name: Dict[str, list] = {}
        for t in bench.train_tasks:
            by_name.setdefault(t.env_name, []).append(t)
        self._variations = [by_name[n] for n in names]
        self._classes = {n: bench.train_classes[n] for n in names}
        c = self.config
        self._splits = [dict(zip(SPLITS, split_variations(c.num_init_states, c.num_eval_init_states, c.split_seed, k)))
                        for k in range(len(names))]
        self.max_steps = c.max_steps
        self._seed = seed
        self._envs: Dict[str, Any] = {}  # one MetaWorld env per task, built on first use
        self._env, self._env_name = None, ""
        self._task: Optional[MetaWorldTask] = None
        self._state: Optional[np.ndarray] = None  # the full 39-D state (experts only)
        self._steps = 0
        self._done = True
        self._success = False
        self._potential: Optional[float] = None  # the last sub-step's shaped reward / 10 (`progress`)
        self._reach: Optional[Tuple[float, float]] = None  # (distance at reset, last distance) (reach_coef)
        self._episode: Dict[str, Any] = {}
        self._last: Dict[str, Any] = {}

    # --- the interface the workers use -------------------------------------------------
    @property
    def state(self) -> Optional[np.ndarray]:
        """The full 39-D MetaWorld state (hand, gripper, objects, goal), for the scripted experts."""
        return self._state

    def variation(self, task_id: int, init_id: int, split: str = "train") -> int:
        """Which of the task's 50 MetaWorld variations `init_id` of `split` is."""
        return self._splits[task_id][split][init_id]

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        split, task_id, init_id = self.reset_choice(options)
        task = self._tasks[task_id]
        env = self._env_for(task.name)
        env.set_task(self._variations[task_id][self.variation(task_id, init_id, split)])
        self._state, _ = env.reset()
        self._task, self._steps, self._done, self._success = task, 0, False, False
        self._potential = None
        d0 = self.reach_distance()
        self._reach = (max(d0, 1e-6), d0)
        self._episode = {"task_id": task_id, "init_id": init_id, "split": split, "instruction": task.instruction}
        return self._obs(self._render()), dict(self._episode, success=False, steps=0)

    def chunk_step(self, actions) -> Tuple[Dict[str, Any], float, bool, bool, Dict[str, Any]]:
        """Up to len(actions) sub-steps, stopping at the episode's end; renders the frame after
        the last one (every sub-step's with render_substeps)."""
        t0 = time.perf_counter()
        if self._done:
            raise RuntimeError("chunk_step on a finished episode: reset first")
        a = np.asarray(actions, np.float64)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != ACTION_DIM or a.shape[0] < 1:
            raise ValueError(f"actions must have shape ({ACTION_DIM},) or (chunk, {ACTION_DIM}), got {np.shape(actions)}")
        a = np.clip(np.nan_to_num(a, nan=0.0), -1.0, 1.0)
        dense = self.config.reward == "dense"
        reward, substeps = 0.0, 0
        frames = [] if self.config.render_substeps else None
        for act in a:
            self._state, r, _, _, info = self._env.step(act)
            self._steps += 1
            substeps += 1
            self._success = bool(info["success"])
            reward += float(r) if dense else float(self._success) + self._progress(float(r)) + self._reached()
            if frames is not None:
                frames.append(self._render())
            if self._success or self._steps >= self.max_steps:
                break
        terminated = self._success
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        obs = self._obs(frames[-1] if frames else self._render())
        info = dict(self._episode, success=self._success, steps=self._steps, substeps=substeps)
        if frames is not None:
            info["frames"] = np.stack(frames)
        info["sim_time_s"] = time.perf_counter() - t0
        return obs, reward, terminated, truncated, info

    def _progress(self, shaped: float) -> float:
        """`progress`: progress_coef x the change of the shaped reward (scaled to [0, 1]) since the
        last sub-step; the episode's first sub-step sets the starting level and earns nothing."""
        if self.config.reward != "progress":
            return 0.0
        level = shaped / DENSE_MAX
        gain = 0.0 if self._potential is None else self.config.progress_coef * (level - self._potential)
        self._potential = level
        return gain

    def reach_distance(self) -> float:
        """The hand's distance to what it must reach first: the state's first object (MetaWorld's
        39-D state: hand 0:3, gripper 3, object 4:7, goal -3:), or the goal for reach-v3."""
        target = self._state[-3:] if self._task.name == "reach-v3" else self._state[4:7]
        return float(np.linalg.norm(np.asarray(self._state[0:3], np.float64) - target))

    def _reached(self) -> float:
        """reach_coef x (last - current distance) / distance at reset; 0 when reach_coef is 0."""
        if not self.config.reach_coef:
            return 0.0
        d0, last = self._reach
        d = self.reach_distance()
        self._reach = (d0, d)
        return self.config.reach_coef * (min(last, d0) - min(d, d0)) / d0

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._env = None

    # --- scripted experts (MetaWorld's own `metaworld.policies`) ------------------------
    def expert_action(self, rng: Optional[np.random.Generator] = None, noise_std: float = 0.0) -> np.ndarray:
        """One (4,) action of the task's scripted expert, which reads the full 39-D state."""
        if self._state is None or self._task is None:
            raise RuntimeError("call reset() before querying the expert")
        with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips, as said
            warnings.simplefilter("ignore", UserWarning)
            a = np.asarray(_expert(self._task.name).get_action(self._state), np.float32)
        return add_action_noise(np.clip(a, -1.0, 1.0), rng, noise_std)

    def expert_chunk(self, k: int, rng: Optional[np.random.Generator] = None, noise_std: float = 0.0) -> np.ndarray:
        """(k, 4) expert actions, planned by simulating ahead from the current state (noise
        included), then restoring it exactly: the episode is left as it was."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        import mujoco

        env = self._env
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        saved = np.empty(mujoco.mj_stateSize(env.model, spec))
        mujoco.mj_getState(env.model, env.data, saved, spec)
        keep = (self._state, env.curr_path_length, env._prev_obs.copy(), env._last_stable_obs,
                env._did_see_sim_exception)
        out = np.empty((k, ACTION_DIM), np.float32)
        try:
            for i in range(k):
                out[i] = self.expert_action(rng, noise_std)
                if env.curr_path_length >= PATH_LIMIT:
                    out[i + 1:] = out[i]
                    break
                self._state, _, _, _, info = env.step(out[i].astype(np.float64))
                if info["success"]:
                    out[i + 1:] = out[i]  # the env stops here anyway
                    break
        finally:
            mujoco.mj_setState(env.model, env.data, saved, spec)
            mujoco.mj_forward(env.model, env.data)
            self._state, env.curr_path_length, env._prev_obs, env._last_stable_obs, env._did_see_sim_exception = keep
        return out

    # --- internals ---------------------------------------------------------------------
    def _env_for(self, name: str):
        if name not in self._envs:
            env = self._classes[name]()  # render_mode None: rendering goes through the shared renderer
            env.seed(self._seed)
            self._place_camera(env.model)
            self._envs[name] = env
        self._env, self._env_name = self._envs[name], name
        return self._env

    def _place_camera(self, model) -> None:
        pos = self.config.camera_position()
        if pos:
            import mujoco

            cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.config.camera)
            model.cam_pos[cam] = pos

    def _render(self) -> np.ndarray:
        env, size, cam = self._env, self.config.image_size, self.config.camera
        with _RENDER_LOCK:
            r = shared_renderer(self._env_name, env.model, size)
            r._model = env.model  # every env of a task loads the same XML: one GL context serves them all
            r.update_scene(env.data, camera=cam)
            img = r.render()
            _release_gl_context()
        return np.ascontiguousarray(img[::-1, ::-1] if cam in UPSIDE_DOWN else img)

    def _obs(self, image: np.ndarray) -> Dict[str, Any]:
        self._last = {"image": image, "proprio": np.asarray(self._state[:PROPRIO_DIM], np.float32),
                      "instruction": self._task.instruction if self._task else ""}
        return dict(self._last)


_EXPERTS: Dict[str, Any] = {}


def _expert(name: str):
    if name not in _EXPERTS:
        from metaworld.policies import ENV_POLICY_MAP

        _EXPERTS[name] = ENV_POLICY_MAP[name]()
    return _EXPERTS[name]
