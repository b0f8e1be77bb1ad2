"""MetaWorld smoke test: build an MT1 env, render an upright frame, step the scripted expert to
success, the chunk_step contract, the seeded train/eval split, config errors. Skipped where the
`metaworld` extra is not installed."""

import numpy as np
import pytest

from rlvla3.envs.libero_config import set_render_backend

set_render_backend()  # before MetaWorld imports MuJoCo
pytest.importorskip("metaworld")

from rlvla3.envs.factory import expert_chunk, make_env  # noqa: E402
from rlvla3.envs.metaworld import MetaWorldEnv, split_variations  # noqa: E402
from rlvla3.envs.metaworld_config import INSTRUCTIONS, MetaWorldConfig  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = make_env(MetaWorldConfig(task="push", image_size=64, max_steps=120), seed=0)
    yield e
    e.close()


def _rows(mask):
    return np.nonzero(mask)[0].mean()


def test_reset_observation_and_upright_camera(env):
    obs, info = env.reset(options={"task_id": 0, "init_id": 3})
    assert info["init_id"] == 3 and info["split"] == "train" and env.num_tasks == 1
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 10, "frame is (nearly) constant: rendering failed"
    assert obs["proprio"].shape == (4,) and np.isfinite(obs["proprio"]).all()
    np.testing.assert_allclose(obs["proprio"], env.state[:4].astype(np.float32))  # hand xyz + gripper, no goal
    assert obs["instruction"] == INSTRUCTIONS["push-v3"] == "push the puck to the goal"
    # corner2 is defined upside down: rotated, the red robot arm is above the wooden table
    # (checked by eye on a saved frame: mean row of red pixels ~62, of wood ~38 the wrong way up)
    img = obs["image"].astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    red = (r > 100) & (r > 2 * g) & (r > 2 * b)
    wood = (r > 80) & (r - g < 70) & (r - g > 15) & (g - b > 10)
    assert red.sum() > 20 and wood.sum() > 100
    assert _rows(red) < _rows(wood) - 5, "the robot is below the table: the image is upside down"
    again, _ = env.reset(options={"task_id": 0, "init_id": 3})
    np.testing.assert_array_equal(again["image"], obs["image"])  # a fixed variation: the same start
    other, _ = env.reset(options={"task_id": 0, "init_id": 4})
    assert not np.array_equal(other["image"], obs["image"])  # another variation: puck and goal elsewhere


def test_expert_reaches_success_and_planning_ahead_leaves_the_episode_alone(env):
    obs, _ = env.reset(options={"task_id": 0, "init_id": 0})
    rng = np.random.default_rng(0)
    state0 = env.state.copy()
    first = expert_chunk(env, 8, rng, 0.0)
    np.testing.assert_array_equal(env.state, state0)  # simulated ahead, then restored
    np.testing.assert_array_equal(expert_chunk(env, 8, rng, 0.0), first)  # exactly restored: the same plan
    done = False
    while not done:
        obs, reward, term, trunc, info = env.chunk_step(expert_chunk(env, 8, rng, 0.1))
        done = term or trunc
    assert term and info["success"] and reward == 1.0 and env.steps <= 120
    with pytest.raises(RuntimeError, match="reset first"):
        env.chunk_step(np.zeros((8, 4)))


def test_chunk_step_contract(env):
    env.reset(options={"task_id": 0, "init_id": 1})
    up = np.zeros((50, 4), np.float32)
    up[:, 2] = 1.0
    z0 = env.state[2]
    obs, reward, term, trunc, info = env.chunk_step(up)
    assert info["substeps"] == 50 and not term and not trunc and reward == 0.0 and obs["proprio"][2] > z0
    env.chunk_step(up)
    obs, reward, term, trunc, info = env.chunk_step(up)  # 120 - 100: the chunk stops at the step limit
    assert info["substeps"] == 20 and trunc and not term and env.done and env.steps == 120
    env.reset(options={"task_id": 0, "init_id": 1})
    with pytest.raises(ValueError, match="shape"):
        env.chunk_step(np.zeros((8, 3)))
    with pytest.raises(ValueError, match="init_id"):
        env.reset(options={"task_id": 0, "init_id": 10, "split": "eval"})


