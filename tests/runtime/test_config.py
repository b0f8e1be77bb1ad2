import pytest

from rlvla3.runtime.config import ConfigError, load_config


def test_quickstart_preset_loads_and_validates():
    cfg = load_config([])
    assert cfg.algo.name in ("ppo", "grpo")
    assert cfg.policy.tiny.image_size == cfg.env.tabletop.image_size


def test_overrides_apply_with_types():
    cfg = load_config(["algo.lr=0.003", "rollout.slots_per_worker=4", "env.tabletop.families=[reach]"])
    assert cfg.algo.lr == pytest.approx(0.003)
    assert cfg.rollout.slots_per_worker == 4
    assert cfg.env.tabletop.families == ["reach"]


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="algo.lrr"):
        load_config(["algo.lrr=1"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="rollout.slots_per_worker"):
        load_config(["rollout.slots_per_worker=many"])


def test_impossible_combinations_are_named():
    with pytest.raises(ConfigError, match="rollout.group_size"):
        load_config(["algo.name=grpo", "rollout.group_size=3"])  # 16 slots not divisible by 3
    with pytest.raises(ConfigError, match="algo.micro_batch"):
        load_config(["algo.micro_batch=512", "algo.global_batch=128"])
    with pytest.raises(ConfigError, match="rollout.segment_chunks"):
        load_config(["algo.name=grpo", "rollout.segment_chunks=4"])  # a group's advantages need whole episodes
    with pytest.raises(ConfigError, match="rollout.segment_chunks"):
        load_config(["rollout.segment_chunks=-1"])
    with pytest.raises(ConfigError, match="policy.tiny.image_size"):
        load_config(["policy.tiny.image_size=32"])
    with pytest.raises(ConfigError, match="run.mode"):
        load_config(["run.mode=fast"])
    with pytest.raises(ConfigError, match="process.heap_keep_mb"):
        load_config(["process.heap_keep_mb=-1"])
    with pytest.raises(ConfigError, match="env.tabletop.families"):
        load_config(["env.tabletop.families=[fly]"])


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="quickstart"):
        load_config(["preset=nope"])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(["algo.lr"])


def test_libero_config_is_checked_against_the_policy():
    from rlvla3.runtime.config import ConfigError, load_config

    ok = ["env.type=libero", "env.libero.image_size=64", "policy.tiny.image_size=64", "policy.tiny.proprio_dim=8",
          "policy.tiny.action_dim=7", "sft.enabled=false"]
    cfg = load_config(ok)
    assert cfg.env.libero.episode_steps() == 220  # libero_spatial's usual limit
    with pytest.raises(ConfigError, match="policy.tiny.proprio_dim=8"):
        load_config([o for o in ok if "proprio" not in o])
    with pytest.raises(ConfigError, match="sft.enabled=false"):
        load_config([o for o in ok if "sft" not in o])
    with pytest.raises(ConfigError, match="env.libero.suite"):
        load_config(ok + ["env.libero.suite=libero_99"])
    with pytest.raises(ConfigError, match="bench.straggler_fraction needs the tabletop"):
        load_config(ok + ["bench.straggler_fraction=0.2"])


def test_eval_repeats_need_sampled_actions():
    from rlvla3.runtime.config import ConfigError, load_config

    assert load_config(["eval.repeats=4", "eval.deterministic=false"], preset="tiny-test").eval.repeats == 4
    with pytest.raises(ConfigError, match="eval.repeats"):
        load_config(["eval.repeats=4", "eval.deterministic=true"], preset="tiny-test")
    with pytest.raises(ConfigError, match="eval.repeats"):
        load_config(["eval.repeats=0", "eval.deterministic=false"], preset="tiny-test")
