"""Typed messages that cross process boundaries (env worker <-> generator <-> trainer).

Arrays are numpy so that Ray moves them through its shared-memory object store
without pickling Python lists element by element.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional

import numpy as np


@dataclass
class ObsBatch:
    """Observations of n envs: what a policy needs to act."""

    images: np.ndarray  # (n, H, W, 3) uint8
    proprio: np.ndarray  # (n, P) float32
    instructions: List[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @staticmethod
    def concat(parts: List["ObsBatch"]) -> "ObsBatch":
        return ObsBatch(np.concatenate([p.images for p in parts]), np.concatenate([p.proprio for p in parts]),
                        [s for p in parts for s in p.instructions])

    def take(self, idx) -> "ObsBatch":
        idx = np.asarray(idx)
        return ObsBatch(self.images[idx], self.proprio[idx], [self.instructions[i] for i in idx])


@dataclass
class ActionRequest:
    """An env slot (holding one or more envs) asks for its next action chunks."""

    request_id: int
    worker_id: int
    slot_id: int
    obs: ObsBatch
    t_sent: float = 0.0  # wall clock when the env worker sent it (benchmark timelines; 0 = not traced)

    @property
    def num_samples(self) -> int:
        return len(self.obs)


@dataclass
class ActionReply:
    """What the generator answers for one request."""

    request_id: int
    actions: np.ndarray  # (n, chunk, action_dim) float32 in [-1, 1]
    tokens: np.ndarray  # (n, D) what the policy needs to recompute its log-prob: int64 bin ids or a float32 flow chain
    logp: np.ndarray  # (n, T) float32 token log-probs under the behaviour policy
    values: np.ndarray  # (n,) float32
    version: int  # policy version that produced this reply
    batch_size: int = 0  # realised batch (samples) the request was served in
    # Benchmark timelines only (None otherwise): wall-clock times of the request's way through
    # the generator (read off the socket, queued in the batcher, batched, forward start/end, answered).
    timing: Optional[Dict[str, float]] = None


@dataclass
class Episode:
    """One finished (or cut) trajectory of decision steps, as built by an env slot."""

    task_id: int
    init_id: int
    group_key: str  # episodes with the same key form one GRPO group
    images: np.ndarray  # (L, H, W, 3) uint8, obs at each decision
    proprio: np.ndarray  # (L, P)
    instruction: str
    tokens: np.ndarray  # (L, T)
    logp: np.ndarray  # (L, T)
    values: np.ndarray  # (L,)
    versions: np.ndarray  # (L,) int64 behaviour policy version per decision
    rewards: np.ndarray  # (L,) reward summed over the chunk's sub-steps
    success: bool
    terminated: bool  # ended in a terminal state (no bootstrap)
    bootstrap_value: float  # V(s_L) when cut without termination
    env_steps: int  # low-level simulator steps in this episode
    worker_id: int = 0
    slot_id: int = 0
    episode_id: int = 0  # unique per run: worker_id * 2**32 + per-worker counter
    # (L,) int64 sub-actions of each chunk the env executed (fewer than the chunk where the
    # episode ended mid-chunk); None: every chunk ran in full
    executed: Optional[np.ndarray] = None
    # s_L of an episode cut by a time limit that its observation does not show: not terminal,
    # and V(s_L) is still to be computed (core/experience.py `pending_bootstrap`)
    bootstrap_obs: Optional[ObsBatch] = None
    # False for a segment handed over while its episode runs on (`rollout.segment_chunks`): not
    # terminal, bootstrapped with V of the next decision's observation; the episode's last part
    # (and a whole episode) is final
    final: bool = True

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class SampleBatch:
    """Training samples: one row per policy decision (one action chunk)."""

    images: np.ndarray  # (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, P) float32
    instructions: List[str]
    tokens: np.ndarray  # (N, D) int64 bin ids or float32 flow chain (see ActionReply)
    logp: np.ndarray  # (N, T) behaviour log-probs
    values: np.ndarray  # (N,) behaviour values
    advantages: np.ndarray  # (N,)
    returns: np.ndarray  # (N,)
    versions: np.ndarray  # (N,) int64
    sample_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) unique ids
    # (N,) int64 sub-actions of the chunk the env executed; the loss masks the others. -1: all
    executed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self):
        if len(self.executed) == 0 and len(self) > 0:  # not recorded: every chunk ran in full
            self.executed = np.full(len(self), -1, np.int64)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def take(self, idx) -> "SampleBatch":
        idx = np.asarray(idx, dtype=np.int64)
        cols = {f.name: getattr(self, f.name) for f in fields(self)}
        return SampleBatch(**{k: [v[i] for i in idx] if isinstance(v, list) else v[idx] for k, v in cols.items()})

    @staticmethod
    def concat(parts: List["SampleBatch"]) -> "SampleBatch":
        if not parts:
            raise ValueError("SampleBatch.concat needs at least one batch")
        cols = {f.name: [getattr(p, f.name) for p in parts] for f in fields(SampleBatch)}
        return SampleBatch(**{k: [s for v in vals for s in v] if isinstance(vals[0], list) else np.concatenate(vals)
                              for k, vals in cols.items()})

    def obs(self) -> ObsBatch:
        return ObsBatch(self.images, self.proprio, self.instructions)


@dataclass
class WeightsMessage:
    """A published policy version: flat name -> array state dict. `bf16`: the names whose
    arrays are bfloat16 bit patterns (`core/weight_wire.py`); read it with `tensors()`."""

    version: int
    state: dict
    bf16: frozenset = frozenset()

    def tensors(self) -> dict:
        from rlvla3.core.weight_wire import unpack

        return unpack(self.state, self.bf16) if self.bf16 else self.state


@dataclass
class TrainResult:
    """What the trainer reports after an optimizer step."""

    version: int
    samples: int
    metrics: dict
    skipped: bool = False  # non-finite loss/grad: the step was skipped
    note: Optional[str] = None
