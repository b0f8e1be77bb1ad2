"""`rlvla3 plot-runs` on synthetic run directories (no training): the figure is written and the
table's numbers are the ones worked out by hand below."""

import json
import os

import pytest

from rlvla3.cli.main import main
from rlvla3.runtime.plot_runs import first_reach, plot_runs

import numpy as np

# (mode, seed) -> success at 0, 1000 and 2000 env steps; sync evaluates at 0 / 10 / 20 min of the
# RL clock, full at 0 / 5 / 10 min (same env steps, twice as fast)
RUNS = {("sync", 0): [0.2, 0.4, 0.6], ("sync", 1): [0.2, 0.5, 0.8],
        ("full", 0): [0.2, 0.6, 0.7], ("full", 1): [0.2, 0.7, 0.8]}


def _run_dir(root, mode, seed, success, minutes, with_wall=True):
    d = root / f"{mode}-s{seed}"
    d.mkdir()
    (d / "config.yaml").write_text(f"run:\n  mode: {mode}\n  seed: {seed}\nalgo:\n  name: ppo\n")
    curve = [{"env_steps": 1000 * i, "wall_s": 60.0 * m if with_wall else None, "eval_s": 60.0 if i == 2 else 0.0,
              "duration_s": 30.0, "success_rate": r} for i, (r, m) in enumerate(zip(success, minutes))]
    summary = {"mode": mode, "eval_points": [[p["env_steps"], p["success_rate"]] for p in curve]}
    if with_wall:
        summary["eval_curve"] = curve
    (d / "summary.json").write_text(json.dumps(summary))
    return str(d)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    return [_run_dir(root, m, s, r, [0, 10, 20] if m == "sync" else [0, 5, 10]) for (m, s), r in RUNS.items()]


def test_table_numbers_and_figure(runs, tmp_path):
    out = str(tmp_path / "fig" / "curve.png")
    stats = {s.mode: s for s in plot_runs(runs, out, say=lambda m: None)}
    assert os.path.getsize(out) > 10_000 and os.path.isfile(tmp_path / "fig" / "curve.md")
    sync, full = stats["sync"], stats["full"]
    assert (sync.runs, full.runs) == (2, 2)
    assert sync.final_mean == pytest.approx(0.7) and full.final_mean == pytest.approx(0.75)
    assert sync.final_sd == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert (sync.final_min, sync.final_max) == (0.6, 0.8)
    assert (sync.wall_min_mean, full.wall_min_mean) == (20.0, 10.0)
    # full's mean: 0.65 at 5 min, 0.75 at 10 min, so sync's final 0.70 at 7.5 min
    assert full.reach_min == pytest.approx(7.5, abs=1e-6) and full.reach_ratio == pytest.approx(0.375, abs=1e-6)
    assert sync.reach_min == pytest.approx(20.0) and sync.reach_ratio == pytest.approx(1.0)
    assert sync.success_at_steps == pytest.approx(0.7) and full.success_at_steps == pytest.approx(0.75)
    md = open(tmp_path / "fig" / "curve.md").read()
    assert (sync.wall_at_steps, full.wall_at_steps, full.wall_at_steps_ratio) == (20.0, 10.0, 0.5)
    assert "| sync | 2 | 70.0% ± 14.1 | 60.0–80.0% | 2,000 | 20.0 | 20.0 | 1.00× | 70.0% | 20.00 | 1.00× |" in md
    assert "| full | 2 | 75.0% ± 7.1 | 70.0–80.0% | 2,000 | 10.0 | 7.5 | 0.37× | 75.0% | 10.00 | 0.50× |" in md


def test_cli_steps_axis_folders_older_runs_and_exclude_eval(runs, tmp_path, capsys):
    root = os.path.dirname(runs[0])
    _run_dir(tmp_path / "runs", "async-train", 0, [0.1, 0.2, 0.3], [0, 1, 2], with_wall=False)  # an older run
    out = str(tmp_path / "wall.png")
    assert main(["plot-runs", root, "--out", out]) == 0  # a folder of runs stands for them
    captured = capsys.readouterr()
    assert "left out of --x wall" in captured.err and "| async-train" not in captured.out
    assert os.path.isfile(out)
    out = str(tmp_path / "steps.png")
    assert main(["plot-runs", *runs, runs[0].replace("sync-s0", "async-train-s0"), "--out", out, "--x", "steps"]) == 0
    md = open(tmp_path / "steps.md").read()
    assert "| async-train | 1 | 30.0% ± 0.0 | 30.0–30.0% | 2,000 | n/a | n/a | n/a | 30.0% |" in md
    stats = {s.mode: s for s in plot_runs(runs, str(tmp_path / "ex.png"), exclude_eval=True, say=lambda m: None)}
    assert stats["sync"].wall_min_mean == 19.0 and stats["full"].wall_min_mean == 9.0  # 60 s of evaluation off
    assert stats["full"].wall_at_steps_ratio == pytest.approx(9.0 / 19.0)  # at 2,000 env steps, evaluation off
    assert main(["plot-runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2


def test_first_reach():
    grid, curve = np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5, 0.5])
    assert first_reach(grid, curve, 0.25) == pytest.approx(0.5)
    assert first_reach(grid, curve, 0.0) == 0.0 and first_reach(grid, curve, 0.6) is None


