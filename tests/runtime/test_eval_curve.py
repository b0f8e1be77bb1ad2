"""Held-out success against env steps and the RL stage's wall clock (issue 23, item 4): every
evaluation lands in eval_points (as before), eval_curve, metrics.jsonl and summary.json, on a
fake clock so the numbers are exact."""

import json
import types

import pytest

from rlvla3.runtime import train_loop
from rlvla3.runtime.eval_curve import EvalPoint, load_eval_curve
from rlvla3.runtime.evaluation import EvalReport
from rlvla3.runtime.config import load_config
from rlvla3.runtime.run_logger import RunLogger
from rlvla3.runtime.supervisor import FaultReport


class Clock:
    def __init__(self, t: float):
        self.t = t

    def time(self) -> float:
        return self.t

    def strftime(self, *a):
        return "now"


def _session(saved: dict):
    call = lambda f: types.SimpleNamespace(remote=f)  # noqa: E731
    trainer = types.SimpleNamespace(get_version=call(lambda: 3), save=call(lambda path, c: saved.update(c)))
    return types.SimpleNamespace(publish_weights=lambda: 3, eval_workers=[], generators=[], instructions=["t"],
                                 horizon=4, published_version=3, eval_guard=lambda: None, trainer=trainer,
                                 backend=types.SimpleNamespace(get=lambda x: x), fault_report=FaultReport(),
                                 weights=None)


@pytest.fixture
def loop(tmp_path, monkeypatch):
    clock = Clock(100.0)
    monkeypatch.setattr(train_loop, "time", clock)
    rates = iter([0.2, 0.4, 0.6, 0.8])

    def fake_evaluate(*a, **k):
        clock.t += 5.0  # every evaluation takes 5 s
        return EvalReport(success_rate=next(rates), episodes=10)

    monkeypatch.setattr(train_loop, "evaluate", fake_evaluate)
    saved = {}
    cfg = load_config(["preset=tiny-test"])
    state = train_loop.TrainingRun(cfg=cfg, logger=RunLogger(str(tmp_path), 0, progress=False),
                                 session=_session(saved), run_dir=str(tmp_path))
    state.clock, state.saved = clock, saved
    yield state
    state.logger.close()


