"""`rlvla3 plot-runs RUN_DIR... --out FIG.png`: held-out success of several runs on one plot,
grouped by `run.mode` (e.g. sync and full), each seed a thin line and each mode's mean a thick
one, against the RL stage's wall clock (default) or env steps; a markdown table beside it
(FIG.md) with each mode's final success and the wall time it took to reach the reference
mode's final mean success (the paper's figure, issue 23). `--group-by name` groups by `run.name`
less a trailing `-s<seed>` instead, for variants of one mode (e.g. `full-lr1e-5-s0`).
`--final-evals K` makes a run's final success the mean of its last K evaluations (one evaluation
of 200 episodes moves by about 3.5 points); `--max-steps N` cuts every run at N env steps, so that
runs given different budgets compare at the same one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import yaml

from rlvla3.runtime.eval_curve import EvalPoint, load_eval_curve

GRID_POINTS = 400


@dataclass
class RunCurve:
    run_dir: str
    mode: str
    seed: int
    points: List[EvalPoint]
    name: str = ""  # run.name

    def group(self, by: str) -> str:
        """The curve's group: its mode, or its name less a trailing -s<seed> (by="name")."""
        if by == "mode":
            return self.mode
        return re.sub(r"-s\d+$", "", self.name or os.path.basename(os.path.normpath(self.run_dir)))

    def xs(self, x: str, exclude_eval: bool = False) -> np.ndarray:
        """Minutes of the RL clock (x=wall) or env steps (x=steps) of each evaluation."""
        if x == "steps":
            return np.array([p.env_steps for p in self.points], float)
        return np.array([(p.train_wall_s if exclude_eval else p.wall_s) / 60.0 for p in self.points], float)

    def ys(self) -> np.ndarray:
        return np.array([p.success_rate for p in self.points], float)

    def final(self, evals: int = 1) -> float:
        """Mean success of the last `evals` evaluations after the first (the SFT policy's), or the
        first alone when there is no other."""
        ys = self.ys()
        return float((ys[1:] if len(ys) > 1 else ys)[-evals:].mean())

    @property
    def has_wall(self) -> bool:
        return all(p.wall_s is not None for p in self.points)


@dataclass
class ModeStats:
    mode: str
    runs: int
    final_mean: float
    final_sd: float  # sample standard deviation over seeds (0 for one run)
    final_min: float
    final_max: float
    env_steps_mean: float
    wall_min_mean: Optional[float]  # the RL clock at each run's last evaluation, minutes
    reach_min: Optional[float] = None  # mean curve's first wall minute at the reference's final mean
    reach_ratio: Optional[float] = None  # reach_min / the reference's mean wall
    success_at_steps: Optional[float] = None  # mean curve at the common env-step budget
    # The RL clock (minutes, mean over seeds) at the common env-step budget, and its ratio to the
    # reference's: the comparison at equal env steps, which one lucky evaluation does not move
    wall_at_steps: Optional[float] = None
    wall_at_steps_ratio: Optional[float] = None
    grid: Dict[str, list] = field(default_factory=dict, repr=False)


def expand_run_dirs(paths: List[str]) -> List[str]:
    """Run directories as given; a directory that is no run but holds runs stands for them."""
    out = []
    for p in paths:
        if _is_run(p):
            out.append(p)
        elif os.path.isdir(p):
            out += sorted(os.path.join(p, d) for d in os.listdir(p) if _is_run(os.path.join(p, d)))
    return out


def _is_run(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("summary.json", "metrics.jsonl"))


def read_run(run_dir: str) -> RunCurve:
    mode, seed, name = "", 0, ""
    cfg_path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            run = (yaml.safe_load(f) or {}).get("run", {}) or {}
        mode, seed, name = str(run.get("mode", "")), int(run.get("seed", 0)), str(run.get("name", "") or "")
    if not mode:
        import json

        s = os.path.join(run_dir, "summary.json")
        mode = json.load(open(s)).get("mode", "?") if os.path.isfile(s) else "?"
    pts = sorted(load_eval_curve(run_dir), key=lambda p: p.env_steps)
    return RunCurve(run_dir, mode, seed, pts, name)


def mean_curve(runs: List[RunCurve], x: str, exclude_eval: bool = False) -> tuple:
    """Each run interpolated linearly on a common grid from 0 to the shortest run's last x (no
    extrapolation: the mean exists where every seed does); (grid, mean)."""
    end = min(r.xs(x, exclude_eval)[-1] for r in runs)
    grid = np.linspace(0.0, end, GRID_POINTS) if end > 0 else np.zeros(1)
    ys = np.stack([np.interp(grid, r.xs(x, exclude_eval), r.ys()) for r in runs])
    return grid, ys.mean(axis=0)


