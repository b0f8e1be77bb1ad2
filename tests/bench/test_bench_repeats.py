"""`rlvla3 bench --repeats N`: modes run in turn, each reports its median repeat and the
ratios to sync paired by repeat (the runs themselves are stubbed: this checks the books)."""

import pytest

from rlvla3.bench import runner
from rlvla3.bench.report import to_markdown

SPEEDS = {"sync": [500.0, 400.0, 450.0], "full": [600.0, 300.0, 540.0]}


def test_repeats_alternate_modes_and_report_the_median_repeat(tmp_path, monkeypatch):
    calls = []

    def fake_run_mode(cfg, policy_dir, seconds, warmup, out_dir):
        mode = cfg.run.mode
        rate = SPEEDS[mode][sum(1 for c in calls if c == mode)]
        calls.append(mode)
        return ({"env_steps_per_s": rate, "env_steps": rate * seconds, "window_s": seconds, "env_steps_per_decision": 4.0},
                [], (0.0, seconds))

    monkeypatch.setattr(runner, "run_mode", fake_run_mode)
    monkeypatch.setattr(runner, "stage_bounds", lambda *a: {"min_env_steps_per_s": 1000.0,
                                                           "min_env_steps_per_s_streaming": 800.0})
    monkeypatch.setattr("rlvla3.bench.report.write_outputs", lambda *a: None)
    res = runner.run_bench("tabletop", ["sync", "full"], 2.0, str(tmp_path), [], warmup=0.0, policy="unused",
                           say=lambda *a: None, repeats=3)
    assert calls == ["sync", "full"] * 3  # in turn, not all of one mode first
    sync, full = res["modes"]["sync"], res["modes"]["full"]
    assert (sync["env_steps_per_s"], sync["repeat"]) == (450.0, 3)  # median of 500 / 400 / 450
    assert (full["env_steps_per_s"], full["repeat"]) == (540.0, 3)
    assert full["repeats_env_steps_per_s"] == SPEEDS["full"]
    assert full["paired_ratios_to_sync"] == pytest.approx([1.2, 0.75, 1.2])
    assert full["ratio_to_sync"] == pytest.approx(540.0 / 450.0)
    assert full["pipeline_efficiency"] == pytest.approx(540.0 / 800.0)


def test_repeats_in_the_table():
    res = {"workload": "tabletop", "command": "rlvla3 bench", "date": "d", "seconds": 2, "warmup_s": 0,
           "machine": {"platform": "p", "cpus": 2, "gpu": None, "torch": "t"},
           "bounds": {k: 1.0 for k in ("simulators_env_steps_per_s", "generators_env_steps_per_s",
                                       "trainer_env_steps_per_s", "trainer_streaming_env_steps_per_s",
                                       "trainer_samples_per_s", "trainer_streaming_samples_per_s",
                                       "min_env_steps_per_s", "min_env_steps_per_s_streaming", "steps_per_decision")}
           | {"generator_samples_per_s_by_batch": {}, "bottleneck": "trainer", "bottleneck_streaming": "trainer"},
           "modes": {}}
    for name, rates, ratios in (("sync", [500.0, 400.0], [1.0, 1.0]), ("full", [600.0, 300.0], [1.2, 0.75])):
        res["modes"][name] = {"env_steps_per_s": rates[0], "ratio_to_sync": 1.0, "pipeline_efficiency": 1.0,
                              "policy_calls_per_s": 1.0, "trained_samples_per_s": 1.0, "utilization": {},
                              "generator": {"mean_batch": 1.0}, "repeats_env_steps_per_s": rates,
                              "paired_ratios_to_sync": ratios}
    md = to_markdown(res)
    assert "- full: 600 / 300 env steps/s ; paired ratio to sync 1.20 / 0.75 (median 0.75)" in md
    assert "- sync: 500 / 400 env steps/s\n" in md


def test_bounds_each_repeat_pairs_every_repeat_with_its_own_bounds(tmp_path, monkeypatch):
    calls, bound_calls = [], []
    speeds = {"sync": [500.0, 400.0, 450.0], "full": [600.0, 300.0, 540.0], "full +stragglers": [540.0, 330.0, 540.0]}

    def fake_run_mode(cfg, policy_dir, seconds, warmup, out_dir):
        name = cfg.run.mode + (" +stragglers" if cfg.bench.straggler_fraction > 0 else "")
        rate = speeds.get(name, [100.0] * 3)[sum(1 for c in calls if c == name)]
        calls.append(name)
        return ({"env_steps_per_s": rate, "env_steps": rate * seconds, "window_s": seconds,
                 "env_steps_per_decision": 4.0}, [], (0.0, seconds))

    def fake_bounds(cfg, policy_dir, seconds, spd, lengths):
        bound_calls.append(list(calls))
        trainer = [1000.0, 500.0, 600.0][len(bound_calls) - 1]  # the machine drifts between repeats
        return {"min_env_steps_per_s": trainer, "min_env_steps_per_s_streaming": trainer}

    monkeypatch.setattr(runner, "run_mode", fake_run_mode)
    monkeypatch.setattr(runner, "stage_bounds", fake_bounds)
    monkeypatch.setattr("rlvla3.bench.report.write_outputs", lambda *a: None)
    res = runner.run_bench("tabletop", ["sync", "full"], 2.0, str(tmp_path), [], warmup=0.0, policy="unused",
                           straggler_fraction=0.2, say=lambda *a: None, repeats=3, bounds_each_repeat=True)
    assert [len(c) for c in bound_calls] == [4, 8, 12]  # after each repeat's four runs
    full, strag = res["modes"]["full"], res["modes"]["full +stragglers"]
    assert full["paired_efficiencies"] == pytest.approx([0.6, 0.6, 0.9])
    assert full["pipeline_efficiency"] == pytest.approx(0.6)  # the median over repeats
    assert res["bounds"]["min_env_steps_per_s"] == 600.0  # the bounds of full's median repeat (3)
    assert res["bounds_repeat"] == 3
    assert len(res["bounds_by_repeat"]) == 3
    assert strag["paired_changes_vs_no_stragglers"] == pytest.approx([-0.1, 0.1, 0.0])
    assert strag["throughput_change_vs_no_stragglers"] == pytest.approx(540.0 / 540.0 - 1)  # median vs median
