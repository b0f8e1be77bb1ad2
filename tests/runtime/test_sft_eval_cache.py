"""eval.reuse_sft: the SFT evaluation is made once per checkpoint, seed and settings, then read."""

import json
import types

import pytest

from rlvla3.runtime import sft_eval_cache
from rlvla3.runtime.config import load_config
from rlvla3.runtime.evaluation import EvalReport


class FakeRun:
    def __init__(self, run_dir, rate=0.4):
        self.run_dir, self.rate, self.evaluated, self.recorded = str(run_dir), rate, 0, []

    def evaluate(self, stem):
        self.evaluated += 1
        report = EvalReport(self.rate, 20, {"reach the red block": {"episodes": 20, "success_rate": self.rate}})
        report.save(self.run_dir, stem)
        return report

    def record_eval(self, stem, rate, wall_s, duration_s, per_task):
        self.recorded.append((stem, rate, wall_s, duration_s, per_task))


@pytest.fixture
def ckpt(tmp_path):
    d = tmp_path / "sft"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights-1")
    (d / "config.json").write_text("{}")
    return d


def _cfg(ckpt, *extra):
    return load_config(["preset=tiny-test", f"sft.checkpoint={ckpt}", "eval.reuse_sft=true", *extra])


def test_the_second_run_reads_what_the_first_stored(ckpt, tmp_path):
    log = types.SimpleNamespace(lines=[])
    log.print = log.lines.append
    first = FakeRun(tmp_path / "a", rate=0.4)
    assert sft_eval_cache.evaluate_sft(_cfg(ckpt), first, str(ckpt), log).success_rate == 0.4
    assert first.evaluated == 1
    second = FakeRun(tmp_path / "b", rate=0.9)  # would evaluate to 0.9: it must not evaluate at all
    report = sft_eval_cache.evaluate_sft(_cfg(ckpt, "run.mode=full", "algo.lr=1e-3", "eval.every_steps=5"),
                                         second, str(ckpt), log)
    assert second.evaluated == 0 and report.success_rate == 0.4
    assert second.recorded == [("eval_sft", 0.4, 0.0, 0.0, {"reach the red block": {"episodes": 20,
                                                                                     "success_rate": 0.4}})]
    assert json.load(open(tmp_path / "b" / "eval_sft.json"))["success_rate"] == 0.4
    assert (tmp_path / "b" / "eval_sft.md").read_text().count("40.0%") == 2
    assert "reused" in log.lines[-1]


def test_the_key_changes_with_the_seed_the_weights_and_the_env(ckpt):
    key = sft_eval_cache.cache_key(_cfg(ckpt), str(ckpt))
    assert key == sft_eval_cache.cache_key(_cfg(ckpt, "run.mode=full", "run.total_env_steps=7"), str(ckpt))
    assert key != sft_eval_cache.cache_key(_cfg(ckpt, "run.seed=1"), str(ckpt))
    assert key != sft_eval_cache.cache_key(_cfg(ckpt, "eval.repeats=2", "eval.deterministic=false"), str(ckpt))
    assert key != sft_eval_cache.cache_key(_cfg(ckpt, "env.tabletop.num_eval_init_states=5"), str(ckpt))
    (ckpt / "model.safetensors").write_bytes(b"weights-2")
    assert key != sft_eval_cache.cache_key(_cfg(ckpt), str(ckpt))


def test_off_by_default_and_a_folder_it_cannot_write_only_costs_the_reuse(ckpt, tmp_path):
    run = FakeRun(tmp_path / "a")
    cfg = load_config(["preset=tiny-test", f"sft.checkpoint={ckpt}"])
    sft_eval_cache.evaluate_sft(cfg, run, str(ckpt), None)
    assert run.evaluated == 1 and not (ckpt / sft_eval_cache.CACHE_DIR).exists()
    (ckpt / sft_eval_cache.CACHE_DIR).write_text("a file where the folder would go")
    log = types.SimpleNamespace(lines=[])
    log.print = log.lines.append
    again = FakeRun(tmp_path / "b")
    assert sft_eval_cache.evaluate_sft(_cfg(ckpt), again, str(ckpt), log).success_rate == 0.4
    assert again.evaluated == 1 and "not stored" in log.lines[-1]


def test_reuse_needs_a_checkpoint_to_share():
    from rlvla3.core.config_checks import ConfigError

    with pytest.raises(ConfigError, match="eval.reuse_sft"):
        load_config(["preset=tiny-test", "eval.reuse_sft=true"])


def test_a_damaged_cache_file_means_evaluating_again(ckpt, tmp_path):
    cfg = _cfg(ckpt)
    key = sft_eval_cache.cache_key(cfg, str(ckpt))
    (ckpt / sft_eval_cache.CACHE_DIR).mkdir()
    for text in ('{"success_rate": 0.4', '{"unknown_field": 1}'):
        (ckpt / sft_eval_cache.CACHE_DIR / (key + ".json")).write_text(text)
        run = FakeRun(tmp_path / "a")
        assert sft_eval_cache.evaluate_sft(cfg, run, str(ckpt), types.SimpleNamespace(print=print)).success_rate == 0.4
        assert run.evaluated == 1