def first_reach(grid: np.ndarray, curve: np.ndarray, target: float) -> Optional[float]:
    """The first x where the curve reaches `target` (linear between grid points); None if never."""
    hit = np.nonzero(curve >= target - 1e-9)[0]
    if not len(hit):
        return None
    i = int(hit[0])
    if i == 0:
        return float(grid[0])
    x0, x1, y0, y1 = grid[i - 1], grid[i], curve[i - 1], curve[i]
    return float(x0 + (x1 - x0) * (target - y0) / (y1 - y0)) if y1 != y0 else float(x1)


def step_budget(groups: Dict[str, List[RunCurve]]) -> int:
    """The common env-step budget: the smallest final env-step count of all runs."""
    return min(r.points[-1].env_steps for rs in groups.values() for r in rs)


def mode_stats(groups: Dict[str, List[RunCurve]], ref: str, exclude_eval: bool = False,
               final_evals: int = 1) -> List[ModeStats]:
    steps_budget = step_budget(groups)
    out = []
    for mode, rs in groups.items():
        finals = np.array([r.final(final_evals) for r in rs])
        walls = [r.xs("wall", exclude_eval)[-1] for r in rs] if all(r.has_wall for r in rs) else None
        grid_s, mean_s = mean_curve(rs, "steps")
        at_budget = float(np.interp(steps_budget, grid_s, mean_s))
        out.append(ModeStats(mode, len(rs), float(finals.mean()), float(finals.std(ddof=1)) if len(rs) > 1 else 0.0,
                             float(finals.min()), float(finals.max()),
                             float(np.mean([r.points[-1].env_steps for r in rs])),
                             float(np.mean(walls)) if walls else None, success_at_steps=at_budget,
                             grid={"steps": [grid_s.tolist(), mean_s.tolist()]}))
    by_mode = {m.mode: m for m in out}
    target = by_mode[ref].final_mean
    for m in out:
        rs = groups[m.mode]
        if m.wall_min_mean is None:
            continue
        grid, mean = mean_curve(rs, "wall", exclude_eval)
        m.grid["wall"] = [grid.tolist(), mean.tolist()]
        m.wall_at_steps = float(np.mean([np.interp(steps_budget, r.xs("steps"), r.xs("wall", exclude_eval))
                                         for r in rs]))
        m.reach_min = first_reach(grid, mean, target)
        ref_wall = by_mode[ref].wall_min_mean
        if m.reach_min is not None and ref_wall:
            m.reach_ratio = m.reach_min / ref_wall
    ref_at = by_mode[ref].wall_at_steps
    for m in out:
        if m.wall_at_steps is not None and ref_at:
            m.wall_at_steps_ratio = m.wall_at_steps / ref_at
    return out


def _fmt(v: Optional[float], spec: str, suffix: str = "") -> str:
    return "n/a" if v is None else format(v, spec) + suffix


