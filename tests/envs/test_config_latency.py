"""Config validation and the latency model."""
import json
import time

import numpy as np
import pytest

from rlvla3.envs import LatencyConfig, LatencyModel, TabletopConfig, TabletopEnv, to_tabletop_config


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 4}, r"env\.image_size must be >= 16, got 4"),
    ({"families": ["reach", "stack"]}, r"env\.families .*'stack'.*valid: \['reach', 'push', 'pick_place'\]"),
    ({"families": []}, r"env\.families"),
    ({"families": ["push", "push"]}, r"env\.families has duplicates"),
    ({"max_steps": 0}, r"env\.max_steps"),
    ({"num_init_states": 0}, r"env\.num_init_states"),
    ({"num_eval_init_states": 0}, r"env\.num_eval_init_states"),
    ({"latency": LatencyConfig(kind="gaussian")}, r"env\.latency\.kind must be one of"),
    ({"latency": LatencyConfig(kind="constant", mode="yield")}, r"env\.latency\.mode"),
    ({"latency": LatencyConfig(kind="constant", step_ms=-1.0)}, r"env\.latency\.step_ms must be >= 0"),
    ({"latency": LatencyConfig(kind="lognormal", sigma=-0.5)}, r"env\.latency\.sigma"),
    ({"latency": LatencyConfig(slow_factor=0.0)}, r"env\.latency\.slow_factor"),
    ({"latency": LatencyConfig(kind="replay")}, r"env\.latency\.profile"),
    ({"latency": LatencyConfig(kind="replay", profile="/nonexistent/p.json")}, r"env\.latency\.profile.*not found"),
])
def test_bad_config_raises_naming_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TabletopEnv(TabletopConfig(**kwargs))


def test_config_from_mapping_and_omegaconf():
    cfg = to_tabletop_config({"image_size": 32, "families": ["pick_place"], "latency": {"kind": "constant"}})
    assert cfg.image_size == 32 and cfg.latency.kind == "constant"
    with pytest.raises(ValueError, match=r"env has unknown keys \['imgsize'\]"):
        to_tabletop_config({"imgsize": 32})
    omegaconf = pytest.importorskip("omegaconf")
    oc = omegaconf.OmegaConf.structured(TabletopConfig)
    oc.families = ["reach", "pick_place"]
    env = TabletopEnv(oc)
    assert env.num_tasks == 9 and isinstance(env.config.families, list)
    assert isinstance(omegaconf.OmegaConf.to_object(oc), TabletopConfig)


def test_bad_reset_options():
    env = TabletopEnv(TabletopConfig())
    for opts, match in [({"task_id": 99}, "task_id"), ({"init_id": 16, "split": "eval"}, "init_id"),
                        ({"split": "test"}, "split"), ({"seed": 1}, "unknown reset options")]:
        with pytest.raises(ValueError, match=match):
            env.reset(options=opts)


# ---------------------------------------------------------------- latency model
@pytest.mark.parametrize("mode", ["spin", "sleep"])
def test_constant_latency_takes_about_right_time(mode):
    m = LatencyModel(LatencyConfig(kind="constant", step_ms=2.0, reset_ms=5.0, mode=mode), seed=0)
    assert m.step_cost_s() == pytest.approx(0.002) and m.reset_cost_s() == pytest.approx(0.005)
    t = time.perf_counter()
    for _ in range(10):
        m.spend(m.step_cost_s())
    m.spend(m.reset_cost_s())
    dt = time.perf_counter() - t
    assert 0.025 * 0.95 <= dt < 0.025 * 4, dt


def test_lognormal_mean_and_tail():
    m = LatencyModel(LatencyConfig(kind="lognormal", step_ms=4.0, reset_ms=10.0, sigma=1.0), seed=1)
    x = np.array([m.step_cost_s() for _ in range(40000)]) * 1000
    assert abs(x.mean() / 4.0 - 1) < 0.15
    assert np.percentile(x, 99) / np.median(x) > 2
    r = np.array([m.reset_cost_s() for _ in range(20000)]) * 1000
    assert abs(r.mean() / 10.0 - 1) < 0.15
    flat = LatencyModel(LatencyConfig(kind="lognormal", step_ms=4.0, sigma=0.0), seed=1)
    assert flat.step_cost_s() == pytest.approx(0.004)  # sigma = 0 degenerates to constant


def test_replay_cycles_profile_from_seeded_offset(tmp_path):
    prof = tmp_path / "prof.json"
    steps, resets = [1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0]
    prof.write_text(json.dumps({"step_ms": steps, "reset_ms": resets}))
    cfg = LatencyConfig(kind="replay", profile=str(prof))
    starts = set()
    for seed in range(8):
        m = LatencyModel(cfg, seed=seed)
        got = [round(m.step_cost_s() * 1000, 9) for _ in range(12)]
        i0 = steps.index(got[0])
        assert got == [steps[(i0 + j) % 5] for j in range(12)]
        starts.add(i0)
        assert {round(m.reset_cost_s() * 1000, 9) for _ in range(4)} == set(resets)
    assert len(starts) > 1  # offset depends on the seed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"step_ms": []}))
    with pytest.raises(ValueError, match="profile"):
        LatencyModel(LatencyConfig(kind="replay", profile=str(bad)))


def test_slow_factor_scales_and_none_is_free():
    base = LatencyModel(LatencyConfig(kind="lognormal", step_ms=3.0, sigma=0.5), seed=4)
    slow = LatencyModel(LatencyConfig(kind="lognormal", step_ms=3.0, sigma=0.5, slow_factor=3.0), seed=4)
    for _ in range(20):
        assert slow.step_cost_s() == pytest.approx(3 * base.step_cost_s())
    none = LatencyModel(LatencyConfig(step_ms=5.0), seed=0)
    assert none.step_cost_s() == 0.0 and not none.enabled


def test_env_spends_latency_per_substep_and_reset():
    cfg = TabletopConfig(latency=LatencyConfig(kind="constant", step_ms=2.0, reset_ms=4.0, mode="spin"))
    env = TabletopEnv(cfg, seed=0)
    t = time.perf_counter()
    env.reset(options={"task_id": 0, "init_id": 0})
    assert time.perf_counter() - t >= 0.004
    _, _, _, _, info = env.chunk_step(np.zeros((5, 3)))
    assert info["substeps"] == 5 and 0.010 <= info["sim_time_s"] < 0.05
