"""`rlvla3 bench --workload metaworld` (issue 23): MT10 as preset=metaworld-mt10 sees it, and
the quick SFT on the MetaWorld experts before the modes run (LIBERO, without an expert, still
starts from a random policy). The runs themselves are stubbed: this checks the wiring."""

import json

import pytest

from rlvla3.bench import runner
from rlvla3.bench.workloads import bench_sft, workload_overrides
from rlvla3.policies.text_tokenizer import UNK, WordTokenizer
from rlvla3.runtime.config import load_config

BOUNDS = {"min_env_steps_per_s": 1000.0, "min_env_steps_per_s_streaming": 800.0}


def test_workload_is_mt10_on_the_rendered_camera():
    cfg = load_config(workload_overrides("metaworld", "full", []))
    mw, tiny = cfg.env.metaworld, cfg.policy.tiny
    assert cfg.env.type == "metaworld" and mw.benchmark == "MT10" and mw.camera == "corner2"
    assert mw.image_size == tiny.image_size == 128 and (tiny.proprio_dim, tiny.action_dim, tiny.chunk_size) == (4, 4, 8)
    preset = load_config(["preset=metaworld-mt10"]).policy.tiny
    assert tiny.vocab == preset.vocab  # one vocabulary for both
    assert (tiny.channels, tiny.hidden) == (preset.channels, preset.hidden) != ([16, 32, 32], 256)  # the preset's width
    from rlvla3.envs.metaworld_config import INSTRUCTIONS

    mt10 = ["reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close", "button-press-topdown",
            "peg-insert-side", "window-open", "window-close"]
    ids = WordTokenizer(tiny.vocab, tiny.max_instruction_tokens).encode([INSTRUCTIONS[f"{t}-v3"] for t in mt10])
    assert not (ids == UNK).any()
    mt1 = load_config(workload_overrides("metaworld", "sync", ["env.metaworld.benchmark=MT1"]))
    assert mt1.env.metaworld.benchmark == "MT1" and mt1.run.mode == "sync"


def _stub_runs(monkeypatch):
    seen = {"modes": [], "policies": set(), "sft": []}

    def run_mode(cfg, policy_dir, seconds, warmup, out_dir):
        seen["modes"].append((cfg.run.mode, cfg.env.type))
        seen["policies"].add(policy_dir)
        return ({"env_steps_per_s": 100.0, "env_steps": 100.0 * seconds, "window_s": seconds,
                 "env_steps_per_decision": 8.0}, [], (0.0, seconds))

    def run_sft(cfg, out_dir, logger=None):
        seen["sft"].append((cfg.env.type, cfg.sft.demos_per_task, out_dir))
        from rlvla3.policies import build_policy

        build_policy(cfg.policy).save_pretrained(out_dir)
        return {}

    monkeypatch.setattr(runner, "run_mode", run_mode)
    monkeypatch.setattr(runner, "stage_bounds", lambda *a: dict(BOUNDS))
    monkeypatch.setattr("rlvla3.bench.report.write_outputs", lambda *a: None)
    monkeypatch.setattr("rlvla3.runtime.sft_command.run_sft", run_sft)
    return seen


def test_metaworld_bench_clones_the_experts_first_and_caches_it(tmp_path, monkeypatch):
    seen = _stub_runs(monkeypatch)
    res = runner.run_bench("metaworld", ["sync", "full"], 2.0, str(tmp_path), ["env.metaworld.benchmark=MT1"],
                           warmup=0.0, say=lambda *a: None)
    sft_dir = str(tmp_path / "sft_policy")
    demos = int(bench_sft("metaworld")[0].split("=")[1])
    assert seen["sft"] == [("metaworld", demos, sft_dir)]
    assert seen["modes"] == [("sync", "metaworld"), ("full", "metaworld")] and seen["policies"] == {sft_dir}
    assert res["workload"] == "metaworld" and res["modes"]["full"]["ratio_to_sync"] == pytest.approx(1.0)
    runner.run_bench("metaworld", ["sync"], 2.0, str(tmp_path), [], warmup=0.0, say=lambda *a: None)
    assert len(seen["sft"]) == 1  # cached in OUT/sft_policy


def test_libero_without_an_expert_starts_from_a_random_policy(tmp_path, monkeypatch):
    seen = _stub_runs(monkeypatch)
    said = []
    runner.run_bench("libero", ["sync"], 2.0, str(tmp_path), [], warmup=0.0, say=said.append)
    assert seen["sft"] == [] and any("no SFT for env.type=libero" in m for m in said)
    cfg = json.load(open(tmp_path / "sft_policy" / "config.json"))
    assert cfg  # a saved (random) policy
