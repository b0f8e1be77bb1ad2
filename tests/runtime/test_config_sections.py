"""Each config section validates itself; dims come from the env in a named step; old keys still load."""

from dataclasses import asdict, fields

import pytest

from rlvla3.bench.config import BenchConfig
from rlvla3.envs.faults import FaultsConfig
from rlvla3.runtime import deprecated_keys
from rlvla3.runtime.config import Config, ConfigError, from_yaml_file, load_config, to_yaml, validate
from rlvla3.runtime.env_policy_config import EnvConfig, PolicyConfig, resolve_policy_dims
from rlvla3.runtime.process_config import ProcessConfig, TransportConfig
from rlvla3.runtime.rollout_config import GeneratorConfig, RolloutConfig
from rlvla3.runtime.run_config import EvalConfig, RunConfig, SFTConfig
from rlvla3.runtime.training_config import AlgoConfig, PlacementConfig, TrainerConfig


def test_every_section_of_the_defaults_is_valid():
    cfg = Config()
    for section in fields(cfg):
        getattr(cfg, section.name).validate(section.name)


@pytest.mark.parametrize("section, bad, key", [
    (RunConfig(), dict(mode="fast"), "run.mode"),
    (RunConfig(), dict(backend="local", mode="full"), "run.mode='full'"),
    (ProcessConfig(), dict(heap_keep_mb=-1), "process.heap_keep_mb must be >= 0"),
    (ProcessConfig(), dict(nice=20), "process.nice must be in 0..19"),
    (RolloutConfig(), dict(envs_per_slot=0), "rollout.envs_per_slot must be >= 1"),
    (TransportConfig(), dict(poll_ms=-1.0), "transport.poll_ms must be >= 0"),
    (TransportConfig(), dict(coalesce_ms=-1.0), "transport.coalesce_ms must be >= 0"),
    (RolloutConfig(), dict(temperature=0.0), "rollout.temperature must be > 0"),
    (GeneratorConfig(), dict(router="random"), "generator.router"),
    (GeneratorConfig(), dict(request_transport="pigeon"), "generator.request_transport"),
    (GeneratorConfig(), dict(max_wait_ms=-1.0), "generator.max_wait_ms must be >= 0"),
    (GeneratorConfig(), dict(max_wait_ms=float("inf")), "generator.max_wait_ms must be finite"),
    (AlgoConfig(), dict(micro_batch=512, global_batch=128), r"algo.micro_batch \(512\) must be <= algo.global_batch"),
    (AlgoConfig(), dict(clip_low=1.0), "algo.clip_low"),
    (AlgoConfig(), dict(staleness=-1), "algo.staleness must be >= 0"),
    (TrainerConfig(), dict(sharding="zero3"), "trainer.sharding"),
    (TrainerConfig(), dict(trim_heap_every=-1), "trainer.trim_heap_every must be >= 0"),
    (PlacementConfig(), dict(preset="anywhere"), "placement.preset"),
    (SFTConfig(), dict(batch_size=0), "sft.batch_size must be >= 1"),
    (SFTConfig(), dict(checkpoint="/no/such/dir"), "sft.checkpoint points to"),
    (EvalConfig(), dict(num_workers=0), "eval.num_workers must be >= 1"),
    (BenchConfig(), dict(straggler_fraction=1.5), r"bench.straggler_fraction must be in \[0, 1\]"),
    (BenchConfig(), dict(straggler_slowdown=0.0), "bench.straggler_slowdown must be > 0"),
    (EnvConfig(), dict(type="mujoco"), "env.type"),
    (PolicyConfig(), dict(type="gpt"), "policy.type"),
    (PolicyConfig(), dict(init_from="/no/such/dir"), "policy.init_from points to"),
])
def test_a_section_names_its_bad_key(section, bad, key):
    for name, value in bad.items():
        setattr(section, name, value)
    with pytest.raises(ConfigError, match=key):
        section.validate()


def test_sections_take_the_prefix_they_are_mounted_at():
    with pytest.raises(ConfigError, match="custom.nice"):
        ProcessConfig(nice=-1).validate("custom")
    with pytest.raises(ConfigError, match="custom.step_timeout_s"):
        FaultsConfig(step_timeout_s=0.0).validate("custom")


def test_validate_checks_every_section_including_nested_ones():
    cfg = load_config([])
    cfg.faults.env.kind = "explode"
    with pytest.raises(ConfigError, match="faults.env.kind"):
        validate(cfg)
    cfg = load_config(["policy=oft-tiny", "sft.enabled=false"])
    cfg.policy.oft.lora.enabled, cfg.policy.oft.lora.rank = True, 0
    with pytest.raises(ConfigError, match="policy.oft.lora needs rank >= 1"):
        validate(cfg)


def test_cross_section_rules_name_both_keys():
    with pytest.raises(ConfigError, match="process.nice .*run.backend=ray"):
        load_config(["run.backend=local", "process.nice=3"])
    with pytest.raises(ConfigError, match="trainer.sharding=fsdp supports policy.type=oft only"):
        load_config(["trainer.sharding=fsdp"])


