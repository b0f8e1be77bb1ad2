"""tools/eval_task_table.py: each task's success at every evaluation, the SFT row first."""

import importlib.util
import json
import os

spec = importlib.util.spec_from_file_location(
    "eval_task_table", os.path.join(os.path.dirname(__file__), "..", "..", "tools", "eval_task_table.py"))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_table_has_the_sft_row_then_one_row_per_evaluation(tmp_path):
    (tmp_path / "eval_sft.json").write_text(json.dumps({"success_rate": 0.5, "per_task": {
        "open the drawer": {"episodes": 10, "success_rate": 1.0}, "close the drawer": {"episodes": 10, "success_rate": 0.0}}}))
    rows = [{"step": 0, "env_steps": 0, "eval/success_rate": 0.5},  # the SFT evaluation's own row: not twice
            {"step": 4, "env_steps": 1000, "train/loss": 0.1},
            {"step": 8, "env_steps": 2000, "eval/success_rate": 0.55, "eval_task/open_the_drawer": 0.3,
             "eval_task/close_the_drawer": 0.8}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lines = tool.table(str(tmp_path)).splitlines()
    assert lines[2] == "| step | env steps | all | open the drawer | close the drawer |"
    assert lines[4:] == ["| SFT | 0 | 50.0 | 100 | 0 |", "| 8 | 2,000 | 55.0 | 30 | 80 |"]
    (tmp_path / "eval_sft.json").unlink()
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[1]) + "\n")
    assert "no per-task evaluation" in tool.table(str(tmp_path))
