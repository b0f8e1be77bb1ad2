"""Tests for the built-in tabletop env: API conformance, determinism, episode ends, rendering."""
import pickle
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlvla3.envs import (ENV_ID, FAMILIES, TabletopConfig, TabletopEnv, build_tasks, expert_chunk,
                         initial_state)
from rlvla3.envs.render import BLOCK_RGB, GRIPPER_CLOSED_RGB, GRIPPER_OPEN_RGB, ZONE_RGB
from rlvla3.envs.sim import CONTACT, SimState, physics_step

ALL = list(FAMILIES)


def make(**kw):
    kw.setdefault("families", ALL)
    return TabletopEnv(TabletopConfig(**kw), seed=0)


def _state_key(s: SimState):
    return tuple(np.round(np.concatenate([s.gripper, np.ravel(s.blocks), np.ravel(s.zones)]), 9))


# ---------------------------------------------------------------- API conformance
def test_check_env_strict_via_gym_make():
    env = gym.make(ENV_ID, config=TabletopConfig(families=ALL)).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env)


@pytest.mark.parametrize("families", [["reach"], ["push"], ["pick_place"], ["reach", "push"]])
def test_check_env_family_subsets(families):
    env = gym.make(ENV_ID, config=TabletopConfig(families=families, image_size=32), seed=3).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


def test_task_list():
    tasks = build_tasks(ALL)
    assert [t.task_id for t in tasks] == list(range(15))
    assert sum(t.family == "reach" for t in tasks) == 3
    assert sum(t.family == "push" for t in tasks) == 6
    assert sum(t.family == "pick_place" for t in tasks) == 6
    assert tasks[0].instruction == "reach the red block"
    assert "push the red block to the yellow zone" in [t.instruction for t in tasks]
    assert "put the blue block in the purple zone" in [t.instruction for t in tasks]
    # ids do not depend on the order families are listed in
    assert build_tasks(["push", "reach"]) == build_tasks(["reach", "push"])
    env = make()
    assert env.num_tasks == 15 and env.proprio_dim == 4 and env.action_dim == 3
    for t in env.tasks:
        assert t.instruction in env.observation_space["instruction"]


def test_pickle_roundtrip():
    env = make()
    env.reset(options={"task_id": 2, "init_id": 1})
    clone = pickle.loads(pickle.dumps(env))  # envs are shipped to worker processes
    assert np.array_equal(clone.render(), env.render())


def test_obs_layout_and_spaces():
    env = make(image_size=32)
    obs, info = env.reset(options={"task_id": 4, "init_id": 2, "split": "eval"})
    assert obs in env.observation_space
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    s = env.state
    np.testing.assert_allclose(obs["proprio"], [s.gripper[0], s.gripper[1], 0.0, 0.0], atol=1e-6)
    assert info == {"task_id": 4, "init_id": 2, "split": "eval", "instruction": env.tasks[4].instruction,
                    "family": env.tasks[4].family, "success": False, "steps": 0}
    obs, *_ = env.step(np.array([0.0, 0.0, 1.0], np.float32))
    assert obs["proprio"][2] == 1.0 and obs["proprio"][3] == pytest.approx(1 / 60)


# ---------------------------------------------------------------- determinism / init states
def test_reset_same_options_identical_obs():
    a, b = TabletopEnv(TabletopConfig(families=ALL), seed=1), TabletopEnv(TabletopConfig(families=ALL), seed=99)
    for opts in [{"task_id": 0, "init_id": 5}, {"task_id": 7, "init_id": 3, "split": "eval"}]:
        oa, _ = a.reset(options=opts)
        ob, _ = b.reset(options=opts)
        assert np.array_equal(oa["image"], ob["image"]) and np.array_equal(oa["proprio"], ob["proprio"])
        assert oa["instruction"] == ob["instruction"]


def test_missing_options_drawn_from_env_rng():
    env = make()
    ids = {(i["task_id"], i["init_id"]) for i in (env.reset(seed=s)[1] for s in range(30))}
    assert len(ids) > 20
    first = env.reset(seed=5)[1]
    assert env.reset(seed=5)[1] == first
    assert env.reset(options={"split": "eval"})[1]["init_id"] < env.config.num_eval_init_states


