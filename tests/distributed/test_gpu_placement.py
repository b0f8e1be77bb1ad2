"""Placement presets applied through Ray: a local cluster that declares 4 GPUs (none exist;
Ray only hands out their ids) places probe actors where the plan says."""

import os

import pytest
import ray

from rlvla3.core.placement import plan_placement
from rlvla3.runtime.backend import RayBackend
from rlvla3.runtime.config import ConfigError, load_config
from rlvla3.runtime.gpu_placement import reserve, share


class Probe:
    def gpu(self):
        return tuple(ray.get_gpu_ids()), os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.fixture(scope="module")
def backend():
    if ray.is_initialized():
        ray.shutdown()
    here = os.path.dirname(os.path.abspath(__file__))  # workers import Probe from this module
    root = os.path.dirname(os.path.dirname(here))
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([root, here]), "OMP_NUM_THREADS": "1"}})
    b = RayBackend()
    yield b
    b.shutdown()


def _place(backend, plan):
    placed = reserve(backend, plan, timeout_s=30)
    trainer = [backend.actor(Probe, **placed.trainer(r)) for r in range(len(plan.trainer))]
    gens = [backend.actor(Probe, **placed.generator(i)) for i in range(len(plan.generators))]
    got = backend.get([a.gpu.remote() for a in trainer + gens])
    ray.util.remove_placement_group(placed.group)
    for a in trainer + gens:
        ray.kill(a)
    return got[:len(trainer)], got[len(trainer):]


def test_disaggregated_gives_each_rank_its_own_gpu_and_the_generators_the_rest(backend):
    trainer, gens = _place(backend, plan_placement("disaggregated", 4, 3, 2))
    ids = [t[0] for t in trainer]
    assert all(len(i) == 1 for i in ids) and len(set(ids)) == 3  # three distinct whole GPUs
    assert gens[0][0] == gens[1][0] and gens[0][0] not in ids  # both generators on the fourth
    assert trainer[0][1] == str(ids[0][0])  # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU


def test_colocated_puts_each_generator_beside_its_rank(backend):
    plan = plan_placement("colocated", 4, 4, 4)
    trainer, gens = _place(backend, plan)
    assert len({t[0] for t in trainer}) == 4
    for i, slot in enumerate(plan.generators):
        assert gens[i][0] == trainer[slot.gpu][0]


def test_a_plan_larger_than_the_cluster_fails_with_the_numbers(backend):
    with pytest.raises(RuntimeError, match="needs 8 GPUs, the Ray cluster has 4"):
        reserve(backend, plan_placement("disaggregated", 8, 4, 4))


def test_shares_are_rounded_down_to_what_ray_keeps():
    assert share(1 / 3) == 0.3333 and 3 * share(1 / 3) <= 1
    assert share(1.0) == 1.0


@pytest.mark.parametrize("overrides,match", [
    (["placement.preset=colocated", "placement.gpus=2"], "policy.device=cpu"),
    (["policy.device=cuda", "placement.preset=colocated", "placement.gpus=2"], "trainer.num_ranks=2"),
    (["policy.device=cuda", "placement.preset=disaggregated", "placement.gpus=1"], "placement.gpus >= 2"),
    (["policy.device=cuda", "placement.preset=star"], "placement.preset must be one of"),
])
def test_bad_placement_configs_are_refused_at_load(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(["preset=tiny-test", *overrides])
