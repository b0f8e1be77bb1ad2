"""Both real-VLA families train end to end on the tabletop env with PPO and GRPO (tiny shapes, CPU)."""

import os

import numpy as np
import pytest

pytest.importorskip("transformers")

from rlvla3.runtime.config import load_config  # noqa: E402
from rlvla3.runtime.train_loop import train  # noqa: E402

CASES = [  # (policy, algo, mode, backend): the async pipeline on Ray once, the rest in-process
    ("oft-tiny", "ppo", "full", "ray"),
    ("oft-tiny", "grpo", "sync", "local"),
    ("pi0-tiny", "ppo", "async-train", "local"),
    ("pi0-tiny", "grpo", "full", "ray"),
]


@pytest.mark.parametrize("policy,algo,mode,backend", CASES)
def test_vla_family_trains(tmp_path, policy, algo, mode, backend):
    cfg = load_config(["preset=tiny-test", f"policy={policy}", f"algo.name={algo}", f"run.mode={mode}",
                       f"run.backend={backend}", f"run.output_dir={tmp_path}", "run.name=r",
                       "run.total_env_steps=600", "algo.filter_degenerate_groups=false"])
    summary = train(cfg)
    assert summary["train_steps"] >= 1 and summary["samples_trained"] > 0
    ids = np.load(os.path.join(summary["run_dir"], "trained_sample_ids.npy"))
    assert len(np.unique(ids)) == len(ids) == summary["samples_trained"]
    with open(os.path.join(summary["run_dir"], "checkpoints/latest/policy/config.json")) as f:
        assert f'"policy_type": "{policy.split("-")[0]}"' in f.read()
    assert np.isfinite(summary["final_success_rate"])
