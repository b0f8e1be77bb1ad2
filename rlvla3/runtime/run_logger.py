"""Run outputs while training: metrics.jsonl, TensorBoard events and a live progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class RunLogger:
    def __init__(self, run_dir: str, total_env_steps: int, progress: bool = True):
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        self._jsonl = open(os.path.join(run_dir, "metrics.jsonl"), "a", buffering=1)
        self.console = Console(stderr=True)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        except ImportError:  # metrics.jsonl still has everything
            self.console.print("rlvla3: the tensorboard package is missing; TensorBoard logs are off "
                               "(pip install tensorboard)")
        self.t0 = time.time()
        self.progress: Optional[Progress] = None
        if progress:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} env steps"),
                TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=self.console,
                disable=not sys.stderr.isatty(), transient=False,
            )
            self.task = self.progress.add_task("train", total=total_env_steps, status="")
            self.progress.start()
        self._last_print = 0.0

    def log(self, step: int, metrics: dict, env_steps: int) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        row = {"step": step, "env_steps": env_steps, "wall_s": round(time.time() - self.t0, 3), **clean}
        self._jsonl.write(json.dumps(row) + "\n")
        for k, v in clean.items():
            if self.tb is not None and isinstance(v, float) and math.isfinite(v):
                self.tb.add_scalar(k, v, env_steps)
        status = self._status(clean)
        if self.progress is not None:
            self.progress.update(self.task, completed=env_steps, status=status)
            if self.progress.disable and time.time() - self._last_print > 10:  # not a TTY: a line every 10 s
                self.console.print(f"[train] step {step} env_steps {env_steps:,} {status}")
                self._last_print = time.time()

    @staticmethod
    def _status(m: dict) -> str:
        parts = []
        for key, fmt in [("throughput/env_steps_per_s", "{:.0f} steps/s"), ("rollout/episodes_total", "{:.0f} eps"),
                         ("rollout/success_rate", "success {:.2f}"), ("train/policy_loss", "pg {:.3f}"),
                         ("train/value_loss", "vf {:.3f}"), ("eval/success_rate", "eval {:.2f}")]:
            if key in m and isinstance(m[key], float):
                parts.append(fmt.format(m[key]))
        return " | ".join(parts)

    def print(self, msg: str) -> None:
        self.console.print(msg)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        self._jsonl.close()
