"""One call for any schedule: `predict(profile, mode)`, and the stage bounds beside it."""

from __future__ import annotations

from dataclasses import dataclass

from rlvla3.plan.lockstep import simulate_lockstep
from rlvla3.plan.profile import StageProfile
from rlvla3.plan.sim_common import SimResult
from rlvla3.plan.simulate import AsyncPipeline

MODES = ("sync", "sync-best", "async-train", "async-rollout", "full")


def predict(prof: StageProfile, mode: str, seconds: float = 60.0, warmup: float = 15.0, seed: int = 0,
            shared_gpu: bool = False) -> SimResult:
    if mode in ("sync", "sync-best", "async-train"):
        return simulate_lockstep(prof, mode, seconds, seed)
    return AsyncPipeline(prof, mode, seconds, warmup, seed, shared_gpu).run()


@dataclass
class Bounds:
    """Each stage alone, in env steps/s (as `rlvla3 bench` reports its bounds)."""

    simulators: float
    generators: float
    trainer: float
    trainer_streaming: float

    def bottleneck(self, mode: str) -> str:
        train = self.trainer_streaming if mode == "full" else self.trainer
        return min((self.simulators, "simulators"), (self.generators, "generators"), (train, "trainer"))[1]

    def min(self, mode: str) -> float:
        return min(self.simulators, self.generators, self.trainer_streaming if mode == "full" else self.trainer)


def stage_bounds(prof: StageProfile) -> Bounds:
    env, L, g, tr = prof.env, prof.layout, prof.generator, prof.trainer
    # A slot alone: its episode's chunks plus one reset per episode, every env of the slot in parallel.
    per_episode_s = env.episode_decisions_mean * env.chunk.mean_ms() / 1000.0 + env.reset.mean_ms() / 1000.0
    slow = 1.0 - L.straggler_fraction + L.straggler_fraction / L.straggler_slowdown
    # The bench measures the simulators with every slot stepping at once: a process's n slots then
    # share its core from a common start, each step taking (1 + (n - 1) share) of its time alone
    # (lockstep.process_shared). n = 1, or no share: every slot at its own speed.
    together = 1.0 + (L.slots_per_worker - 1) * env.process_share
    per_slot = env.episode_decisions_mean * env.steps_per_decision / (per_episode_s * together)
    sims = L.slots * L.envs_per_slot * per_slot * slow
    best = max(n / g.act_s(n) for n in sorted(set(list(g.act_ms_by_batch) + [L.max_batch])) if n <= max(L.max_batch, 1))
    return Bounds(sims, L.num_generators * best * env.steps_per_decision, tr.samples_per_s * env.steps_per_decision,
                  tr.streaming_samples_per_s * env.steps_per_decision)
