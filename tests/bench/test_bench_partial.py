"""`rlvla3 bench` keeps what it measured: bench.json and table.md after every run (a run that
dies in its third mode leaves the first two), and a window that waits for every env slot's
first chunk step, or says that it did not (issue 22)."""

import json
import time
import types

import pytest

from rlvla3.bench import runner
from rlvla3.bench.measure import slot_tracks, window_start
from rlvla3.bench.report import to_markdown
from rlvla3.core.timeline import Span
from rlvla3.runtime.backend import LocalActor, LocalBackend
from rlvla3.runtime.config import load_config

BOUNDS = {k: 1000.0 for k in ("simulators_env_steps_per_s", "simulators_time_limit_env_steps_per_s",
                              "generators_env_steps_per_s", "trainer_env_steps_per_s",
                              "trainer_streaming_env_steps_per_s", "trainer_samples_per_s",
                              "trainer_streaming_samples_per_s", "min_env_steps_per_s",
                              "min_env_steps_per_s_streaming", "steps_per_decision")}
BOUNDS.update(generator_samples_per_s_by_batch={"1": 10.0}, bottleneck="trainer", bottleneck_streaming="trainer",
              simulator_episode_steps_mean=None)


def _metrics(rate, seconds, **extra):
    return dict({"env_steps_per_s": rate, "env_steps": rate * seconds, "window_s": seconds,
                 "env_steps_per_decision": 4.0, "policy_calls_per_s": rate / 4, "trained_samples_per_s": rate / 4,
                 "generator": {"mean_batch": 4.0}, "utilization": {}, "all_slots_stepped": True,
                 "window_start_delay_s": 0.0, "slots": 2, "slots_stepped": 2}, **extra)


def _fake_run_mode(fail_at=None, rates=(500.0, 600.0, 700.0)):
    calls = []

    def run_mode(cfg, policy_dir, seconds, warmup, out_dir):
        calls.append(cfg.run.mode)
        if len(calls) == fail_at:
            raise RuntimeError("killed in this mode")
        return _metrics(rates[(len(calls) - 1) % len(rates)], seconds), [], (0.0, seconds)

    return run_mode, calls


def test_a_run_killed_in_its_third_mode_keeps_the_first_two(tmp_path, monkeypatch):
    run_mode, calls = _fake_run_mode(fail_at=3)
    monkeypatch.setattr(runner, "run_mode", run_mode)
    monkeypatch.setattr(runner, "stage_bounds", lambda *a: pytest.fail("no bounds before every mode ran"))
    with pytest.raises(RuntimeError, match="killed"):
        runner.run_bench("tabletop", ["sync", "full", "sync-best"], 2.0, str(tmp_path), [], warmup=0.0,
                         policy="unused", say=lambda *a: None)
    assert calls == ["sync", "full", "sync-best"]
    res = json.load(open(tmp_path / "bench.json"))
    assert res["partial"] is True and res["done"] == ["sync", "full"]
    assert res["bounds"] is None and "bounds_repeat" not in res
    assert list(res["modes"]) == ["sync", "full"]
    assert res["modes"]["full"]["ratio_to_sync"] == pytest.approx(600.0 / 500.0)
    assert res["modes"]["full"]["pipeline_efficiency"] is None
    md = open(tmp_path / "table.md").read()
    assert "| sync | 500 | 1.00x | n/a |" in md and "| full | 600 | 1.20x | n/a |" in md
    assert not [ln for ln in md.splitlines() if ln.startswith("| sync-best")]
    assert "partial results" in md and "the stage bounds are not measured yet" in md
    assert "Stage bounds: not measured yet" in md
    assert (tmp_path / "timeline.json").exists()  # the rest of the outputs, from empty windows


