"""tools/policy_drift.py: a policy has no drift from itself, and a moved one has some."""

import importlib.util
import os

import torch

from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config

spec = importlib.util.spec_from_file_location(
    "policy_drift", os.path.join(os.path.dirname(__file__), "..", "..", "tools", "policy_drift.py"))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_drift_is_zero_from_itself_and_positive_after_a_change(tmp_path):
    settings = ["preset=tiny-test"]
    torch.manual_seed(0)
    p = build_policy(load_config(settings).policy)
    p.save_pretrained(str(tmp_path / "a"))
    same = tool.drift(settings, str(tmp_path / "a"), str(tmp_path / "a"), inits=1, max_decisions=3)
    assert len(same) == 3 and all(abs(kl) < 1e-6 and ea == eb for kl, ea, eb in same.values())
    with torch.no_grad():
        for q in p.parameters():
            q.add_(0.3 * torch.randn_like(q))
    p.save_pretrained(str(tmp_path / "b"))
    moved = tool.drift(settings, str(tmp_path / "a"), str(tmp_path / "b"), inits=1, max_decisions=3)
    assert all(kl > 0.01 for kl, _, _ in moved.values())
