"""Files a finished run leaves behind: curve PNG, rollout videos, summary.json."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import numpy as np


def save_curve(path: str, points: List[Tuple[int, float]], title: str, baseline: float | None = None,
               train_points: List[Tuple[int, float]] | None = None,
               wall_points: List[Tuple[float, float]] | None = None) -> None:
    """Success against env steps; with `wall_points` ((RL-stage seconds, success), see
    eval_curve.CLOCK) a second panel against wall-clock minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if wall_points:
        fig, (ax, axw) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110, sharey=True)
        xs, ys = zip(*wall_points)
        axw.plot([x / 60 for x in xs], ys, "o-", color="C0", label="eval success (held-out init states)")
        if baseline is not None:
            axw.axhline(baseline, color="C3", ls="--", lw=1, label="SFT policy (eval)")
        axw.set_xlabel("wall-clock minutes of the RL stage")
        axw.grid(alpha=0.3)
    else:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    if train_points:
        xs, ys = zip(*train_points)
        ax.plot(xs, ys, color="0.7", lw=1, label="rollout success (train init states)")
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, "o-", color="C0", label="eval success (held-out init states)")
    if baseline is not None:
        ax.axhline(baseline, color="C3", ls="--", lw=1, label="SFT policy (eval)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_videos(out_dir: str, frames: Dict, fps: int = 10, scale: int = 3) -> List[str]:
    """One MP4 per recorded slot; frames are upscaled so the tiny images are watchable."""
    import imageio.v2 as imageio

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for (worker, slot), seq in sorted(frames.items()):
        if not seq:
            continue
        arr = np.stack(seq)
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
        path = os.path.join(out_dir, f"rollout_w{worker}_s{slot}.mp4")
        try:
            imageio.mimwrite(path, list(arr), fps=fps, macro_block_size=1)
        except Exception:  # no ffmpeg backend: fall back to GIF, still a video a person can open
            path = path[:-4] + ".gif"
            imageio.mimwrite(path, list(arr), duration=1.0 / fps)
        paths.append(path)
    return paths


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
