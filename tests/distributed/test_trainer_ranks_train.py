"""`rlvla3 train` with trainer.num_ranks=2 (a ddp TrainerGroup on Ray, gloo): the schedules
drive it unchanged, it trains, and no sample is trained twice."""

import json
import os

import numpy as np
import pytest

from rlvla3.runtime.config import load_config
from rlvla3.runtime.train_loop import train
from rlvla3.runtime.trainer_group import TrainerGroup


@pytest.mark.parametrize("mode", ["sync", "full"])
def test_two_trainer_ranks_train_end_to_end(tmp_path, mode, monkeypatch):
    groups = []
    init = TrainerGroup.__init__
    monkeypatch.setattr(TrainerGroup, "__init__", lambda self, *a, **k: (groups.append(self), init(self, *a, **k))[1])
    cfg = load_config(["preset=tiny-test", f"run.mode={mode}", f"run.output_dir={tmp_path}", f"run.name={mode}",
                       "run.total_env_steps=300", "trainer.num_ranks=2"])
    summary = train(cfg)
    assert len(groups) == 1 and len(groups[0].ranks) == 2  # the session built the group
    run_dir = summary["run_dir"]
    assert summary["train_steps"] >= 1 and summary["samples_trained"] > 0
    with open(os.path.join(run_dir, "checkpoints/latest/policy/config.json")) as f:
        assert json.load(f)["version"] == summary["policy_version"] >= 1  # rank 0 wrote the checkpoint
    ids = np.load(os.path.join(run_dir, "trained_sample_ids.npy"))
    assert len(ids) == summary["samples_trained"]
    assert len(np.unique(ids)) == len(ids), "a sample was handed to the trainer twice"
    if mode == "full":
        acc = summary["async"]
        assert acc["samples_trained"] == summary["samples_trained"]
        assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                           + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])