def test_group_by_name_separates_variants_of_one_mode(runs, tmp_path, capsys):
    """Two lr variants of full are one group by mode and two by name (the -s<seed> suffix
    joins seeds; without config.yaml's run.name the folder's name stands for it)."""
    root = tmp_path / "runs"
    variant = _run_dir(root, "full", 7, [0.2, 0.3, 0.4], [0, 5, 10])
    os.rename(variant, str(root / "full-lr1e-5-s0"))
    dirs = runs + [str(root / "full-lr1e-5-s0")]
    by_mode = {s.mode: s for s in plot_runs(dirs, str(tmp_path / "m.png"), say=lambda m: None)}
    assert sorted(by_mode) == ["full", "sync"] and by_mode["full"].runs == 3
    by_name = {s.mode: s for s in plot_runs(dirs, str(tmp_path / "n.png"), say=lambda m: None, group_by="name")}
    assert sorted(by_name) == ["full", "full-lr1e-5", "sync"]
    assert by_name["full"].runs == 2 and by_name["full-lr1e-5"].final_mean == pytest.approx(0.4)
    assert main(["plot-runs", *dirs, "--out", str(tmp_path / "c.png"), "--group-by", "name",
                 "--ref", "full-lr1e-5"]) == 0
    assert "reference mode: full-lr1e-5" in capsys.readouterr().out
    with pytest.raises(ValueError, match="group_by"):
        plot_runs(dirs, str(tmp_path / "x.png"), group_by="seed")


def test_final_over_last_evals_and_a_common_step_budget(runs, tmp_path):
    """--final-evals 2: each run's final is the mean of its last two evaluations after the SFT one;
    --max-steps 1000: every run ends at its 1,000-step evaluation."""
    stats = {s.mode: s for s in plot_runs(runs, str(tmp_path / "k.png"), say=lambda m: None, final_evals=2)}
    sync, full = stats["sync"], stats["full"]
    assert sync.final_mean == pytest.approx((0.5 + 0.65) / 2) and full.final_mean == pytest.approx(0.70)
    assert (sync.final_min, sync.final_max) == (pytest.approx(0.5), pytest.approx(0.65))
    # full's mean curve: 0.2 at 0 min, 0.65 at 5: sync's 0.575 at 5 * 0.375 / 0.45 min
    assert full.reach_min == pytest.approx(5 * 0.375 / 0.45, abs=1e-6)
    assert full.reach_ratio == pytest.approx(5 * 0.375 / 0.45 / 20, abs=1e-6)
    md = open(tmp_path / "k.md").read()
    assert "final success over the last 2 evals (mean ± sd)" in md and "(final 65.0%)" in md
    stats = {s.mode: s for s in plot_runs(runs, str(tmp_path / "b.png"), say=lambda m: None, max_steps=1000,
                                          final_evals=3)}  # one evaluation left after the SFT one
    sync, full = stats["sync"], stats["full"]
    assert sync.final_mean == pytest.approx(0.45) and full.final_mean == pytest.approx(0.65)
    assert (sync.env_steps_mean, sync.wall_min_mean, full.wall_min_mean) == (1000, 10.0, 5.0)
    assert full.reach_min == pytest.approx(5 * 0.25 / 0.45, abs=1e-6)
    assert (sync.wall_at_steps, full.wall_at_steps, full.wall_at_steps_ratio) == (10.0, 5.0, 0.5)
    assert "every run cut at 1,000 env steps" in open(tmp_path / "b.md").read()
    only_sft = {s.mode: s for s in plot_runs(runs, str(tmp_path / "c.png"), say=lambda m: None, max_steps=500)}
    assert only_sft["sync"].final_mean == pytest.approx(0.2)  # the first evaluation alone
    with pytest.raises(ValueError, match="final_evals"):
        plot_runs(runs, str(tmp_path / "x.png"), final_evals=0)
    with pytest.raises(ValueError, match="max_steps"):
        plot_runs(runs, str(tmp_path / "x.png"), max_steps=0)
    assert main(["plot-runs", *runs, "--out", str(tmp_path / "y.png"), "--final-evals", "0"]) == 2
    assert main(["plot-runs", *runs, "--out", str(tmp_path / "z.png"), "--final-evals", "2", "--max-steps", "1000"]) == 0
