"""`run.*`, `sft.*` and `eval.*`: what the run does (mode, budget), the behaviour cloning before RL
and the held-out evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlvla3.core.config_checks import check, check_at_least, check_choice

MODES = ("sync", "sync-best", "async-train", "async-rollout", "full")


@dataclass
class RunConfig:
    name: str = ""  # run directory name; "" = timestamp
    output_dir: str = "runs"
    seed: int = 0
    mode: str = "sync"  # sync | sync-best | async-train | async-rollout | full
    backend: str = "ray"  # ray | local (same workers in one process, for debugging)
    total_env_steps: int = 60000  # stop after this many low-level simulator steps
    max_train_steps: int = 0  # stop after this many optimizer steps; 0 = no limit
    # Stop the RL stage after this many minutes of its clock (eval_curve.CLOCK), whichever budget
    # ends first: compares schedules at equal wall-clock time. 0 = no limit.
    max_rl_minutes: float = 0.0
    checkpoint_every: int = 10  # optimizer steps between checkpoints
    progress: bool = True  # live progress display
    deterministic: bool = False  # deterministic torch kernels in the SFT stage and the trainer (process/determinism.py)
    torch_threads: int = 1  # per worker process

    def validate(self, prefix: str = "run") -> None:
        check_choice(self.mode, MODES, f"{prefix}.mode")
        check(self.backend in ("ray", "local"), f"{prefix}.backend must be 'ray' or 'local', got {self.backend!r}")
        check(self.backend == "ray" or self.mode in ("sync", "sync-best", "async-train"),
              f"{prefix}.mode={self.mode!r} runs env slots and generators concurrently and needs {prefix}.backend=ray")
        check_at_least(self, prefix, 1, "total_env_steps", "torch_threads")
        check_at_least(self, prefix, 0, "max_train_steps", "checkpoint_every", "max_rl_minutes")


@dataclass
class SFTConfig:
    enabled: bool = True  # train: behaviour-clone a scripted expert before RL
    checkpoint: str = ""  # reuse an SFT checkpoint instead of training one
    demos_per_task: int = 8  # expert episodes per task (train initial states)
    noise_std: float = 0.2  # expert action noise (demonstration diversity)
    collect_workers: int = 0  # processes collecting the demos; 0 = as many as rollout.num_env_workers
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    augment_shift: int = 0  # shift SFT images by up to this many pixels (a few dozen demos overfit)

    def validate(self, prefix: str = "sft") -> None:
        check_at_least(self, prefix, 0, "epochs", "collect_workers", "augment_shift")
        check_at_least(self, prefix, 1, "demos_per_task", "batch_size")
        check(not self.checkpoint or os.path.isdir(self.checkpoint),
              f"{prefix}.checkpoint points to {self.checkpoint!r}, which is not a directory")


@dataclass
class EvalConfig:
    episodes_per_task: int = 0  # held-out initial states per task; 0 = all of them
    every_steps: int = 0  # evaluate every N optimizer steps during training; 0 = only at the end
    deterministic: bool = True  # greedy actions at evaluation
    repeats: int = 1  # episodes per held-out initial state (sampled actions only): narrows the estimate
    videos: int = 4  # rollout videos saved per evaluation
    num_workers: int = 2  # env workers used by evaluation
    # Reuse the SFT policy's evaluation made by an earlier run from the same sft.checkpoint with the
    # same seed and settings (stored beside the checkpoint; runtime/sft_eval_cache.py)
    reuse_sft: bool = False

    def validate(self, prefix: str = "eval") -> None:
        check_at_least(self, prefix, 1, "num_workers")
        check_at_least(self, prefix, 0, "episodes_per_task")
        check(self.repeats >= 1 and (self.repeats == 1 or not self.deterministic),
              f"{prefix}.repeats must be >= 1, and 1 with {prefix}.deterministic=true (greedy episodes from one "
              f"initial state repeat exactly), got {self.repeats}")
