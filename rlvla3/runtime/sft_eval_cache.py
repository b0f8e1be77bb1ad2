"""One held-out evaluation of an SFT checkpoint, shared by the runs that start from it.

Comparing schedules means several runs from one checkpoint with the same seeds (`sync` and
`full`, seeds 0-2), and each would evaluate the same policy on the same initial states first: on
the GPU machine that is 28 s of each MT10 run. With `eval.reuse_sft=true` the first run stores its
SFT evaluation in the checkpoint's folder (`sft_eval_cache/<key>.json`) and later runs whose key
matches read it instead. The key covers what the evaluation depends on: the checkpoint's files, the
env, policy, rollout, generator, placement and fault settings, the evaluation's own settings (not
how often it runs or its videos), the seed and the package version; not the schedule or the
algorithm, which act only after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from importlib import metadata
from typing import Optional

from rlvla3.runtime.evaluation import EvalReport

CACHE_DIR = "sft_eval_cache"
_SECTIONS = ("env", "policy", "rollout", "generator", "placement", "faults")
_EVAL_UNUSED = ("every_steps", "videos", "reuse_sft")  # when and what else the runs evaluate


def cache_key(cfg, checkpoint: str) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        if os.path.isfile(path):
            h.update(name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    ev = {k: v for k, v in asdict(cfg.eval).items() if k not in _EVAL_UNUSED}
    settings = {"sections": {s: asdict(getattr(cfg, s)) for s in _SECTIONS}, "eval": ev, "seed": cfg.run.seed,
                "deterministic": cfg.run.deterministic, "version": _version()}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def evaluate_sft(cfg, training, checkpoint: str, logger) -> EvalReport:
    """The SFT policy's evaluation (`training.evaluate("eval_sft")`), read from the checkpoint's
    cache when `eval.reuse_sft` is on and an earlier run with the same key stored it."""
    if not cfg.eval.reuse_sft:
        return training.evaluate("eval_sft")
    key = cache_key(cfg, checkpoint)
    report = _report(load(checkpoint, key))
    if report is not None:
        report.save(training.run_dir, "eval_sft")
        training.record_eval("eval_sft", report.success_rate, 0.0, 0.0, report.per_task)
        logger.print(f"SFT evaluation reused from {os.path.join(checkpoint, CACHE_DIR, key + '.json')} "
                     "(eval.reuse_sft)")
        return report
    report = training.evaluate("eval_sft")
    why = store(checkpoint, key, report.to_json())
    if why:
        logger.print(f"eval.reuse_sft: the SFT evaluation was not stored beside {checkpoint} ({why})")
    return report


def _report(cached: Optional[dict]) -> Optional[EvalReport]:
    try:  # a file edited or from another version: evaluate again rather than fail the run
        return EvalReport(**cached) if cached is not None else None
    except TypeError:
        return None


def _version() -> str:
    try:
        return metadata.version("rlvla3")
    except metadata.PackageNotFoundError:
        return "unknown"


def load(checkpoint: str, key: str) -> Optional[dict]:
    """The stored report (EvalReport.to_json()), or None."""
    path = os.path.join(checkpoint, CACHE_DIR, key + ".json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError:
            return None


def store(checkpoint: str, key: str, report: dict) -> Optional[str]:
    """Write the report beside the checkpoint; returns why not when the folder is read-only."""
    folder = os.path.join(checkpoint, CACHE_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, key + ".json.tmp")
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, os.path.join(folder, key + ".json"))  # whole or absent, never half-written
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None
