"""`rlvla3 bench` end to end on Ray, very short: every field is there and every ratio is
computed from the measured numbers in the same file."""

import json
import os

import pytest

from rlvla3.cli.main import main
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config

SMALL = ["rollout.slots_per_worker=4", "algo.global_batch=32", "algo.micro_batch=16", "generator.max_batch=8"]


def test_bench_writes_every_output_with_consistent_ratios(tmp_path):
    cfg = load_config(["preset=quickstart"])
    policy_dir = str(tmp_path / "policy")
    build_policy(cfg.policy).save_pretrained(policy_dir)
    out = str(tmp_path / "bench")
    rc = main(["bench", "--workload", "tabletop-emulated", "--modes", "sync,full,full@b2", "--seconds", "3",
               "--warmup", "2", "--bound-seconds", "1", "--out", out, "--policy",
               policy_dir, "--mode-override", "sync:rollout.slots_per_worker=2 generator.max_batch=4",
               "--mode-override", "full@b2:generator.max_batch=2", *SMALL])
    assert rc == 0
    for name in ("bench.json", "table.md", "timeline.json", "timeline.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    res = json.load(open(os.path.join(out, "bench.json")))
    # (the straggler reruns are left to test_bench_repeats and test_bench_partial: three more sessions here)
    assert set(res["modes"]) == {"sync", "full", "full@b2"}
    assert res["mode_overrides"] == {"sync": ["rollout.slots_per_worker=2", "generator.max_batch=4"],
                                     "full@b2": ["generator.max_batch=2"]}
    assert res["command"].startswith("rlvla3 bench --workload tabletop-emulated --modes sync,full")  # as typed, not pytest's argv
    labelled = res["modes"]["full@b2"]  # full again, its batches at most 2
    assert labelled["round_trip"] and 0 < labelled["generator"]["mean_batch"] <= 2
    assert os.path.isdir(os.path.join(out, "modes", "full-b2"))
    assert res["modes"]["sync"]["slots"] * 2 == res["modes"]["full"]["slots"]  # sync ran in its own layout
    assert "`sync` only: `rollout.slots_per_worker=2 generator.max_batch=4`" in open(os.path.join(out, "table.md")).read()
    b = res["bounds"]
    assert b["min_env_steps_per_s"] == min(b["simulators_env_steps_per_s"], b["generators_env_steps_per_s"],
                                           b["trainer_env_steps_per_s"]) > 0
    assert b["min_env_steps_per_s_streaming"] == min(b["simulators_env_steps_per_s"], b["generators_env_steps_per_s"],
                                                     b["trainer_streaming_env_steps_per_s"]) > 0
    sync = res["modes"]["sync"]["env_steps_per_s"]
    for name, m in res["modes"].items():
        assert m["env_steps"] > 0, f"{name} stepped no env in its window"
        assert m["env_steps_per_s"] == pytest.approx(m["env_steps"] / m["window_s"])
        assert m["ratio_to_sync"] == pytest.approx(m["env_steps_per_s"] / sync)
        bound = b["min_env_steps_per_s_streaming" if name.startswith("full") else "min_env_steps_per_s"]
        assert m["pipeline_efficiency"] == pytest.approx(m["env_steps_per_s"] / bound)
        for key in ("policy_calls_per_s", "trained_samples_per_s", "trained_samples_per_s_whole_versions", "generator", "staleness_hist", "utilization"):
            assert key in m, (name, key)
        assert any(k.startswith("env") for k in m["utilization"]) and "trainer" in m["utilization"]
        e = m["env_step_ms"]  # the stepping thread's CPU inside its chunk steps, at most their wall time
        assert 0 < e["cpu_mean"] <= e["mean"] * 1.05 + 0.1, (name, e)
    full = res["modes"]["full"]
    assert b["simulators_time_limit_env_steps_per_s"] > 0
    if full["episode_steps_mean"] is not None:  # the simulators' bound ran full's episode lengths
        assert b["simulator_episode_steps_mean"] == pytest.approx(full["episode_steps_mean"])
    assert "batcher" in full and full["batcher"][0]["samples"] > 0
    assert full["trainer_start_in_window_s"] is not None and full["trainer_start_in_window_s"] >= 0.0
    cpu = full["cpu"]  # where the cores went in the window, by Ray's process names
    assert cpu["machine_busy_cores"] > 0 and {"driver", "Trainer", "EnvWorker", "AsyncGenerator"} <= set(cpu["by_role"])
    assert "CPU cores used in the window" in open(os.path.join(out, "table.md")).read()
    assert "Chunk steps, mean ms: wall / the stepping thread's CPU" in open(os.path.join(out, "table.md")).read()
    tt = full["trainer_time"]  # training, publishing and idle: the whole window
    assert tt["micro_batch"] > 0 and sum(tt.values()) == pytest.approx(1.0, abs=1e-3)
    assert "The trainer's window: micro-batches" in open(os.path.join(out, "table.md")).read()
    lag = full["version_lag_s"]  # every published version reaches generator 0, a little later
    assert 0 < lag["p50"] <= lag["p95"] < 30 and "Version lag" in open(os.path.join(out, "table.md")).read()
    prof = json.load(open(os.path.join(out, "latency_profile.json")))
    assert prof["step_ms"] and prof["reset_ms"] and min(prof["step_ms"]) > 0
    trace = json.load(open(os.path.join(out, "timeline.json")))
    names = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"env_step", "infer_batch", "micro_batch"} <= names


def test_bench_refuses_unknown_workload_and_mode(capsys):
    assert main(["bench", "--workload", "nope"]) == 2
    assert "unknown workload" in capsys.readouterr().err
    assert main(["bench", "--modes", "sync,warp"]) == 2
    assert "unknown or repeated modes ['warp']" in capsys.readouterr().err
    for modes, bad in (("sync,full,full", "['full']"), ("full@", "['full@']"), ("warp@x", "['warp@x']"),
                       ("full@a b", "['full@a b']")):
        assert main(["bench", "--modes", modes]) == 2
        assert f"unknown or repeated modes {bad}" in capsys.readouterr().err


def test_a_labelled_mode_is_its_schedule_run_again_with_its_own_overrides():
    from rlvla3.bench.workloads import bad_modes, mode_of, parse_mode_overrides, workload_overrides

    modes = ["sync-best", "full", "full@wait30"]
    assert bad_modes(modes, ("sync-best", "full")) == [] and mode_of("full@wait30") == "full"
    assert "run.mode=full" in workload_overrides("tabletop-emulated", "full@wait30", [])
    assert parse_mode_overrides(["full@wait30:generator.max_wait_ms=30"], modes) == {
        "full@wait30": ["generator.max_wait_ms=30"]}
    cfg = load_config(workload_overrides("tabletop-emulated", "full@wait30", ["generator.max_wait_ms=30"]))
    assert cfg.run.mode == "full" and cfg.generator.max_wait_ms == 30


@pytest.mark.parametrize("item, says", [
    ("full rollout.slots_per_worker=2", "expected 'MODE:KEY=VALUE"),  # no colon
    ("async-train:rollout.slots_per_worker=2", "benchmarked modes"),  # not among --modes
    ("sync:slots", "each override is KEY=VALUE"),
    ("sync:", "each override is KEY=VALUE"),
    ("sync:rollout.slots_per_worker=0", "slots_per_worker"),  # the mode's own config is checked before anything runs
])
def test_bench_refuses_bad_mode_overrides(capsys, item, says):
    assert main(["bench", "--modes", "sync,full", "--mode-override", item]) == 2
    assert says in capsys.readouterr().err
