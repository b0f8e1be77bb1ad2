import pytest

from rlvla3.core.placement import PlacementPlan, plan_placement


def _load(plan: PlacementPlan) -> dict:
    """GPU -> sum of the shares placed on it."""
    out = {}
    for s in plan.trainer + plan.generators:
        out[s.gpu] = out.get(s.gpu, 0.0) + s.share
    return out


def test_auto_one_rank_shares_one_gpu_with_the_generators():
    p = plan_placement("auto", 0, 1, 2)
    assert p.gpus == 1 and [s.gpu for s in p.trainer + p.generators] == [0, 0, 0]
    assert all(s.share == pytest.approx(1 / 3) for s in p.trainer + p.generators)


def test_auto_several_ranks_give_the_generators_one_more_gpu():
    p = plan_placement("auto", 0, 3, 2)
    assert p.gpus == 4
    assert [(s.gpu, s.share) for s in p.trainer] == [(0, 1.0), (1, 1.0), (2, 1.0)]
    assert [(s.gpu, s.share) for s in p.generators] == [(3, 0.5), (3, 0.5)]


def test_colocated_puts_a_rank_and_its_generators_on_every_gpu():
    p = plan_placement("colocated", 4, 4, 8)
    for g in range(4):
        on = p.on_gpu(g)
        assert on["trainer"] == [g] and len(on["generators"]) == 2
    assert all(s.share == 0.5 for s in p.trainer)
    assert all(s.share == pytest.approx(0.25) for s in p.generators)


def test_disaggregated_three_to_one():
    p = plan_placement("disaggregated", 4, 3, 2)
    assert [p.on_gpu(g)["trainer"] for g in range(4)] == [[0], [1], [2], []]
    assert p.on_gpu(3)["generators"] == [0, 1]
    assert all(s.share == 1.0 for s in p.trainer)


def test_hybrid_fills_the_dedicated_gpus_first_then_shares_the_trainer_gpus():
    p = plan_placement("hybrid", 4, 2, 4)
    assert [s.gpu for s in p.generators] == [2, 3, 0, 1]
    assert [s.share for s in p.trainer] == [0.5, 0.5]
    assert [s.share for s in p.generators] == [1.0, 1.0, 0.5, 0.5]
    # fewer generators than GPUs: the trainer GPUs stay the trainer's alone
    q = plan_placement("hybrid", 4, 2, 2)
    assert [s.share for s in q.trainer] == [1.0, 1.0]


@pytest.mark.parametrize("preset,gpus,ranks,gens", [
    ("auto", 0, 1, 1), ("auto", 0, 7, 3), ("colocated", 1, 1, 1), ("colocated", 8, 8, 5),
    ("disaggregated", 2, 1, 1), ("disaggregated", 8, 6, 4), ("hybrid", 8, 4, 12), ("hybrid", 2, 1, 3)])
def test_no_gpu_is_oversubscribed_and_every_actor_has_a_slot(preset, gpus, ranks, gens):
    p = plan_placement(preset, gpus, ranks, gens)
    assert len(p.trainer) == ranks and len(p.generators) == gens
    assert all(0 <= s.gpu < p.gpus and 0 < s.share <= 1 for s in p.trainer + p.generators)
    assert all(v <= 1 + 1e-9 for v in _load(p).values())
    assert len({s.gpu for s in p.trainer}) == ranks  # one GPU per rank
    assert "GPU0" in p.describe()


@pytest.mark.parametrize("args,match", [
    (("ring", 2, 1, 1), "placement.preset must be one of"),
    (("colocated", 0, 1, 1), "placement.gpus >= 1"),
    (("colocated", 4, 2, 2), "trainer.num_ranks=4"),
    (("disaggregated", 2, 2, 1), "placement.gpus >= 3"),
    (("hybrid", 1, 1, 1), "placement.gpus >= 2"),
    (("auto", 2, 3, 1), "needs 4 GPUs"),
    (("auto", 0, 0, 1), "at least one trainer rank"),
])
def test_impossible_layouts_are_refused_with_the_fix(args, match):
    with pytest.raises(ValueError, match=match):
        plan_placement(*args)
