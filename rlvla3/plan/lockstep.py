"""The lock-step schedules (`sync`, `sync-best`, `async-train`), after runtime/sync_schedule.py
and runtime/lockstep_rollout.py.

One iteration: publish weights (blocking) -> `rollout_epochs` lock-step rollouts -> train on
everything collected. A rollout resets every slot in parallel, then runs `horizon` chunk steps,
each a barrier: one inference over the active slots split evenly over the generators, then every
slot's chunk, the step lasting as long as its slowest slot. `sync` (PPO, auto_reset=keep) resets
a slot whose episode ended inside that step and keeps it stepping to the horizon; `sync-best`
lets it go idle and ends the rollout when every slot is done. `async-train` trains on rollout k
while rollout k+1 runs: an iteration lasts the longer of the two, then the weights are published.
Vectorised over slots (numpy), so thousands of slots cost milliseconds.
"""

from __future__ import annotations

import numpy as np

from rlvla3.plan.profile import StageProfile
from rlvla3.plan.sim_common import SimResult, episode_lengths, straggler_slots


def process_shared(alone: np.ndarray, per_process: int, share: float) -> np.ndarray:
    """Chunk steps that start together on processes of `per_process` consecutive slots, `share` of
    each being work on its process's one core: slot i's core part ends after sum_j min(w_j, w_i)
    (processor sharing from a common start, w = share x alone), then its own part runs."""
    w = (share * alone).reshape(-1, per_process)
    core = np.minimum(w[:, :, None], w[:, None, :]).sum(axis=-1).reshape(-1)
    return core + (1.0 - share) * alone


def _rollout(prof: StageProfile, rng: np.random.Generator, best: bool, slow: np.ndarray):
    """One lock-step rollout: (wall s, env busy s summed over slots, generator busy s per
    generator, decisions, env steps, inference calls' batch sizes)."""
    env, L, gen = prof.env, prof.layout, prof.generator
    n, k, G = L.slots, L.envs_per_slot, L.num_generators
    H = env.horizon

    def draw(dist):  # per slot: the slowest of its envs, times its straggler factor
        return dist.draw_s(rng, n * k).reshape(n, k).max(axis=1) * slow

    resets = draw(env.reset)
    wall, busy = float(resets.max()), float(resets.sum())
    gen_busy = np.zeros(G)
    left = episode_lengths(rng, H, env.episode_decisions_mean, n)
    active = np.ones(n, bool)
    decisions, batches = 0, []
    for _ in range(H):
        m = int(active.sum())
        if m == 0:
            break
        per_gen = np.diff(np.linspace(0, m * k, G + 1).astype(int))
        t_inf = np.array([gen.act_s(int(x)) for x in per_gen])
        gen_busy += t_inf
        batches += [int(x) for x in per_gen if x]
        t = draw(env.chunk)
        if env.process_share > 0:
            t = process_shared(np.where(active, t, 0.0), L.slots_per_worker, env.process_share)
        left = left - active
        ended = active & (left <= 0)
        if not best and ended.any():  # keep: the slot resets inside this step, then starts a new episode
            t = t + np.where(ended, draw(env.reset), 0.0)
            left = np.where(ended, episode_lengths(rng, H, env.episode_decisions_mean, n), left)
        t = np.where(active, t, 0.0)
        wall += float(t_inf.max()) + float(t.max()) + prof.overheads.lockstep_ms / 1000.0
        busy += float(t.sum())
        decisions += m * k
        if best:
            active = active & ~ended
    if active.any():  # PPO: the episodes still running at the horizon are cut with V(s_L), one inference
        t_boot = np.array([gen.act_s(int(x)) for x in np.diff(np.linspace(0, int(active.sum()) * k, G + 1).astype(int))])
        wall += float(t_boot.max())
        gen_busy += t_boot
    return wall, busy, gen_busy, decisions, decisions * env.steps_per_decision, batches


def simulate_lockstep(prof: StageProfile, mode: str, seconds: float = 60.0, seed: int = 0,
                      min_iterations: int = 8) -> SimResult:
    """Rates over whole iterations (at least `min_iterations`, at least `seconds` of model time)."""
    if mode not in ("sync", "sync-best", "async-train"):
        raise ValueError(f"simulate_lockstep models sync, sync-best and async-train, not {mode!r}")
    rng = np.random.default_rng(seed)
    L, tr = prof.layout, prof.trainer
    slow = np.ones(L.slots)
    slow[list(straggler_slots(L.slots, L.num_env_workers, L.straggler_fraction))] = L.straggler_slowdown
    best, overlap = mode == "sync-best", mode == "async-train"
    total = env_busy = train_busy = steps = samples = trained = opt_steps = 0.0
    gen_busy = np.zeros(L.num_generators)
    batches = []
    prev_train = 0.0
    it = 0
    while it < min_iterations or total < seconds:
        it += 1
        roll = 0.0
        n_dec = 0
        for _ in range(L.rollout_epochs):
            w, b, g, d, s, bs = _rollout(prof, rng, best, slow)
            roll += w
            env_busy += b
            gen_busy += g
            n_dec += d
            steps += s
            batches += bs
        t_train = n_dec / tr.samples_per_s + tr.step_overhead_s * max(1, n_dec // L.global_batch)
        extra = prof.overheads.iteration_s + tr.publish_s
        if overlap:  # the previous batch trains while this rollout runs
            total += max(roll, prev_train) + extra
            prev_train = t_train
        else:
            total += roll + t_train + extra
        train_busy += t_train
        trained += n_dec
        samples += n_dec
        opt_steps += n_dec / L.global_batch * L.update_epochs
    return SimResult(mode, total, steps / total, trained / total, samples / total, opt_steps / total,
                     env_busy / (total * L.slots), [float(x) for x in gen_busy / total], train_busy / total,
                     float(np.mean(batches)) if batches else 0.0, extra={"iteration_s": total / it})
