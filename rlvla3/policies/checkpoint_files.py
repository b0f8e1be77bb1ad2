"""The files of a policy checkpoint (config.json + model.safetensors), shared by every family:
atomic writes, and reads that fail naming the file."""

from __future__ import annotations

import json
import os
from typing import Callable, Tuple

from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def checkpoint_paths(path: str) -> Tuple[str, str]:
    """(config path, weights path), both checked to exist."""
    cfg_path, w_path = os.path.join(path, CONFIG_NAME), os.path.join(path, WEIGHTS_NAME)
    for p in (cfg_path, w_path):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"policy checkpoint is missing {p}")
    return cfg_path, w_path


def write_weights(state: dict, path: str) -> None:
    """Tensors to DIR/model.safetensors, via a temporary file so a crash leaves no half file."""
    os.makedirs(path, exist_ok=True)
    tmp = os.path.join(path, WEIGHTS_NAME + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp)
    os.replace(tmp, os.path.join(path, WEIGHTS_NAME))


def read_config(cfg_path: str, parse: Callable[[dict], object]) -> Tuple[dict, object]:
    """(the saved dict, `parse(dict)`: the family's validated config); a truncated file or an
    unknown or bad field fails naming the file."""
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
        return raw, parse(dict(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"cannot read policy config {cfg_path}: {e}") from e


def load_weights(load_state_dict: Callable[[dict], object], w_path: str, cfg_path: str) -> None:
    """The tensors of `w_path` into a policy built from `cfg_path`; missing, unexpected or
    mis-shaped tensors fail naming both files."""
    state = read_weights(w_path)
    try:
        load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"policy weights {w_path} do not match {cfg_path}: {e}") from e


def read_weights(w_path: str) -> dict:
    try:
        return load_file(w_path)
    except Exception as e:  # safetensors raises several types for truncated files
        raise ValueError(f"cannot read policy weights {w_path}: {e}") from e
