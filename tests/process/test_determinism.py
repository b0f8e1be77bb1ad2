"""`run.deterministic`: the SFT stage and the trainer switch torch to deterministic kernels (and
cuBLAS to its reproducible workspace); off by default; a user's own cuBLAS setting is kept."""
import os

import pytest
import torch

from rlvla3.process import determinism
from rlvla3.runtime import sft_command
from rlvla3.runtime.config import load_config
from rlvla3.workers.trainer import Trainer


@pytest.fixture(autouse=True)
def _restore_torch(monkeypatch):
    monkeypatch.delenv(determinism.CUBLAS_KEY, raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(False)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = before[2]


def test_deterministic_kernels_warn_rather_than_stop_and_keep_a_users_cublas_setting(monkeypatch):
    torch.backends.cudnn.benchmark = True
    determinism.use_deterministic_kernels()
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark is False
    assert os.environ[determinism.CUBLAS_KEY] == ":4096:8"
    monkeypatch.setenv(determinism.CUBLAS_KEY, ":16:8")
    determinism.use_deterministic_kernels()
    assert os.environ[determinism.CUBLAS_KEY] == ":16:8"


@pytest.mark.parametrize("flag", [False, True])
def test_sft_stage_follows_run_deterministic(tmp_path, flag):
    cfg = load_config(["preset=tiny-test", "run.progress=false", "sft.epochs=1", f"run.deterministic={str(flag).lower()}"])
    sft_command.run_sft(cfg, str(tmp_path / "sft"))
    assert torch.are_deterministic_algorithms_enabled() is flag


@pytest.mark.parametrize("flag", [False, True])
def test_trainer_follows_run_deterministic(flag):
    cfg = load_config(["preset=tiny-test", f"run.deterministic={str(flag).lower()}"])
    Trainer(cfg, seed=0)
    assert torch.are_deterministic_algorithms_enabled() is flag


def test_two_deterministic_sft_runs_give_the_same_weights(tmp_path):
    cfg = load_config(["preset=tiny-test", "run.progress=false", "sft.epochs=2", "run.deterministic=true"])
    a = sft_command.run_sft(cfg, str(tmp_path / "a"))["losses"]
    b = sft_command.run_sft(cfg, str(tmp_path / "b"))["losses"]
    assert a == b
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