def test_each_evaluation_records_steps_rl_wall_clock_and_eval_time(loop, tmp_path):
    clock = loop.clock
    loop.evaluate("eval_sft")  # before the RL clock: at 0, adds nothing to eval_s
    clock.t = 110.0
    loop.start_rl_clock()
    clock.t, loop.env_steps, loop.train_steps = 130.0, 1000, 4
    loop.evaluate("eval_periodic", save=False)  # RL clock 20 s, 5 s of evaluation after it
    clock.t, loop.env_steps, loop.train_steps = 150.0, 2000, 8
    loop.evaluate("eval_final")
    assert loop.eval_points == [(0, 0.2), (1000, 0.4), (2000, 0.6)]  # older readers: unchanged
    got = [(p.env_steps, p.wall_s, p.eval_s, p.duration_s, p.success_rate, p.stem) for p in loop.eval_curve]
    assert got == [(0, 0.0, 0.0, 5.0, 0.2, "eval_sft"), (1000, 20.0, 0.0, 5.0, 0.4, "eval_periodic"),
                   (2000, 40.0, 5.0, 5.0, 0.6, "eval_final")]
    assert loop.eval_curve[2].train_wall_s == 35.0
    assert loop.rl_wall_s == 45.0 and loop.eval_s == 10.0
    loop.logger.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    evals = [r for r in rows if "eval/success_rate" in r]
    assert [(r["env_steps"], r["eval/wall_s"], r["eval/eval_s"], r["eval/duration_s"]) for r in evals] == [
        (0, 0.0, 0.0, 5.0), (1000, 20.0, 0.0, 5.0), (2000, 40.0, 5.0, 5.0)]
    from_metrics = load_eval_curve(str(tmp_path))  # a run without summary.json yet
    assert [(p.env_steps, p.wall_s, p.eval_s, p.success_rate) for p in from_metrics] == [
        (0, 0.0, 0.0, 0.2), (1000, 20.0, 0.0, 0.4), (2000, 40.0, 5.0, 0.6)]
    summary = train_loop._summary(loop, loop.session, str(tmp_path))
    assert summary["eval_points"] == loop.eval_points and summary["rl_wall_s"] == 45.0
    assert summary["eval_curve"][1] == {"env_steps": 1000, "wall_s": 20.0, "eval_s": 0.0, "duration_s": 5.0,
                                        "success_rate": 0.4, "train_steps": 4, "stem": "eval_periodic"}
    assert "RL stage" in summary["eval_curve_clock"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert load_eval_curve(str(tmp_path)) == loop.eval_curve


def test_each_tasks_success_lands_in_the_metrics(loop, tmp_path, monkeypatch):
    per_task = {"open the drawer": {"episodes": 10, "success_rate": 0.9},
                "close the drawer!": {"episodes": 10, "success_rate": 0.2},
                "press the button": {"episodes": 0, "success_rate": 0.0}}  # no episode: no point
    monkeypatch.setattr(train_loop, "evaluate", lambda *a, **k: EvalReport(0.55, 20, per_task=per_task))
    loop.evaluate("eval_periodic", save=False)
    loop.logger.close()
    row = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
    assert row["eval/success_rate"] == 0.55
    assert {k: v for k, v in row.items() if k.startswith("eval_task/")} == {
        "eval_task/open_the_drawer": 0.9, "eval_task/close_the_drawer": 0.2}


def test_the_rl_clock_and_curve_survive_a_resume(loop):
    clock = loop.clock
    loop.evaluate("eval_sft")
    loop.start_rl_clock()
    clock.t += 30.0
    loop.env_steps = 500
    loop.evaluate("eval_periodic", save=False)
    loop.checkpoint()
    assert loop.saved["rl_wall_s_before"] == 35.0 and loop.saved["eval_s"] == 5.0
    again = train_loop.TrainingRun(cfg=loop.cfg, logger=loop.logger, session=loop.session, run_dir=loop.run_dir)
    again.restore(loop.saved)
    assert again.eval_curve == loop.eval_curve and again.rl_wall_s == 35.0  # clock stopped until restarted
    clock.t += 100.0  # the restart itself is not RL time
    again.start_rl_clock()
    clock.t += 10.0
    assert again.rl_wall_s == 45.0


def test_older_checkpoints_and_runs_still_read(loop, tmp_path):
    loop.restore({"env_steps": 7, "eval_points": [[0, 0.1], [7, 0.3]]})  # no eval_curve in it
    assert [(p.env_steps, p.wall_s, p.success_rate) for p in loop.eval_curve] == [(0, None, 0.1), (7, None, 0.3)]
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"eval_points": [[0, 0.1], [9, 0.5]]}))
    assert [(p.env_steps, p.wall_s) for p in load_eval_curve(str(old))] == [(0, None), (9, None)]
    rows = [{"step": 0, "env_steps": 0, "wall_s": 61.0, "eval/success_rate": 0.1},
            {"step": 3, "env_steps": 90, "wall_s": 95.5, "train/samples": 4.0},
            {"step": 5, "env_steps": 120, "wall_s": 130.0, "eval/success_rate": 0.5}]
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "env')
    assert [(p.env_steps, p.wall_s, p.success_rate) for p in load_eval_curve(str(old))] == [
        (0, 61.0, 0.1), (120, 130.0, 0.5)]  # the logger's clock where the run has no RL clock
    assert EvalPoint.from_json({"env_steps": 1, "wall_s": 2.0, "eval_s": 0.0, "duration_s": 1.0,
                                "success_rate": 0.5, "future_key": 1}).wall_s == 2.0


def test_curve_png_has_a_wall_clock_panel(tmp_path):
    from rlvla3.runtime.outputs import save_curve

    path = tmp_path / "curve.png"
    save_curve(str(path), [(0, 0.2), (1000, 0.5)], "t", baseline=0.2, train_points=[(500, 0.3)],
               wall_points=[(0.0, 0.2), (90.0, 0.5)])
    import matplotlib.image as mpimg

    h, w = mpimg.imread(str(path)).shape[:2]
    assert w > 1.5 * h  # two panels side by side


def test_max_rl_minutes_stops_on_the_rl_clock_not_before_it_starts(loop):
    """run.max_rl_minutes: schedules compared at equal RL wall-clock time stop on that clock."""
    clock = loop.clock
    loop.cfg.run.max_rl_minutes = 0.5
    loop.cfg.run.total_env_steps = 10 ** 9
    clock.t = 1000.0  # long after the run's start, but the RL clock has not started: keep going
    assert not loop.should_stop()
    loop.start_rl_clock()
    clock.t = 1029.0
    assert not loop.should_stop()
    clock.t = 1030.0
    assert loop.should_stop() and loop.ended_by == "run.max_rl_minutes"  # summary.json's ended_by
    loop.cfg.run.max_rl_minutes = 0.0  # 0: no limit
    assert not loop.should_stop() and loop.end_reason() == ""
    loop.env_steps = loop.cfg.run.total_env_steps
    assert loop.end_reason() == "run.total_env_steps" and loop.ended_by == "run.max_rl_minutes"  # the first stays
    loop.stop_requested = "SIGTERM"
    assert loop.end_reason() == "SIGTERM"  # a signal names itself first
    assert loop.ended_first_by() == "run.max_rl_minutes"  # but came after the budget had ended the run


def test_ended_by_names_a_signal_that_came_before_any_budget(loop):
    loop.stop_requested = "SIGINT"  # e.g. during SFT, before the schedule checked anything
    assert loop.ended_first_by() == "SIGINT"
    assert loop.should_stop() and loop.ended_first_by() == "SIGINT"