def test_substep_frames_and_dense_reward():
    e = MetaWorldEnv(MetaWorldConfig(task="reach", image_size=32, camera="topview", render_substeps=True,
                                     reward="dense", max_steps=30))
    try:
        e.reset(options={"task_id": 0, "init_id": 0, "split": "eval"})
        _, reward, _, _, info = e.chunk_step(np.zeros((5, 4)))
        assert info["frames"].shape == (5, 32, 32, 3) and reward > 0  # shaped reward, not success
    finally:
        e.close()


def test_progress_reward_is_success_plus_the_shaped_rewards_change():
    """reward=progress: per episode, 1 on success plus progress_coef x (last - first shaped
    reward) / 10, read against the same actions under reward=dense one sub-step at a time."""
    cfgs = {r: MetaWorldConfig(task="reach", image_size=32, reward=r, progress_coef=0.5, max_steps=150)
            for r in ("dense", "progress")}
    envs = {r: MetaWorldEnv(c) for r, c in cfgs.items()}
    try:
        rng = np.random.default_rng(0)
        for e in envs.values():
            e.reset(options={"task_id": 0, "init_id": 2})
        shaped, total, done = [], 0.0, False
        while not done:
            chunk = expert_chunk(envs["dense"], 4, rng, 0.0)
            for a in chunk:
                _, r, term, trunc, _ = envs["dense"].chunk_step(a)
                shaped.append(r)
                if term or trunc:
                    break
            _, r, term, trunc, info = envs["progress"].chunk_step(chunk)
            total += r
            done = term or trunc
        assert info["success"] and len(shaped) == envs["progress"].steps
        np.testing.assert_allclose(total, 1.0 + 0.5 * (shaped[-1] - shaped[0]) / 10.0, rtol=1e-6)
        assert 1.0 < total <= 1.5  # the expert ends nearer the goal than it started
    finally:
        for e in envs.values():
            e.close()
    with pytest.raises(ValueError, match="progress_coef"):
        MetaWorldConfig(progress_coef=-1).validate()


def test_reach_term_pays_the_fall_of_the_hands_distance_to_the_object_once():
    """reach_coef: sparse reward plus reach_coef x (1 - the final hand-object distance / the
    distance at reset, each capped at it): the expert on push reaches the puck and earns most
    of it; a hand sent away from the puck earns nothing (the cap), not a penalty."""
    e = MetaWorldEnv(MetaWorldConfig(task="push", image_size=32, reach_coef=2.0, max_steps=150))
    try:
        rng = np.random.default_rng(0)
        e.reset(options={"task_id": 0, "init_id": 1})
        d0 = np.linalg.norm(e.state[0:3] - e.state[4:7])
        total, done, steps = 0.0, False, 0
        while not done and steps < 12:  # the expert's reach phase: before it pushes the puck home
            _, r, term, trunc, info = e.chunk_step(expert_chunk(e, 4, rng, 0.0))
            total, done, steps = total + r, term or trunc, steps + 1
        d = np.linalg.norm(e.state[0:3] - e.state[4:7])
        assert d < 0.5 * d0
        np.testing.assert_allclose(total, float(info["success"]) + 2.0 * (1 - d / d0), rtol=1e-6)
        e.reset(options={"task_id": 0, "init_id": 1})
        away, d0 = -np.sign(e.state[4:7] - e.state[0:3]), np.linalg.norm(e.state[0:3] - e.state[4:7])
        _, r, *_ = e.chunk_step(np.tile(np.append(away, 0.0), (4, 1)))
        assert np.linalg.norm(e.state[0:3] - e.state[4:7]) > d0 and r == 0.0
    finally:
        e.close()
    with pytest.raises(ValueError, match="reach_coef"):
        MetaWorldConfig(reach_coef=-1).validate()
    with pytest.raises(ValueError, match="reach_coef"):
        MetaWorldConfig(reward="dense", reach_coef=1).validate()