def test_outputs_after_every_run_and_bounds_then_a_final_result_without_partial(tmp_path, monkeypatch):
    run_mode, _ = _fake_run_mode()
    written = []
    monkeypatch.setattr(runner, "run_mode", run_mode)
    monkeypatch.setattr(runner, "stage_bounds", lambda *a: dict(BOUNDS))
    monkeypatch.setattr("rlvla3.bench.report.write_outputs",
                        lambda result, windows, out: written.append((json.loads(json.dumps(result)),
                                                                     to_markdown(result))))
    res = runner.run_bench("tabletop", ["sync", "full"], 2.0, str(tmp_path), [], warmup=0.0, policy="unused",
                           say=lambda *a: None, repeats=2, bounds_each_repeat=True)
    # sync, full, bounds (repeat 1), sync, full, bounds (repeat 2), final
    assert written[1][0]["done"] == ["sync (repeat 1/2)", "full (repeat 1/2)"]
    dones = [len(r["done"]) if r.get("partial") else None for r, _ in written]
    assert dones == [1, 2, 2, 3, 4, 4, None]
    assert [r["bounds"] is None for r, _ in written] == [True, True, False, False, False, False, False]
    after_first_bounds = written[2][0]
    assert after_first_bounds["modes"]["full"]["pipeline_efficiency"] == pytest.approx(600.0 / 1000.0)
    assert after_first_bounds["bounds_repeat"] == 1
    mid = written[3][0]  # sync ran twice, bounds exist for repeat 1 only
    assert mid["modes"]["sync"]["paired_efficiencies"] == pytest.approx([0.5])
    assert "partial" not in res and "done" not in res and written[-1][0] == json.loads(json.dumps(res))
    assert "partial results" not in written[-1][1] and "partial results" in written[3][1]


def test_window_start_waits_for_every_slot():
    tracks = slot_tracks(2, 2)
    assert tracks == ["env0/slot0", "env0/slot1", "env1/slot0", "env1/slot1"]
    spans = [Span("env0/slot0", "reset", 100.0, 3.0),
             Span("env0/slot0", "env_step", 103.0, 0.5, {"steps": 4}),
             Span("env0/slot1", "env_step", 101.0, 0.5, {"steps": 4}),
             Span("env1/slot0", "env_step", 112.0, 1.0, {"steps": 4}),  # slow first reset: last to step
             Span("env1/slot0", "env_step", 114.0, 1.0, {"steps": 4}),
             Span("env1/slot1", "env_step", 104.0, 0.5, {"steps": 4}),
             Span("generator0", "infer_batch", 99.0, 0.1, {"n": 4})]
    ws = window_start(spans, tracks, earliest=108.0, latest=400.0)
    assert ws["start"] == 113.0 and ws["all_slots_stepped"] and ws["slots_stepped"] == 4
    assert ws["slots_not_stepped"] == []
    # every slot stepped before the warm-up ended: the window starts at the end of the warm-up
    assert window_start(spans, tracks, earliest=120.0, latest=400.0)["start"] == 120.0


def test_window_start_says_when_a_slot_never_stepped():
    tracks = slot_tracks(1, 3)
    spans = [Span("env0/slot0", "env_step", 101.0, 0.5, {"steps": 4}),
             Span("env0/slot1", "reset", 100.0, 500.0),  # never stepped
             Span("env0/slot2", "env_step", 450.0, 0.5, {"steps": 4})]  # stepped, but after the cap
    ws = window_start(spans, tracks, earliest=108.0, latest=400.0)
    assert ws["start"] == 400.0 and not ws["all_slots_stepped"]
    assert ws["slots_stepped"] == 1 and ws["slots_not_stepped"] == ["env0/slot1", "env0/slot2"]
    assert window_start([], tracks, 108.0, 108.0)["start"] == 108.0  # no cap beyond the warm-up


class _FakeEnvWorker:
    """Its slots' first chunk steps end at the given times (after t0); timeline() as EnvWorker's."""

    def __init__(self, w, first_after, t0):
        self.w, self.first, self.t0, self.traced = w, first_after, t0, False

    def set_trace(self, enabled):
        self.traced = enabled

    def timeline(self, since=0.0):
        now = time.time()
        return [Span(f"env{self.w}/slot{i}", "env_step", self.t0 + d - 0.01, 0.01, {"steps": 1})
                for i, d in enumerate(self.first) if d is not None and self.t0 + d <= now and self.t0 + d > since]


def _watch_session(first_after, t0):
    cfg = load_config([f"rollout.num_env_workers={len(first_after)}", f"rollout.slots_per_worker={len(first_after[0])}",
                       "faults.step_timeout_s=5"])
    workers = [LocalActor(_FakeEnvWorker(w, f, t0)) for w, f in enumerate(first_after)]
    return types.SimpleNamespace(cfg=cfg, backend=LocalBackend(), env_workers=workers)


