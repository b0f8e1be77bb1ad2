"""`--resume` continues from the last checkpoint: counters, policy version and optimizer state
carry over (a run that ignored the checkpoint and started afresh fails every check below)."""

import json
import os
import shutil

import torch

from rlvla3.cli.main import main
from rlvla3.runtime.config import load_config
from rlvla3.runtime.train_loop import train
from rlvla3.workers.trainer import Trainer


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _state(path):
    return torch.load(os.path.join(path, "trainer_state.pt"), weights_only=True)


def test_resume_continues_counters_version_and_optimizer(tmp_path, monkeypatch):
    # run.backend=local: the trainer lives in this process, so the test can look at its
    # optimizer right after the load (the Ray path is checked by tests/chaos/test_graceful_stop.py)
    cfg = load_config(["preset=tiny-test", f"run.output_dir={tmp_path}", "run.name=r", "run.total_env_steps=300",
                       "run.backend=local"])
    first = train(cfg)
    run_dir = first["run_dir"]
    ckpt = os.path.join(run_dir, "checkpoints", "latest")
    saved = str(tmp_path / "ckpt1")
    shutil.copytree(ckpt, saved)  # the checkpoint the resume must start from
    before = _state(saved)
    assert before["version"] == first["policy_version"] >= 2 and before["updates"] >= 2
    rows_before = len(_rows(run_dir))

    loaded = []
    real_load = Trainer.load

    def load_and_record(self, path):
        extra = real_load(self, path)
        loaded.append({"version": self.version, "updates": self.updates,
                       "optimizer": {k: {n: t.clone() for n, t in s.items()} for k, s in self.opt.state_dict()["state"].items()}})
        return extra

    monkeypatch.setattr(Trainer, "load", load_and_record)

    # extend the run: same config, a larger step budget
    path = os.path.join(run_dir, "config.yaml")
    text = open(path).read()
    assert "total_env_steps: 300" in text
    open(path, "w").write(text.replace("total_env_steps: 300", "total_env_steps: 700"))
    assert main(["train", "--resume", run_dir]) == 0
    with open(os.path.join(run_dir, "summary.json")) as f:
        second = json.load(f)

    # the trainer took the checkpoint's version, step count and Adam moments
    assert len(loaded) == 1, "the resumed run never loaded its checkpoint"
    got = loaded[0]
    assert got["version"] == before["version"] and got["updates"] == before["updates"]
    want = before["optimizer"]["state"]
    assert set(got["optimizer"]) == set(want) and want
    for k, s in want.items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(got["optimizer"][k][name], s[name]), f"param {k}: {name} differs from the checkpoint"

    # counters continue from the checkpoint: the first row logged after the resume is past it
    extra = before["extra"]
    resumed_rows = [r for r in _rows(run_dir)[rows_before:] if "policy/version" in r]
    assert resumed_rows, "the resumed run logged no training iteration"
    r0 = resumed_rows[0]
    assert r0["step"] > extra["train_steps"] and r0["env_steps"] > extra["env_steps"]
    assert r0["policy/version"] >= before["version"]  # the version its rollout used: the restored one
    assert second["env_steps"] >= 700 and second["train_steps"] > first["train_steps"]
    assert second["episodes"] > extra["episodes"]

    # and the optimizer kept counting: Adam's step = the checkpoint's + the resumed segment's steps
    after = _state(ckpt)
    steps_after_resume = second["train_steps"] - extra["train_steps"]
    assert after["updates"] == before["updates"] + steps_after_resume
    for k, s in after["optimizer"]["state"].items():
        assert int(s["step"]) == int(want[k]["step"]) + steps_after_resume
    with open(os.path.join(ckpt, "policy", "config.json")) as f:
        assert json.load(f)["version"] == second["policy_version"] == after["version"] > first["policy_version"]


def test_resume_refuses_a_non_run_directory(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
