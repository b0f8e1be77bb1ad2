"""Which task and initial state each new episode runs.

GRPO needs G episodes from the same task and initial state; `GroupSampler` hands out
assignments so that every `group_size` consecutive draws share one (task, init) and one
group key. PPO uses group_size=1 (every episode independent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpisodeAssignment:
    task_id: int
    init_id: int
    split: str = "train"  # train | eval initial states
    group_key: str = ""  # episodes with the same key form one GRPO group
    keep: bool = True  # False: filler episode (simulated, data discarded)


class GroupSampler:
    def __init__(self, num_tasks: int, num_init_states: int, group_size: int, seed: int, prefix: str = "g",
                 split: str = "train"):
        if num_tasks < 1 or num_init_states < 1 or group_size < 1:
            raise ValueError("GroupSampler needs num_tasks, num_init_states and group_size >= 1")
        self.num_tasks, self.num_init_states, self.group_size = num_tasks, num_init_states, group_size
        self.rng = np.random.default_rng(seed)
        self.prefix, self.split = prefix, split
        self.groups_started = self._left = 0
        self._current: EpisodeAssignment | None = None

    def next(self) -> EpisodeAssignment:
        if self._left == 0:
            task = int(self.rng.integers(self.num_tasks))
            init = int(self.rng.integers(self.num_init_states))
            self._current = EpisodeAssignment(task, init, self.split, f"{self.prefix}{self.groups_started}")
            self.groups_started += 1
            self._left = self.group_size
        self._left -= 1
        return self._current

    def draw(self, n: int) -> list:
        return [self.next() for _ in range(n)]
