"""A truncated or corrupt checkpoint fails at load with an error naming the file."""

import json
import os

import pytest
import torch

from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAPolicy
from rlvla3.runtime.config import load_config
from rlvla3.workers.trainer import Trainer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = load_config(["preset=tiny-test"])
    trainer = Trainer(cfg, seed=0)
    path = str(tmp_path_factory.mktemp("ckpt") / "latest")
    trainer.save(path, {"env_steps": 5})
    return cfg, path


def _copy(src: str, dst) -> str:
    import shutil

    out = str(dst / "latest")
    shutil.copytree(src, out)
    return out


def _truncate(path: str, keep: float = 0.5) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def test_intact_checkpoint_loads(ckpt):
    cfg, path = ckpt
    assert Trainer(cfg, seed=1).load(path)["env_steps"] == 5


def test_truncated_policy_weights_name_the_file(ckpt, tmp_path):
    cfg, src = ckpt
    path = _copy(src, tmp_path)
    weights = os.path.join(path, "policy", "model.safetensors")
    _truncate(weights)
    with pytest.raises(ValueError, match="model.safetensors"):
        Trainer(cfg, seed=1).load(path)


def test_garbage_policy_weights_name_the_file(tmp_path):
    TinyVLAPolicy(TinyVLAConfig(image_size=32, channels=[8, 8], hidden=32)).save_pretrained(str(tmp_path))
    open(tmp_path / "model.safetensors", "wb").write(b"\x00" * 64)
    with pytest.raises(ValueError, match="model.safetensors"):
        TinyVLAPolicy.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "unknown_field", "bad_value"])
def test_corrupt_policy_config_names_the_file(tmp_path, damage):
    TinyVLAPolicy(TinyVLAConfig(image_size=32, channels=[8, 8], hidden=32)).save_pretrained(str(tmp_path))
    cfg_path = tmp_path / "config.json"
    if damage == "truncated":
        _truncate(str(cfg_path))
    else:
        raw = json.load(open(cfg_path))
        raw.update({"no_such_field": 1} if damage == "unknown_field" else {"n_bins": 0})
        json.dump(raw, open(cfg_path, "w"))
    with pytest.raises(ValueError, match="config.json"):
        TinyVLAPolicy.from_pretrained(str(tmp_path))


def test_weights_of_another_shape_name_the_file(tmp_path):
    TinyVLAPolicy(TinyVLAConfig(image_size=32, channels=[8, 8], hidden=32)).save_pretrained(str(tmp_path))
    raw = json.load(open(tmp_path / "config.json"))
    raw["hidden"] = 48
    json.dump(raw, open(tmp_path / "config.json", "w"))
    with pytest.raises(ValueError, match="model.safetensors"):
        TinyVLAPolicy.from_pretrained(str(tmp_path))


def test_truncated_trainer_state_names_the_file(ckpt, tmp_path):
    cfg, src = ckpt
    path = _copy(src, tmp_path)
    _truncate(os.path.join(path, "trainer_state.pt"))
    with pytest.raises(ValueError, match="trainer_state.pt"):
        Trainer(cfg, seed=1).load(path)


def test_trainer_state_with_wrong_content_names_the_file(ckpt, tmp_path):
    cfg, src = ckpt
    path = _copy(src, tmp_path)
    torch.save({"version": 3}, os.path.join(path, "trainer_state.pt"))
    with pytest.raises(ValueError, match="trainer_state.pt"):
        Trainer(cfg, seed=1).load(path)


def test_empty_run_config_is_refused(tmp_path, capsys):
    from rlvla3.cli.main import main

    open(tmp_path / "config.yaml", "w").close()
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.yaml is empty" in capsys.readouterr().err


def test_truncated_run_config_names_the_file(tmp_path, capsys):
    from rlvla3.cli.main import main
    from rlvla3.runtime.config import to_yaml

    text = to_yaml(load_config(["preset=tiny-test"]))
    open(tmp_path / "config.yaml", "w").write(text[: len(text) // 3] + "\n  bogus: [\n")
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
