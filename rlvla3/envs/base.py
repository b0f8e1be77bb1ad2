"""What every env (tabletop, LIBERO, MetaWorld) tells the workers about its tasks and the
current episode, written once. A subclass sets PROPRIO_DIM and ACTION_DIM and keeps `_tasks`,
`_task`, `_steps` (low-level steps in the episode) and `_done` up to date."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

SPLITS = ("train", "eval")  # initial states trained on | held out for evaluation
RESET_OPTIONS = ("task_id", "init_id", "split")


class EnvTaskInfo:
    PROPRIO_DIM = 0
    ACTION_DIM = 0
    num_tasks = property(lambda self: len(self._tasks))
    tasks = property(lambda self: list(self._tasks))
    proprio_dim = property(lambda self: self.PROPRIO_DIM)
    action_dim = property(lambda self: self.ACTION_DIM)
    task = property(lambda self: self._task, doc="The current episode's task (None before the first reset).")
    steps = property(lambda self: self._steps, doc="Low-level steps taken in the current episode.")
    done = property(lambda self: self._done)

    def step(self, action):
        """One low-level step: a chunk of one (envs whose `chunk_step` does the work)."""
        return self.chunk_step(np.asarray(action, np.float32)[None])

    def render(self) -> np.ndarray:
        """The last observation's image (black before the first reset)."""
        return self._last.get("image", np.zeros((self.config.image_size,) * 2 + (3,), np.uint8))

    def num_init_states(self, split: str = "train") -> int:
        """Initial states of `split`: the config's `num_init_states` or `num_eval_init_states`."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        return self.config.num_init_states if split == "train" else self.config.num_eval_init_states

    def reset_choice(self, options: Optional[dict],
                     draw: Optional[Callable[[int], int]] = None) -> Tuple[str, int, int]:
        """(split, task_id, init_id) of reset `options`, checked. An id left out is `draw(n)`
        (one of n, e.g. at random) or, without `draw`, 0."""
        opts = dict(options or {})
        unknown = [k for k in opts if k not in RESET_OPTIONS]
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; valid: {list(RESET_OPTIONS)}")
        split = opts.get("split") or "train"
        n_init = self.num_init_states(split)
        pick = lambda key, n: (draw(n) if draw else 0) if opts.get(key) is None else int(opts[key])  # noqa: E731
        task_id = pick("task_id", self.num_tasks)
        if not 0 <= task_id < self.num_tasks:
            raise ValueError(f"task_id must be in [0, {self.num_tasks}), got {task_id}")
        init_id = pick("init_id", n_init)
        if not 0 <= init_id < n_init:
            raise ValueError(f"init_id must be in [0, {n_init}) for split {split!r}, got {init_id}")
        return split, task_id, init_id