def test_init_states_fixed_across_seeds_and_disjoint():
    cfg = TabletopConfig(families=ALL)
    e0, e1 = TabletopEnv(cfg, seed=0), TabletopEnv(cfg, seed=12345)
    for t in e0.tasks:
        keys = {}
        for split, n in (("train", cfg.num_init_states), ("eval", cfg.num_eval_init_states)):
            keys[split] = set()
            for i in range(n):
                e0.reset(options={"task_id": t.task_id, "init_id": i, "split": split})
                e1.reset(seed=7, options={"task_id": t.task_id, "init_id": i, "split": split})
                k = _state_key(e0.state)
                assert k == _state_key(e1.state) == _state_key(initial_state(t, split, i))
                keys[split].add(k)
            assert len(keys[split]) == n  # no duplicates inside a split
        assert not keys["train"] & keys["eval"]
    # task identity (not the family subset) fixes the states
    push_only = TabletopEnv(TabletopConfig(families=["push"]))
    push_only.reset(options={"task_id": 0, "init_id": 3})
    e0.reset(options={"task_id": 3, "init_id": 3})  # push/red/yellow in the full list
    assert _state_key(push_only.state) == _state_key(e0.state)


def test_init_state_constraints():
    for t in build_tasks(ALL):
        for i in range(16):
            s = initial_state(t, "train", i)
            b = np.array(s.blocks)
            g = np.array(s.gripper)
            assert np.all(np.abs(b) <= 0.7) and np.all(np.abs(g) <= 0.85)
            assert np.min(np.linalg.norm(b - g, axis=1)) > CONTACT + 0.1  # no initial contact
            if t.family == "reach":
                assert np.linalg.norm(b[t.obj_index] - g) >= 0.4
            else:
                assert np.linalg.norm(b[t.obj_index] - s.zones[t.target_index]) >= 0.4


# ---------------------------------------------------------------- episode ends / chunking
def test_chunk_step_stops_at_success():
    env = make()
    env.reset(options={"task_id": 0, "init_id": 0})
    k = 60
    steps_before = env.total_steps
    obs, reward, term, trunc, info = env.chunk_step(expert_chunk(env, k))
    assert term and not trunc and reward == 1.0 and info["success"]
    assert 0 < info["substeps"] < k and env.steps == info["substeps"]
    assert env.total_steps - steps_before == info["substeps"]
    assert info["sim_time_s"] > 0 and "frames" not in info
    with pytest.raises(RuntimeError):
        env.chunk_step(np.zeros((4, 3)))  # never steps past the end
    with pytest.raises(RuntimeError):
        env.step(np.zeros(3))
    assert env.total_steps - steps_before == info["substeps"]