def test_policy_dims_come_from_the_env_in_their_own_step():
    cfg = Config()
    cfg.policy.type, cfg.sft.enabled = "oft", False
    cfg.policy.oft.image_size = cfg.policy.oft.proprio_dim = cfg.policy.oft.action_dim = 0
    with pytest.raises(ConfigError):  # validation alone fills nothing in
        validate(cfg)
    assert cfg.policy.oft.proprio_dim == 0
    resolve_policy_dims(cfg)
    oft = cfg.policy.oft
    assert (oft.image_size, oft.proprio_dim, oft.action_dim) == (cfg.env.tabletop.image_size, 4, 3)
    validate(cfg)


def test_resolving_keeps_set_dims_and_leaves_the_tiny_policy_alone():
    cfg = Config()
    cfg.policy.tiny.proprio_dim = 0
    assert resolve_policy_dims(cfg).policy.tiny.proprio_dim == 0
    cfg.policy.type, cfg.env.type = "pi0", "libero"
    cfg.policy.pi0.image_size, cfg.policy.pi0.action_dim = 96, 0
    resolve_policy_dims(cfg)
    assert (cfg.policy.pi0.image_size, cfg.policy.pi0.action_dim) == (96, 7)
    cfg.env.type = "nowhere"  # unknown types are left for validate to report
    assert resolve_policy_dims(cfg) is cfg


@pytest.fixture
def fresh_deprecations(monkeypatch):
    monkeypatch.setattr(deprecated_keys, "_warned", set())


def test_old_straggler_override_still_works_and_says_the_new_key_once(fresh_deprecations, capsys):
    cfg = load_config(["rollout.straggler_fraction=0.25", "rollout.straggler_slowdown=3"])
    assert (cfg.bench.straggler_fraction, cfg.bench.straggler_slowdown) == (0.25, 3.0)
    load_config(["rollout.straggler_fraction=0.5"])
    err = capsys.readouterr().err
    assert err.count("rollout.straggler_fraction is deprecated") == 1
    assert "use bench.straggler_fraction" in err and "use bench.straggler_slowdown" in err


def test_old_straggler_key_in_a_preset_yaml_still_works(fresh_deprecations, tmp_path, capsys):
    preset = tmp_path / "old.yaml"
    preset.write_text("rollout:\n  num_env_workers: 1\n  straggler_fraction: 0.2\n")
    cfg = load_config([f"preset={preset}"])
    assert cfg.bench.straggler_fraction == 0.2 and cfg.rollout.num_env_workers == 1
    assert "use bench.straggler_fraction" in capsys.readouterr().err


def test_a_run_config_saved_with_the_old_keys_loads(fresh_deprecations, tmp_path):
    text = to_yaml(load_config(["bench.straggler_slowdown=4"]))
    old = text.replace("bench:\n  straggler_fraction: 0.0\n  straggler_slowdown: 4.0\n", "")
    old = old.replace("rollout:\n", "rollout:\n  straggler_fraction: 0.0\n  straggler_slowdown: 4.0\n")
    assert old != text and "bench:" not in old
    path = tmp_path / "config.yaml"
    path.write_text(old)
    assert from_yaml_file(str(path)).bench.straggler_slowdown == 4.0


def test_old_process_and_transport_keys_still_work(fresh_deprecations, tmp_path, capsys):
    old = ["rollout.nice=3", "rollout.coalesce_ms=2", "rollout.poll_ms=20", "run.heap_keep_mb=64"]
    cfg = load_config(old)
    assert (cfg.process.nice, cfg.process.heap_keep_mb) == (3, 64)
    assert (cfg.transport.coalesce_ms, cfg.transport.poll_ms) == (2.0, 20.0)
    err = capsys.readouterr().err
    for key, new in [("rollout.nice", "process.nice"), ("rollout.coalesce_ms", "transport.coalesce_ms"),
                     ("rollout.poll_ms", "transport.poll_ms"), ("run.heap_keep_mb", "process.heap_keep_mb")]:
        assert f"{key} is deprecated" in err and f"use {new}" in err
    preset = tmp_path / "old.yaml"  # a preset or a saved run config written before the move
    preset.write_text("run:\n  heap_keep_mb: 32\nrollout:\n  nice: 5\n  poll_ms: 10\n")
    cfg = load_config([f"preset={preset}"])
    assert (cfg.process.heap_keep_mb, cfg.process.nice, cfg.transport.poll_ms) == (32, 5, 10.0)


def test_old_lora_r_key_still_works(fresh_deprecations, capsys):
    assert load_config(["policy.oft.lora.r=8"]).policy.oft.lora.rank == 8
    assert "use policy.oft.lora.rank" in capsys.readouterr().err


def test_a_policy_checkpoint_config_with_lora_r_loads():
    from rlvla3.policies.oft.policy import OFTPolicy

    raw = asdict(OFTPolicy.config_class())
    raw["lora"] = {k if k != "rank" else "r": v for k, v in raw["lora"].items()}
    raw["lora"]["r"] = 4
    assert OFTPolicy.config_from_dict(raw).lora.rank == 4


def test_straggler_slots_are_shared_by_the_workers_and_spread_within_each():
    assert BenchConfig(straggler_fraction=0.25).straggler_slots(workers=2, slots=8) == [[0, 4], [0, 4]]
    assert BenchConfig(straggler_fraction=0.2).straggler_slots(workers=2, slots=8) == [[0, 4], [0]]  # 3 of 16
    assert BenchConfig().straggler_slots(workers=3, slots=4) == [[], [], []]
