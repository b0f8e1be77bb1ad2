"""Every schedule reports its stage times (`time/*`, docs/metrics.md): the keys the asynchronous
schedules report where they make sense, in every iteration record, and each key is documented."""

import json
import os

import pytest

from rlvla3.runtime.config import load_config
from rlvla3.runtime.train_loop import train

SHARED = {"time/iteration_s", "time/experience_s", "time/trainer_idle_s"}
OWN = {"lockstep": {"time/rollout_s", "time/rollout_infer_s", "time/rollout_env_s", "time/train_wait_s"},
       "async": {"time/poll_s"}}
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "metrics.md")


def stage_times(run_dir: str) -> list:
    """The `time/*` keys of every iteration record of a run (evaluation rows left out)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in row.items() if k.startswith("time/")} for row in rows if "rollout/episodes" in row]


def check_stage_times(run_dir: str, kind: str) -> None:
    records = stage_times(run_dir)
    assert records
    for times in records:
        assert set(times) == SHARED | OWN[kind]
        assert all(v >= 0 for v in times.values()), times
        assert times["time/trainer_idle_s"] <= times["time/iteration_s"] + 1e-6
    with open(DOC) as f:
        doc = f.read()
    assert all(f"`{k}`" in doc for k in SHARED | OWN[kind])


@pytest.mark.parametrize("mode", ["sync", "sync-best", "async-train"])
def test_lockstep_schedules_report_the_shared_stage_times(tmp_path, mode):
    cfg = load_config(["preset=tiny-test", f"run.mode={mode}", "run.backend=local", f"run.output_dir={tmp_path}",
                       f"run.name={mode}", "run.total_env_steps=300"])
    summary = train(cfg)
    check_stage_times(summary["run_dir"], "lockstep")
    if mode == "sync":  # one blocking update per iteration: the trainer idles for everything else
        for times in stage_times(summary["run_dir"]):
            assert times["time/trainer_idle_s"] == pytest.approx(times["time/iteration_s"]
                                                                 - times["time/train_wait_s"], abs=1e-6)