def test_time_limit_truncates_chunk_and_step():
    env = make(max_steps=5)
    env.reset(options={"task_id": 3, "init_id": 0})
    _, reward, term, trunc, info = env.chunk_step(np.zeros((10, 3)))
    assert info["substeps"] == 5 and trunc and not term and reward == 0.0 and not info["success"]
    env.reset(options={"task_id": 3, "init_id": 0})
    flags = [env.step(np.zeros(3))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    assert env.total_resets == 2 and env.total_steps == 10


def test_render_substeps_frames():
    env = make(render_substeps=True, image_size=24)
    env.reset(options={"task_id": 1, "init_id": 0})
    obs, _, _, _, info = env.chunk_step(np.tile([1.0, 0.0, -1.0], (4, 1)))
    assert info["frames"].shape == (4, 24, 24, 3)
    assert np.array_equal(info["frames"][-1], obs["image"])
    assert not np.array_equal(info["frames"][0], info["frames"][-1])


def test_chunk_equals_sequential_steps_and_clipping():
    a, b = make(), make()
    acts = np.random.default_rng(0).uniform(-3, 3, (12, 3))
    a.reset(options={"task_id": 5, "init_id": 1})
    b.reset(options={"task_id": 5, "init_id": 1})
    oa = a.chunk_step(acts)[0]
    for act in np.clip(acts, -1, 1):
        ob = b.step(act)[0]
    assert np.array_equal(oa["image"], ob["image"]) and np.array_equal(oa["proprio"], ob["proprio"])
    with pytest.raises(ValueError):
        a.chunk_step(np.zeros((2, 4)))


# ---------------------------------------------------------------- physics
def test_push_and_grasp_physics():
    s = SimState(gripper=[0.0, 0.0], blocks=[[0.2, 0.0], [0.5, 0.5], [-0.5, -0.5]], zones=[[0, 0.6], [0, -0.6]])
    physics_step(s, 1.0, 0.0, -1.0)  # open gripper moves +x into the red block
    assert s.blocks[0] == pytest.approx([0.06 + CONTACT, 0.0])
    s2 = s.copy()
    physics_step(s2, 1.0, 0.0, 1.0)  # closing while touching grasps it; closed gripper is lifted
    assert s2.held == 0 and s2.grasped[0]
    physics_step(s2, 0.0, 1.0, 1.0)  # carried rigidly
    assert s2.blocks[0] == pytest.approx([0.12 + CONTACT, 0.06])
    physics_step(s2, 0.0, 0.0, -1.0)  # opening releases in place
    assert s2.held == -1 and s2.blocks[0] == pytest.approx([0.12 + CONTACT, 0.06])
    lifted = SimState(gripper=[0.0, 0.0], blocks=[[0.5, 0.0], [0.5, 0.5], [-0.5, -0.5]],
                      zones=[[0, 0.6], [0, -0.6]], closed=True)
    for _ in range(10):
        physics_step(lifted, 1.0, 0.0, 1.0)  # closed gripper passes over blocks without pushing
    assert lifted.blocks[0] == [0.5, 0.0] and lifted.held == -1
    wall = SimState(gripper=[0.5, 0.0], blocks=[[0.8, 0.0], [0.5, 0.5], [-0.5, -0.5]], zones=[[0, 0.6], [0, -0.6]])
    for _ in range(20):
        physics_step(wall, 1.0, 0.0, -1.0)
    assert max(abs(v) for b in wall.blocks for v in b) <= 1.0  # blocks never leave the workspace


# ---------------------------------------------------------------- rendering
def _has_colour(img, rgb):
    return int(np.all(img == np.array(rgb, np.uint8), axis=-1).sum())


def test_render_colours_and_variation():
    env = make()
    obs0, _ = env.reset(options={"task_id": 0, "init_id": 0})
    img = obs0["image"]
    for rgb in (*BLOCK_RGB, *ZONE_RGB, GRIPPER_OPEN_RGB):
        assert _has_colour(img, rgb) >= 3, rgb
    env.step(np.array([0, 0, 1.0]))
    assert _has_colour(env.render(), GRIPPER_CLOSED_RGB) >= 3
    palette = np.array([*BLOCK_RGB, *ZONE_RGB, GRIPPER_OPEN_RGB, GRIPPER_CLOSED_RGB, (200, 200, 200)], float)
    dists = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    assert dists[np.triu_indices(len(palette), 1)].min() > 80  # clearly distinct colours
    obs1, _ = env.reset(options={"task_id": 0, "init_id": 1})
    obs2, _ = env.reset(options={"task_id": 5, "init_id": 0})
    assert not np.array_equal(obs0["image"], obs1["image"])
    assert not np.array_equal(obs0["image"], obs2["image"])
    # orientation: the red block's pixels sit where its coordinates say (row 0 = top, y = +1)
    s = env.state
    rows, cols = np.nonzero(np.all(obs2["image"] == np.array(BLOCK_RGB[0], np.uint8), axis=-1))
    size = env.config.image_size
    assert abs(cols.mean() - (s.blocks[0][0] + 1) / 2 * size) < 1.5
    assert abs(rows.mean() - (1 - s.blocks[0][1]) / 2 * size) < 1.5


def test_speed_report():
    """Prints the costs (run with -s); bounds are loose so slow CI does not flake."""
    env = make(max_steps=10**9)
    env.reset(options={"task_id": 4, "init_id": 0})
    acts = np.random.default_rng(0).uniform(-1, 1, (2000, 3))
    t = time.perf_counter()
    for i in range(40):
        env.chunk_step(acts[i * 50:(i + 1) * 50])
    step_us = (time.perf_counter() - t) / 2000 * 1e6  # includes one render per 50 steps
    t = time.perf_counter()
    for _ in range(1000):
        env.render()
    render_us = (time.perf_counter() - t) / 1000 * 1e6
    t = time.perf_counter()
    for a in acts[:1000]:
        env.step(a)
    full_us = (time.perf_counter() - t) / 1000 * 1e6
    print(f"\nlow-level step (chunked): {step_us:.1f} us, 64x64 render: {render_us:.1f} us, "
          f"step()+render+obs: {full_us:.1f} us")
    assert step_us < 100 and render_us < 1000
