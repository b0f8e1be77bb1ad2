"""`--resume` continues from the last checkpoint: counters and policy version carry over."""

import json
import os

from rlvla3.cli.main import main
from rlvla3.runtime.config import load_config
from rlvla3.runtime.train_loop import train


def test_resume_continues_counters_and_version(tmp_path):
    cfg = load_config(["preset=tiny-test", f"run.output_dir={tmp_path}", "run.name=r", "run.total_env_steps=300"])
    first = train(cfg)
    run_dir = first["run_dir"]
    # extend the run: same config, a larger step budget
    path = os.path.join(run_dir, "config.yaml")
    text = open(path).read().replace("total_env_steps: 300", "total_env_steps: 700")
    open(path, "w").write(text)
    assert main(["train", "--resume", run_dir]) == 0
    with open(os.path.join(run_dir, "summary.json")) as f:
        second = json.load(f)
    assert second["env_steps"] >= 700
    assert second["train_steps"] > first["train_steps"]
    with open(os.path.join(run_dir, "checkpoints/latest/policy/config.json")) as f:
        assert json.load(f)["version"] == second["policy_version"] > first["policy_version"]


def test_resume_refuses_a_non_run_directory(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
