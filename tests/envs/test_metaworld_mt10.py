"""preset=metaworld-mt10 loads and validates (PPO, GRPO, every mode), its vocabulary tells the
ten instructions apart, and MT10 builds from it: ten tasks, each resets to an image and steps
its expert (MT10 takes ~11 s to build). Skipped without the `metaworld` extra."""

import numpy as np
import pytest

from rlvla3.envs.libero_config import set_render_backend

set_render_backend()  # before MetaWorld imports MuJoCo
pytest.importorskip("metaworld")

from rlvla3.envs.factory import env_config, expert_chunk, make_env  # noqa: E402
from rlvla3.envs.metaworld_config import INSTRUCTIONS  # noqa: E402
from rlvla3.policies.text_tokenizer import UNK, WordTokenizer  # noqa: E402
from rlvla3.runtime.config import MODES, load_config  # noqa: E402


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_preset_loads_in_every_mode(algo):
    for mode in MODES:
        cfg = load_config(["preset=metaworld-mt10", f"algo.name={algo}", f"run.mode={mode}"])
        assert cfg.env.type == "metaworld" and cfg.env.metaworld.benchmark == "MT10" and cfg.sft.enabled
        assert cfg.eval.videos > 0 and cfg.eval.every_steps > 0


def test_preset_keeps_the_settings_its_runs_were_measured_at():
    # docs/benchmarks/gpu-dec06c-mt10-clone: the penalty to the clone, capped, and η = 1 (η = 2 fell behind sync)
    algo = load_config(["preset=metaworld-mt10"]).algo
    assert (algo.kl_ref_coef, algo.kl_ref_clip, algo.staleness, algo.decoupled) == (0.1, 10.0, 1, False)


def test_vocabulary_tells_the_ten_tasks_apart():
    cfg = load_config(["preset=metaworld-mt10"])
    t = cfg.policy.tiny
    names = cfg.env.metaworld.task_list()
    assert len(names) == 10
    ids = WordTokenizer(t.vocab, t.max_instruction_tokens).encode([INSTRUCTIONS[n] for n in names])
    assert not (ids == UNK).any() and len({tuple(r) for r in ids}) == 10
    from rlvla3.policies.text_tokenizer import DEFAULT_VOCAB

    assert t.vocab[:len(DEFAULT_VOCAB)] == DEFAULT_VOCAB  # "on" stays a word (YAML reads a bare on as true)


def test_mt10_builds_and_every_task_resets_and_steps():
    cfg = load_config(["preset=metaworld-mt10", "env.metaworld.image_size=64", "policy.tiny.image_size=64"])
    env = make_env(env_config(cfg), seed=0)
    try:
        assert env.num_tasks == 10
        rng = np.random.default_rng(0)
        for task in range(env.num_tasks):
            obs, _ = env.reset(options={"task_id": task, "init_id": 0, "split": "eval"})
            assert obs["image"].shape == (64, 64, 3) and obs["image"].std() > 10
            assert obs["instruction"] == INSTRUCTIONS[cfg.env.metaworld.task_list()[task]]
            _, _, _, _, info = env.chunk_step(expert_chunk(env, 8, rng, 0.0))
            assert info["substeps"] == 8
    finally:
        env.close()