def to_markdown(stats: List[ModeStats], ref: str, exclude_eval: bool, runs: Dict[str, List[RunCurve]],
                final_evals: int = 1, max_steps: Optional[int] = None) -> str:
    ref_final = next(s.final_mean for s in stats if s.mode == ref)
    budget = step_budget(runs)
    clock = "RL-stage wall clock without in-RL evaluations" if exclude_eval else "RL-stage wall clock"
    final = "final success" if final_evals == 1 else f"final success over the last {final_evals} evals"
    cut = "" if max_steps is None else f"; every run cut at {max_steps:,} env steps"
    lines = [f"Held-out success per mode ({clock}; reference mode: {ref}, final mean {100 * ref_final:.1f}%{cut}).",
             "", f"| mode | runs | {final} (mean ± sd) | range | env steps (mean) | wall min (mean) | "
             f"min to reach {ref}'s final | × {ref}'s wall | success at {budget:,} env steps | "
             f"wall min at {budget:,} env steps | × {ref}'s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in stats:
        reach = "n/a" if s.wall_min_mean is None else "not reached" if s.reach_min is None \
            else "at start" if s.reach_min == 0.0 else _fmt(s.reach_min, ".1f")
        ratio = "-" if reach == "at start" else _fmt(s.reach_ratio, ".2f", "×")
        lines.append(f"| {s.mode} | {s.runs} | {100 * s.final_mean:.1f}% ± {100 * s.final_sd:.1f} | "
                     f"{100 * s.final_min:.1f}–{100 * s.final_max:.1f}% | {s.env_steps_mean:,.0f} | "
                     f"{_fmt(s.wall_min_mean, '.1f')} | {reach} | {ratio} | "
                     f"{_fmt(None if s.success_at_steps is None else 100 * s.success_at_steps, '.1f', '%')} | "
                     f"{_fmt(s.wall_at_steps, '.2f')} | {_fmt(s.wall_at_steps_ratio, '.2f', '×')} |")
    lines += ["", "Mean curves are the seeds interpolated on a common grid up to the shortest seed; 'min to reach' is "
              "the mode's mean curve's first crossing of the reference's final mean ('at start': the first "
              "evaluation, before RL, is already there; n/a: no wall clock). 'wall min at N env steps': each seed's "
              "RL clock interpolated at the smallest final env-step count of all runs, averaged: the comparison "
              "at equal env steps, which one evaluation's noise does not move.", "",
              "Runs:", ""]
    lines += [f"- {m}, seed {r.seed}: {r.run_dir} (final {100 * r.final(final_evals):.1f}%)"
              for m, rs in runs.items() for r in rs]
    return "\n".join(lines) + "\n"


def plot_runs(run_dirs: List[str], out: str, x: str = "wall", ref: str = "sync", exclude_eval: bool = False,
              title: str = "", say=print, group_by: str = "mode", final_evals: int = 1,
              max_steps: Optional[int] = None) -> List[ModeStats]:
    """Draws the figure at `out` and writes the table beside it (same name, .md). `group_by`:
    "mode" (run.mode) or "name" (run.name less -s<seed>); `ref` names a group. `final_evals`: a
    run's final success is the mean of its last that many evaluations; `max_steps`: evaluations
    past that many env steps are left out."""
    if group_by not in ("mode", "name"):
        raise ValueError(f"group_by must be 'mode' or 'name', not {group_by!r}")
    if final_evals < 1:
        raise ValueError(f"final_evals must be >= 1, not {final_evals}")
    if max_steps is not None and max_steps <= 0:
        raise ValueError(f"max_steps must be > 0, not {max_steps}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: Dict[str, List[RunCurve]] = {}
    mode_of: Dict[str, str] = {}
    for d in expand_run_dirs(run_dirs):
        r = read_run(d)
        if max_steps is not None:
            r.points = [p for p in r.points if p.env_steps <= max_steps]
        if not r.points:
            say(f"plot-runs: {d} has no evaluation yet; left out")
            continue
        if x == "wall" and not r.has_wall:
            say(f"plot-runs: {d} has no RL wall clock (a run from before eval_curve); left out of --x wall")
            continue
        key = r.group(group_by)
        groups.setdefault(key, []).append(r)
        mode_of.setdefault(key, r.mode)  # orders the groups as the schedules are ordered
    if not groups:
        raise ValueError("no run with evaluations among " + ", ".join(run_dirs))
    from rlvla3.runtime.config import MODES

    # the schedules in the ablation's order (sync first), whatever order the folders came in
    order = {m: i for i, m in enumerate(MODES)}
    groups = dict(sorted(groups.items(), key=lambda kv: (order.get(mode_of[kv[0]], len(order)), kv[0])))
    if ref not in groups:
        say(f"plot-runs: no {ref} run; the reference mode is {sorted(groups)[0]}")
        ref = sorted(groups)[0]
    stats = mode_stats(groups, ref, exclude_eval, final_evals)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, (mode, rs) in enumerate(groups.items()):
        color = f"C{i}"
        for r in rs:
            ax.plot(r.xs(x, exclude_eval), r.ys(), color=color, lw=0.8, alpha=0.45)
        grid, mean = next(s for s in stats if s.mode == mode).grid["wall" if x == "wall" else "steps"]
        ax.plot(grid, mean, color=color, lw=2.6, label=f"{mode} (mean of {len(rs)})")
    ref_final = next(s.final_mean for s in stats if s.mode == ref)
    ax.axhline(ref_final, color="0.4", ls=":", lw=1, label=f"{ref}'s final mean")
    ax.set_xlabel(("wall-clock minutes of the RL stage" + (", evaluations excluded" if exclude_eval else ""))
                  if x == "wall" else "environment steps")
    ax.set_ylabel("held-out success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "held-out success: each seed thin, the mean thick")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(to_markdown(stats, ref, exclude_eval, groups, final_evals, max_steps))
    return stats