def test_corner2_is_moved_close_to_the_table_unless_told_otherwise(env):
    import mujoco

    model = env._env_for("push-v3").model
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")
    np.testing.assert_allclose(model.cam_pos[cam], [0.75, 0.075, 0.7])
    far = MetaWorldEnv(MetaWorldConfig(task="push", image_size=64, camera_pos=[1.3, -0.2, 1.1]))
    try:
        near_img, _ = env.reset(options={"task_id": 0, "init_id": 2})
        far_img, _ = far.reset(options={"task_id": 0, "init_id": 2})
        wood = lambda im: ((im[..., 0].astype(int) - im[..., 1] > 15) & (im[..., 1].astype(int) - im[..., 2] > 10)).mean()  # noqa: E731
        # close up, the wooden table fills much more of the frame than from corner2's own place
        assert wood(near_img["image"]) > 1.5 * wood(far_img["image"])
    finally:
        far.close()
    assert MetaWorldConfig(camera="topview").camera_position() == ()  # other cameras: the XML's place
    with pytest.raises(ValueError, match="camera_pos"):
        MetaWorldConfig(camera_pos=[1.0, 2.0]).validate()


def test_split_is_disjoint_and_seeded(env):
    train, held_out = split_variations(40, 10, 0, 0)
    assert len(set(train)) == 40 and len(set(held_out)) == 10 and not set(train) & set(held_out)
    assert (train, held_out) == split_variations(40, 10, 0, 0)
    assert split_variations(40, 10, 1, 0) != (train, held_out)
    assert env.num_init_states("train") == 40 and env.num_init_states("eval") == 10
    assert [env.variation(0, i, "eval") for i in range(10)] == held_out


def test_bad_config_fails_clearly():
    with pytest.raises(ValueError, match="env.metaworld.task: unknown MetaWorld task"):
        MetaWorldConfig(task="push-the-button").validate()
    with pytest.raises(ValueError, match="env.metaworld.camera"):
        MetaWorldConfig(camera="corner4").validate()
    with pytest.raises(ValueError, match="max_steps"):
        MetaWorldConfig(max_steps=501).validate()
    with pytest.raises(ValueError, match="add up to at most 50"):
        MetaWorldConfig(num_init_states=45, num_eval_init_states=10).validate()
    with pytest.raises(ValueError, match="not MT10 tasks"):
        MetaWorldConfig(benchmark="MT10", task_names=["soccer"]).validate()


def test_run_config_accepts_metaworld():
    from rlvla3.runtime.config import ConfigError, load_config

    cfg = load_config(["env.type=metaworld", "env.metaworld.image_size=64", "policy.tiny.image_size=64",
                       "policy.tiny.proprio_dim=4", "policy.tiny.action_dim=4"], preset=None)
    assert cfg.env.metaworld.task == "reach-v3"
    with pytest.raises(ConfigError, match="4-D actions"):
        load_config(["env.type=metaworld", "env.metaworld.image_size=64", "policy.tiny.image_size=64"], preset=None)
    with pytest.raises(ConfigError, match="env.metaworld.task"):
        load_config(["env.type=metaworld", "env.metaworld.task=nope", "env.metaworld.image_size=64",
                     "policy.tiny.image_size=64", "policy.tiny.action_dim=4"], preset=None)


def test_smoke_preset_loads():
    from rlvla3.runtime.config import load_config

    cfg = load_config(["preset=metaworld-smoke"])
    assert cfg.env.type == "metaworld" and cfg.env.metaworld.benchmark == "MT1" and cfg.sft.enabled
