"""Benchmark workloads: a named set of config overrides on top of the quick-start preset.

- `tabletop`: the built-in env at its real CPU cost (cheap physics, 64x64 rendering).
- `tabletop-emulated`: the same env plus a latency model of a simulator that runs elsewhere
  (`sleep`, so this CPU stays free for the policy), LIBERO-like by default: a step costs
  15 ms on average with a long lognormal tail (sigma 0.6: p99 ~ 3.4x the median), a reset
  costs 300 ms (LIBERO with hard_reset=False), and episodes vary in length because the
  SFT policy succeeds at different times. Replay a recorded profile with
  `env.tabletop.latency.kind=replay env.tabletop.latency.profile=FILE.json`.
- `libero`: the real simulator (`pip install -e .[libero]`), libero_spatial with the policy
  sized for it (128² agentview, 8-D proprio, 7-D actions, chunks of 8; `policy=oft-small` etc.
  for a real VLA architecture). It needs a
  policy (`--policy DIR`, e.g. an RL checkpoint) or trains from a random one: LIBERO has no
  scripted expert.
- `metaworld`: MetaWorld MT10 (`pip install -e .[metaworld]`) as `preset=metaworld-mt10` sees
  it: the rendered corner2 camera at 128², 4-D proprio and actions, chunks of 8, episodes of
  at most 200 steps, the preset's tiny VLA (its width and MT10's words in the vocabulary); the quick SFT clones the
  `metaworld.policies` experts (fewer demos than the tabletop's: each costs ~0.3-0.5 s in the
  driver). `env.metaworld.benchmark=MT1` benchmarks one task (reach-v3) and starts faster.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Dict, Iterable, List

import yaml

BASE = [
    "preset=quickstart",
    "run.progress=false",
    "run.checkpoint_every=0",
    "eval.every_steps=0",
    "eval.num_workers=1",  # sessions build an eval worker; the bench never evaluates
    "run.total_env_steps=1000000000",  # benchmarks stop on time
]

WORKLOADS: Dict[str, List[str]] = {
    "tabletop": [],
    "tabletop-emulated": [
        "env.tabletop.latency.kind=lognormal",
        "env.tabletop.latency.step_ms=15",
        "env.tabletop.latency.reset_ms=300",
        "env.tabletop.latency.sigma=0.6",
        "env.tabletop.latency.mode=sleep",
    ],
    "libero": [
        "env.type=libero",
        "env.libero.suite=libero_spatial",
        "env.libero.image_size=128",
        "policy.tiny.image_size=128",
        "policy.tiny.proprio_dim=8",
        "policy.tiny.action_dim=7",
        "policy.tiny.chunk_size=8",
        "policy.oft.chunk_size=8",  # the VLA families take image and proprio/action dims from the env
        "policy.pi0.chunk_size=8",
        "sft.enabled=false",
    ],
}

def _mt10_policy() -> List[str]:
    """preset=metaworld-mt10's tiny VLA (vocabulary and width) as overrides: one source for the
    preset and the bench, so that the bench times the policy the preset trains."""
    from rlvla3.runtime.config import PRESET_DIR

    with open(os.path.join(PRESET_DIR, "metaworld-mt10.yaml")) as f:
        tiny = yaml.safe_load(f)["policy"]["tiny"]
    as_list = lambda xs: "[" + ",".join(str(x) for x in xs) + "]"  # noqa: E731
    return ["policy.tiny.vocab=[" + ",".join(f"'{w}'" for w in tiny["vocab"]) + "]",  # quoted: a bare on is true
            f"policy.tiny.channels={as_list(tiny['channels'])}", f"policy.tiny.hidden={tiny['hidden']}"]


WORKLOADS["metaworld"] = [
    "env.type=metaworld",
    "env.metaworld.benchmark=MT10",
    "env.metaworld.camera=corner2",
    "env.metaworld.image_size=128",
    "env.metaworld.max_steps=200",
    "policy.tiny.image_size=128",
    "policy.tiny.proprio_dim=4",
    "policy.tiny.action_dim=4",
    "policy.tiny.chunk_size=8",
    "policy.oft.chunk_size=8",
    "policy.pi0.chunk_size=8",
    *_mt10_policy(),
]
# The quick SFT of the bench (a warm start whose episodes vary in length), per workload.
BENCH_SFT = ["sft.demos_per_task=48", "sft.epochs=6"]
BENCH_SFT_BY_WORKLOAD: Dict[str, List[str]] = {"metaworld": ["sft.demos_per_task=10", "sft.epochs=6",
                                                             "sft.noise_std=0.3"]}


def bench_sft(name: str) -> List[str]:
    return BENCH_SFT_BY_WORKLOAD.get(name, BENCH_SFT)


def parse_mode_overrides(items: List[str], modes: List[str]) -> Dict[str, List[str]]:
    """`--mode-override 'MODE:KEY=VALUE [KEY=VALUE ...]'` (repeatable) -> {mode: overrides}: a
    mode run in its own layout, e.g. `sync-best` with two envs per process beside `full` with
    one. The overrides apply after the common ones, to that mode's runs only."""
    out: Dict[str, List[str]] = {}
    for item in items:
        mode, sep, rest = item.partition(":")
        mode = mode.strip()
        if not sep or mode not in modes:
            raise ValueError(f"--mode-override {item!r}: expected 'MODE:KEY=VALUE ...' with MODE one of the "
                             f"benchmarked modes {modes}")
        pairs = shlex.split(rest)
        bad = [p for p in pairs if "=" not in p or p.startswith("=")]
        if not pairs or bad:
            raise ValueError(f"--mode-override {item!r}: each override is KEY=VALUE (got {bad or 'none'})")
        out.setdefault(mode, []).extend(pairs)
    return out


def mode_of(entry: str) -> str:
    """A `--modes` entry's schedule: 'full@wait30' -> 'full'. A labelled entry is one more run of
    that schedule with its own `--mode-override`, measured beside the plain one in one call."""
    return entry.split("@", 1)[0]


def bad_modes(entries: List[str], known: Iterable[str]) -> List[str]:
    """The `--modes` entries that are not a known schedule, optionally `@label` (letters, digits,
    '_', '.', '-'), or that repeat an earlier entry."""
    bad, seen = [], set()
    for e in entries:
        mode, at, label = e.partition("@")
        if mode not in known or (at and not re.fullmatch(r"[A-Za-z0-9_.-]+", label)) or e in seen:
            bad.append(e)
        seen.add(e)
    return bad


def workload_overrides(name: str, mode: str, extra: List[str]) -> List[str]:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
    return BASE + WORKLOADS[name] + [f"run.mode={mode_of(mode)}"] + list(extra)
