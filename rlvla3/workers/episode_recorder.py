"""Per-slot episode buffer: records each decision (obs, reply, reward) and builds an Episode."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from rlvla3.core.types import Episode, ObsBatch


class EpisodeRecorder:
    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._clear_decisions()
        self.env_steps = 0  # the whole episode's, across its segments (outcomes report it)
        self.task_id = -1
        self.init_id = -1
        self.group_key = ""
        self.instruction = ""
        self.keep = True  # False for filler episodes whose data is discarded

    def _clear_decisions(self) -> None:
        self.images: List[np.ndarray] = []
        self.proprio: List[np.ndarray] = []
        self.tokens: List[np.ndarray] = []
        self.logp: List[np.ndarray] = []
        self.values: List[float] = []
        self.versions: List[int] = []
        self.rewards: List[float] = []
        self.executed: List[int] = []  # sub-actions of each chunk the env ran (their sum: this part's env steps)

    def start(self, task_id: int, init_id: int, group_key: str, instruction: str, keep: bool = True) -> None:
        self.clear()
        self.task_id, self.init_id, self.group_key, self.instruction, self.keep = (
            task_id, init_id, group_key, instruction, keep)

    def record_decision(self, image, proprio, tokens, logp, value: float, version: int) -> None:
        self.images.append(image)
        self.proprio.append(proprio)
        self.tokens.append(tokens)
        self.logp.append(logp)
        self.values.append(float(value))
        self.versions.append(int(version))

    def record_outcome(self, reward: float, substeps: int) -> None:
        self.rewards.append(float(reward))
        self.executed.append(int(substeps))
        self.env_steps += int(substeps)

    def __len__(self) -> int:
        return len(self.rewards)

    def build(self, success: bool, terminated: bool, bootstrap_value: float, worker_id: int, slot_id: int,
              episode_id: int, bootstrap_obs: Optional[ObsBatch] = None, final: bool = True) -> Optional[Episode]:
        n = len(self.rewards)  # decisions with an outcome (a pending decision is dropped)
        if n == 0:
            return None
        return Episode(
            task_id=self.task_id, init_id=self.init_id, group_key=self.group_key,
            images=np.stack(self.images[:n]), proprio=np.stack(self.proprio[:n]).astype(np.float32),
            instruction=self.instruction, tokens=np.stack(self.tokens[:n]), logp=np.stack(self.logp[:n]),
            values=np.asarray(self.values[:n], np.float32), versions=np.asarray(self.versions[:n], np.int64),
            rewards=np.asarray(self.rewards, np.float32), success=bool(success), terminated=bool(terminated),
            bootstrap_value=float(bootstrap_value), env_steps=int(sum(self.executed)), worker_id=worker_id,
            slot_id=slot_id, episode_id=episode_id, executed=np.asarray(self.executed, np.int64),
            bootstrap_obs=bootstrap_obs, final=final,
        )

    def cut_segment(self, bootstrap_value: float, worker_id: int, slot_id: int, episode_id: int) -> Optional[Episode]:
        """The decisions so far as a segment of the running episode (not its end: `final` False),
        bootstrapped with V of the current observation; the episode goes on from here."""
        seg = self.build(False, False, bootstrap_value, worker_id, slot_id, episode_id, final=False)
        self._clear_decisions()
        return seg
