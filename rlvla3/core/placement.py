"""Which GPU each trainer rank and each generator runs on (`placement.preset`, issue 8).

A plan is pure data: GPU i of the plan becomes bundle i of one Ray placement group, and
every actor asks for its share of its bundle's GPU, so colocation is exact rather than left
to Ray's packing of fractional GPUs.

- `colocated`: every GPU holds one trainer rank and its share of the generators (half the
  GPU for the rank, the other half split among its generators); with one GPU this is the
  single-GPU layout (trainer and generators share it).
- `disaggregated`: the trainer ranks own `num_ranks` GPUs, the generators the others
  (e.g. 3:1 on 4 GPUs: 3 ranks, generators on the fourth).
- `hybrid`: as disaggregated, and the trainer GPUs also serve generators, which go first to
  the dedicated GPUs, then round-robin over all of them.
- `auto`: the layout before presets existed: one rank shares one GPU with the generators;
  several ranks get a GPU each and the generators share one more (disaggregated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from rlvla3.core.config_checks import check

PRESETS = ("auto", "colocated", "disaggregated", "hybrid")
TRAINER_SHARE_COLOCATED = 0.5  # of a GPU that also serves generators


@dataclass(frozen=True)
class Slot:
    gpu: int  # index into the plan's GPUs (= the placement group's bundle)
    share: float  # fraction of that GPU the actor asks Ray for


@dataclass(frozen=True)
class PlacementPlan:
    preset: str
    gpus: int
    trainer: Tuple[Slot, ...]  # one per trainer rank
    generators: Tuple[Slot, ...]  # one per generator

    def on_gpu(self, gpu: int) -> dict:
        """{'trainer': [ranks], 'generators': [indices]} placed on GPU `gpu`."""
        return {"trainer": [r for r, s in enumerate(self.trainer) if s.gpu == gpu],
                "generators": [i for i, s in enumerate(self.generators) if s.gpu == gpu]}

    def weight_channel_backend(self) -> str:
        """NCCL for the trainer -> generators weight channel when trainer rank 0 and every
        generator hold a GPU of their own (NCCL refuses two members on one device), else gloo."""
        gpus = [self.trainer[0].gpu] + [s.gpu for s in self.generators]
        return "nccl" if len(set(gpus)) == len(gpus) else "gloo"

    def describe(self) -> str:
        parts = []
        for g in range(self.gpus):
            on = self.on_gpu(g)
            who = [f"trainer{r}" for r in on["trainer"]] + [f"gen{i}" for i in on["generators"]]
            parts.append(f"GPU{g}: " + (", ".join(who) or "idle"))
        return f"{self.preset} on {self.gpus} GPU(s): " + "; ".join(parts)


def _spread(gpus: Tuple[int, ...], count: int) -> Tuple[int, ...]:
    return tuple(gpus[i % len(gpus)] for i in range(count))


def _shares(trainer_gpus: Tuple[int, ...], gen_gpus: Tuple[int, ...]) -> Tuple[Tuple[Slot, ...], Tuple[Slot, ...]]:
    """Slots: a GPU with a trainer rank and generators gives the rank half and splits the
    rest; a GPU with only generators splits it all; a rank alone owns its GPU."""
    gens_on = {g: gen_gpus.count(g) for g in set(gen_gpus)}
    trainer = tuple(Slot(g, TRAINER_SHARE_COLOCATED if gens_on.get(g) else 1.0) for g in trainer_gpus)
    ranks_on = set(trainer_gpus)
    gens = tuple(Slot(g, ((1.0 - TRAINER_SHARE_COLOCATED) if g in ranks_on else 1.0) / gens_on[g]) for g in gen_gpus)
    return trainer, gens


def plan_placement(preset: str, gpus: int, num_ranks: int, num_generators: int) -> PlacementPlan:
    """The plan for `gpus` GPUs (0 with `auto`: as many as it needs). Raises ValueError, with
    what would fit, when the preset cannot place these ranks and generators."""
    check(preset in PRESETS, f"placement.preset must be one of {PRESETS}, got {preset!r}")
    check(num_ranks >= 1 and num_generators >= 1, "placement needs at least one trainer rank and one generator")
    if preset == "auto":
        if num_ranks == 1:
            share = 1.0 / (num_generators + 1)  # the single-GPU layout: everyone shares GPU 0
            plan = PlacementPlan("auto", 1, (Slot(0, share),), tuple(Slot(0, share) for _ in range(num_generators)))
        else:
            ranks = tuple(range(num_ranks))
            trainer, gens = _shares(ranks, _spread((num_ranks,), num_generators))
            plan = PlacementPlan("auto", num_ranks + 1, trainer, gens)
        check(not gpus or gpus >= plan.gpus,
              f"placement.preset=auto with {num_ranks} trainer rank(s) needs {plan.gpus} GPUs, placement.gpus={gpus}")
        return plan
    check(gpus >= 1, f"placement.preset={preset} needs placement.gpus >= 1 (the GPUs to lay out), got {gpus}")
    all_gpus = tuple(range(gpus))
    if preset == "colocated":
        check(num_ranks == gpus, f"placement.preset=colocated puts one trainer rank on each GPU: set "
              f"trainer.num_ranks={gpus} for {gpus} GPUs (got {num_ranks})")
        trainer, gens = _shares(all_gpus, _spread(all_gpus, num_generators))
        return PlacementPlan(preset, gpus, trainer, gens)
    check(num_ranks < gpus, f"placement.preset={preset} gives the trainer ranks GPUs of their own and the generators "
          f"at least one more: {num_ranks} rank(s) need placement.gpus >= {num_ranks + 1}, got {gpus}")
    ranks, dedicated = all_gpus[:num_ranks], all_gpus[num_ranks:]
    if preset == "disaggregated":
        trainer, gens = _shares(ranks, _spread(dedicated, num_generators))
    else:  # hybrid
        order = dedicated + ranks
        trainer, gens = _shares(ranks, _spread(order, num_generators))
    return PlacementPlan(preset, gpus, trainer, gens)
