"""Ctrl-C / SIGTERM: the run writes a checkpoint and exits within 60 s, and
`rlvla3 train --resume RUN_DIR` continues from it (real subprocesses)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

STOP_BUDGET_S = 60


def start_train(run_dir_parent, name, *extra):
    cmd = [sys.executable, "-m", "rlvla3.cli.main", "train", "preset=tiny-test", f"run.output_dir={run_dir_parent}",
           f"run.name={name}", "run.total_env_steps=10000000", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(path, proc, timeout_s=240):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited early (rc={proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"{path} never appeared")


def stop_and_wait(proc, sig):
    t0 = time.time()
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=STOP_BUDGET_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"no exit within {STOP_BUDGET_S} s of {sig.name}")
    return time.time() - t0, out


def checkpoint_of(run_dir):
    state = os.path.join(run_dir, "checkpoints", "latest", "trainer_state.pt")
    return state


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_checkpoint_and_exits(tmp_path, sig):
    proc = start_train(tmp_path, "s", "run.mode=sync", "run.backend=local")
    run_dir = os.path.join(tmp_path, "s")
    wait_for(checkpoint_of(run_dir), proc)
    took, out = stop_and_wait(proc, sig)
    assert proc.returncode == 0, out[-3000:]
    assert took < STOP_BUDGET_S
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["stopped_by"] == sig.name
    assert "--resume" in out
    assert os.path.isfile(checkpoint_of(run_dir))


def test_sigterm_then_resume_full_mode(tmp_path):
    proc = start_train(tmp_path, "f", "run.mode=full")
    run_dir = os.path.join(tmp_path, "f")
    wait_for(checkpoint_of(run_dir), proc)
    time.sleep(1)  # a few more steps
    took, out = stop_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 0, out[-3000:]
    assert took < STOP_BUDGET_S
    first = json.load(open(os.path.join(run_dir, "summary.json")))
    assert first["stopped_by"] == first["ended_by"] == "SIGTERM" and first["train_steps"] >= 1
    acc = first["async"]
    assert acc["samples_produced"] == (acc["samples_trained"] + acc["samples_dropped_stale"]
                                       + acc["samples_left_in_queue"] + acc["samples_unstepped_at_stop"])
    before = torch.load(checkpoint_of(run_dir), weights_only=True)  # written at the stop
    assert before["version"] == first["policy_version"] and before["extra"]["env_steps"] == first["env_steps"]
    rows_before = len(open(os.path.join(run_dir, "metrics.jsonl")).readlines())
    # continue: a budget a little past where it stopped, so the resumed run ends on its own
    path = os.path.join(run_dir, "config.yaml")
    target = first["env_steps"] + 150
    text = open(path).read()
    assert "total_env_steps: 10000000" in text
    open(path, "w").write(text.replace("total_env_steps: 10000000", f"total_env_steps: {target}"))
    res = subprocess.run([sys.executable, "-m", "rlvla3.cli.main", "train", "--resume", run_dir],
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resumed from" in res.stdout + res.stderr
    second = json.load(open(os.path.join(run_dir, "summary.json")))
    assert second["stopped_by"] is None and second["ended_by"] == "run.total_env_steps"  # its own budget
    assert second["env_steps"] >= target and second["train_steps"] > first["train_steps"]
    assert second["policy_version"] > first["policy_version"]
    # it went on from the checkpoint, not from scratch: counters, version and Adam's step counts
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f.readlines()[rows_before:]]
    r0 = next(r for r in rows if "policy/version" in r)
    assert r0["step"] > first["train_steps"] and r0["env_steps"] > first["env_steps"]
    assert r0["policy/version"] >= first["policy_version"]
    after = torch.load(checkpoint_of(run_dir), weights_only=True)
    assert after["updates"] - before["updates"] == second["train_steps"] - first["train_steps"] > 0
    for k, st in after["optimizer"]["state"].items():
        assert int(st["step"]) == int(before["optimizer"]["state"][k]["step"]) + after["updates"] - before["updates"]
