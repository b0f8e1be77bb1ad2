"""What every env (tabletop, LIBERO, MetaWorld) tells the workers about its tasks and the
current episode, written once. A subclass sets PROPRIO_DIM and ACTION_DIM and keeps `_tasks`,
`_task`, `_steps` (low-level steps in the episode) and `_done` up to date."""

from __future__ import annotations


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