def _until(cond, timeout=5.0):
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline:
        time.sleep(0.02)
    assert cond()


def test_slot_watch_moves_the_deadline_to_give_the_window_its_full_length():
    t0 = time.time()
    session, loop = _watch_session([[0.05, 0.1], [0.1, 0.6]], t0), types.SimpleNamespace(deadline=0.0)
    watch = runner.SlotWatch(session, loop, t0, warmup=0.2, seconds=1.0, cap=30.0, poll_s=0.05)
    assert loop.deadline == pytest.approx(t0 + 30.0 + 1.0)  # until every slot has stepped
    _until(lambda: watch.cpu is not None)
    watch.close()
    assert loop.deadline == pytest.approx(t0 + 0.6 + 1.0)  # the last slot's first step + seconds
    assert watch.firsts["env1/slot1"].end == pytest.approx(t0 + 0.6)
    assert not session.env_workers[0]._obj.traced  # run_mode turned the first ones on itself


def test_slot_watch_turns_tracing_on_in_replaced_workers():
    t0 = time.time()
    session, loop = _watch_session([[0.05]], t0), types.SimpleNamespace(deadline=0.0)
    watch = runner.SlotWatch(session, loop, t0, warmup=0.0, seconds=1.0, cap=30.0, poll_s=0.05)
    _until(lambda: watch.cpu is not None)  # still watching for replacements after the window began
    new = _FakeEnvWorker(0, [0.05], t0)
    session.env_workers[0] = LocalActor(new)  # as the supervisor replaces a worker
    _until(lambda: new.traced)
    watch.close()


def test_slot_watch_gives_up_at_the_cap():
    t0 = time.time()
    session, loop = _watch_session([[0.05, None]], t0), types.SimpleNamespace(deadline=0.0)
    watch = runner.SlotWatch(session, loop, t0, warmup=0.1, seconds=1.0, cap=0.4, poll_s=0.05)
    _until(lambda: watch.cpu is not None)
    watch.close()
    assert not watch.thread.is_alive()
    assert loop.deadline == pytest.approx(t0 + 0.4 + 1.0)
    ws = window_start(watch.firsts.values(), watch.tracks, watch.earliest, watch.latest)
    assert not ws["all_slots_stepped"] and ws["slots_not_stepped"] == ["env0/slot1"]


def test_table_warns_when_not_every_slot_stepped():
    res = {"workload": "libero", "command": "rlvla3 bench", "date": "d", "seconds": 15, "warmup_s": 8,
           "machine": {"platform": "p", "cpus": 16, "gpu": "H200", "torch": "t"}, "bounds": dict(BOUNDS),
           "modes": {"sync": dict(_metrics(300.0, 15), ratio_to_sync=1.0, pipeline_efficiency=0.3,
                                  window_start_delay_s=4.2),
                     "full": dict(_metrics(0.0, 15), ratio_to_sync=0.0, pipeline_efficiency=0.0,
                                  all_slots_stepped=False, window_start_delay_s=292.0, slots=12, slots_stepped=9)}}
    md = to_markdown(res)
    assert "**warning — full**: only 9 of 12 env slots had stepped" in md
    assert "- sync: window started 4.2 s after the warm-up, once every env slot had stepped" in md
    assert "partial results" not in md


def test_table_says_when_a_window_held_no_whole_version():
    res = {"workload": "libero", "command": "rlvla3 bench", "date": "d", "seconds": 45, "warmup_s": 8,
           "machine": {"platform": "p", "cpus": 16, "gpu": "H100", "torch": "t"}, "bounds": dict(BOUNDS),
           "modes": {"sync": dict(_metrics(100.0, 45), ratio_to_sync=1.0, pipeline_efficiency=0.3,
                                  trained_samples_per_s_whole_versions=None),
                     "full": dict(_metrics(200.0, 45), ratio_to_sync=2.0, pipeline_efficiency=0.6,
                                  trained_samples_per_s_whole_versions=48.0)}}
    md = to_markdown(res)
    assert "- sync: fewer than two weight swaps of generator 0 in the window" in md
    assert "- full: fewer than two" not in md


