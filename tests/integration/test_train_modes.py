"""End to end on Ray: every schedule trains for a short while on the tiny preset, and no
sample is lost or trained twice."""

import json
import os

import numpy as np
import pytest

from rlvla3.runtime.config import load_config
from rlvla3.runtime.train_loop import train

MODES = ["sync", "sync-best", "async-train", "async-rollout", "full"]


def tiny_cfg(tmp_path, mode, algo="ppo", extra=()):
    return load_config(["preset=tiny-test", f"run.mode={mode}", f"algo.name={algo}", f"run.output_dir={tmp_path}",
                        f"run.name={mode}-{algo}", "run.total_env_steps=600", *extra])


@pytest.mark.parametrize("mode", MODES)
def test_mode_trains_without_losing_samples(tmp_path, mode):
    cfg = tiny_cfg(tmp_path, mode)
    summary = train(cfg)
    run_dir = summary["run_dir"]
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "curve.png", "eval_sft.json", "eval_final.json",
                 "checkpoints/latest/policy/model.safetensors", "checkpoints/latest/trainer_state.pt"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert summary["env_steps"] >= 600
    assert summary["train_steps"] >= 1, "the trainer never stepped"
    assert summary["samples_trained"] > 0
    with open(os.path.join(run_dir, "checkpoints/latest/policy/config.json")) as f:
        assert json.load(f)["version"] == summary["policy_version"]  # one version per published update
    assert 1 <= summary["policy_version"] <= summary["train_steps"]
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:  # stage times (tests/runtime/test_stage_times.py)
        records = [r for r in map(json.loads, f) if "rollout/episodes" in r]
    own = {"time/poll_s"} if mode in ("async-rollout", "full") else \
        {"time/rollout_s", "time/rollout_infer_s", "time/rollout_env_s", "time/train_wait_s"}
    for r in records:
        assert {k for k in r if k.startswith("time/")} == own | {"time/iteration_s", "time/experience_s",
                                                                  "time/trainer_idle_s"}
        assert 0 <= r["time/trainer_idle_s"] <= r["time/iteration_s"] + 1e-6
    ids = np.load(os.path.join(run_dir, "trained_sample_ids.npy"))
    assert len(ids) == summary["samples_trained"]
    assert len(np.unique(ids)) == len(ids), "a sample was handed to the trainer twice"
    if mode in ("async-rollout", "full"):
        acc = summary["async"]
        assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                           + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])
        assert acc["samples_trained"] == summary["samples_trained"]
        assert sum(acc["staleness_hist"].values()) == summary["samples_trained"] + acc["samples_unstepped_at_stop"]
        assert max(int(k) for k in acc["staleness_hist"]) <= cfg.algo.staleness
        # backpressure: admission bounds what waits for the trainer
        assert 0 < acc["queue_high_water_samples"] <= acc["queue_bound_samples"]


@pytest.mark.parametrize("transport", ["socket", "ray"])
def test_full_mode_with_the_generator_in_the_trainer_process(tmp_path, transport):
    """generator.in_trainer_process: one actor hosts both roles; the env workers reach its
    generator through either request transport and every sample is still accounted for."""
    from rlvla3.runtime.session import start_session

    cfg = tiny_cfg(tmp_path, "full", extra=["generator.in_trainer_process=true",
                                           f"generator.request_transport={transport}"])
    if transport == "socket":  # (once) the session really starts one actor for both roles
        s = start_session(cfg, with_train_envs=False)
        try:
            assert s.trainer._actor_id == s.generators[0]._actor_id  # one actor, so one process
        finally:
            s.shutdown()
    summary = train(cfg)
    assert summary["train_steps"] >= 1 and summary["env_steps"] >= 600
    assert summary["policy_version"] >= 1
    acc = summary["async"]
    assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                       + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])
    assert acc["samples_trained"] == summary["samples_trained"] > 0
    assert summary["weights"]["generator_versions"][0] >= 1  # publications reached it within the process


def test_grpo_full_mode_runs(tmp_path):
    summary = train(tiny_cfg(tmp_path, "full", "grpo", ["algo.filter_degenerate_groups=false"]))
    assert summary["train_steps"] >= 1
    assert summary["experience"]["groups_kept"] >= 1


def test_full_mode_with_several_envs_per_slot(tmp_path):
    cfg = tiny_cfg(tmp_path, "full", extra=["rollout.envs_per_slot=2"])
    summary = train(cfg)
    assert summary["train_steps"] >= 1 and summary["env_steps"] >= 600
    acc = summary["async"]
    assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                       + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])
    assert all(w["episodes_dropped"] == 0 for w in acc["workers"])


def test_full_mode_with_segments_accounts_for_every_sample_and_episode(tmp_path):
    """rollout.segment_chunks=2: running episodes reach the trainer two decisions at a time
    (each part's sample ids restart at 0), every sample is still accounted for, and each
    episode is counted once however many parts it came in."""
    from rlvla3.core.experience import SAMPLE_ID_STRIDE

    cfg = tiny_cfg(tmp_path, "full", extra=["rollout.segment_chunks=2"])
    summary = train(cfg)
    acc, exp = summary["async"], summary["experience"]
    assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                       + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])
    ids = np.load(os.path.join(summary["run_dir"], "trained_sample_ids.npy"))
    assert len(np.unique(ids)) == len(ids) == summary["samples_trained"] > 0
    assert (ids % SAMPLE_ID_STRIDE).max() == 1  # no part longer than two decisions
    assert exp["samples"] > 2 * exp["episodes"] > 0  # so the episodes did come in parts
    assert summary["episodes"] == exp["episodes"]