def test_table_warns_when_the_trainer_began_inside_the_window():
    res = {"workload": "libero", "command": "rlvla3 bench", "date": "d", "seconds": 130, "warmup_s": 10,
           "machine": {"platform": "p", "cpus": 16, "gpu": "H100", "torch": "t"}, "bounds": dict(BOUNDS),
           "modes": {"full": dict(_metrics(300.0, 130), ratio_to_sync=None, pipeline_efficiency=0.8,
                                  trainer_start_in_window_s=10.7),
                     "full@b": dict(_metrics(300.0, 130), ratio_to_sync=None, pipeline_efficiency=0.8,
                                    trainer_start_in_window_s=1.5)}}  # under 2% of the window: not worth a word
    md = to_markdown(res)
    assert "**warning — full**: the trainer's first micro-batch came 10.7 s into the window" in md
    assert "warning — full@b" not in md


def test_keep_spans_writes_each_window_and_it_re_measures_to_the_same_rates(tmp_path, monkeypatch):
    from rlvla3.bench.measure import window_metrics
    from rlvla3.bench.span_file import load_spans

    spans = [Span("env0/slot0", "env_step", 0.1 * i, 0.05, {"steps": 4}) for i in range(20)]
    spans += [Span("generator0", "infer_batch", 0.1 * i + 0.05, 0.02, {"n": 1, "big": [1, 2]}) for i in range(20)]

    def run_mode(cfg, policy_dir, seconds, warmup, out_dir):
        return window_metrics(spans, 0.0, 2.0), list(spans), (0.0, 2.0)

    monkeypatch.setattr(runner, "run_mode", run_mode)
    monkeypatch.setattr(runner, "stage_bounds", lambda *a: dict(BOUNDS))
    runner.run_bench("tabletop", ["sync", "full"], 2.0, str(tmp_path), [], warmup=0.0, policy="unused",
                     say=lambda *a: None, keep_spans=True)
    for mode in ("sync", "full"):
        back = load_spans(str(tmp_path / "modes" / mode / "spans.jsonl.gz"))
        assert back == spans  # every field, args included
        again = window_metrics(back, 0.0, 2.0)
        assert again["env_steps_per_s"] == json.load(open(tmp_path / "bench.json"))["modes"][mode]["env_steps_per_s"]
    runner.run_bench("tabletop", ["sync"], 2.0, str(tmp_path / "off"), [], warmup=0.0, policy="unused",
                     say=lambda *a: None)
    assert not list((tmp_path / "off").rglob("spans.jsonl.gz"))  # off by default


def test_span_file_writes_numpy_args_as_plain_json(tmp_path):
    import numpy as np

    from rlvla3.bench.span_file import load_spans, save_spans

    path = str(tmp_path / "s.jsonl.gz")
    assert save_spans(path, [Span("g", "infer_batch", 1.0, 0.5, {"n": np.int64(3), "v": np.float32(0.5),
                                                                   "ids": np.arange(2)})]) == 1
    (back,) = load_spans(path)
    assert back.args == {"n": 3, "v": 0.5, "ids": [0, 1]} and back.start == 1.0 and back.dur == 0.5


def test_straggler_slots_get_slower_simulators_in_their_workers():
    """`--straggler-fraction 0.25 --straggler-slowdown 5`: the session builds slot 0 of each worker
    (2 of the 8 slots of 2 workers x 4) on a latency model 5x slower, the rest as configured."""
    from rlvla3.bench.workloads import workload_overrides
    from rlvla3.runtime.config import load_config
    from rlvla3.runtime.session import start_session

    cfg = load_config(workload_overrides("tabletop-emulated", "sync", [
        "run.backend=local", "bench.straggler_fraction=0.25", "bench.straggler_slowdown=5",
        "rollout.num_env_workers=2", "rollout.slots_per_worker=4"]))
    base = cfg.env.tabletop.latency.slow_factor
    s = start_session(cfg, with_trainer=False)
    try:
        factors = [[e.config.latency.slow_factor / base for e in w._obj.envs] for w in s.env_workers]
    finally:
        s.shutdown()
    assert factors == [[5.0, 1.0, 1.0, 1.0]] * 2
