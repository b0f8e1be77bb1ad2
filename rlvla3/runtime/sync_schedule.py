"""The synchronous schedule (RLinf semantics) over the shared worker model.

One iteration: publish weights -> `rollout_epochs` lock-step rollouts of a fixed horizon
-> advantages -> trainer update (update_epochs x global batches) -> repeat.
`sync` keeps simulating slots whose episode ended (filler episodes to the fixed horizon,
as RLinf's fixed-length rollouts do); `sync-best` lets them go idle and ends the rollout
when every slot is done. `async-train` removes the rollout/training barrier: the trainer
learns on rollout k while rollout k+1 is collected with the previous weights (one
iteration of policy lag: PPO's ratio is taken to the policy that acted, or with
`algo.decoupled` the decoupled PPO objective corrects it).
"""

from __future__ import annotations

import time

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience import ExperienceStats
from rlvla3.core.experience_stream import ExperienceStream, StreamSettings
from rlvla3.envs.factory import env_config
from rlvla3.runtime.config import envs_per_worker
from rlvla3.runtime.lockstep_guard import LockstepGuard
from rlvla3.runtime.lockstep_rollout import RolloutResult, lockstep_rollout


def rollout_assignments(stream: ExperienceStream, num_workers: int, slots: int):
    flat = stream.assign(num_workers * slots)
    return [flat[w * slots:(w + 1) * slots] for w in range(num_workers)]


def run_sync(session, training) -> None:
    """`training` (runtime.train_loop.TrainingRun) holds counters, logging and stop conditions."""
    cfg, b = session.cfg, session.backend
    r = cfg.rollout
    grpo = cfg.algo.name == "grpo"
    settings = StreamSettings.from_config(cfg.algo, r, session.horizon)
    sampler = GroupSampler(len(session.instructions), env_config(cfg).num_init_states, settings.episodes_per_group,
                           cfg.run.seed + 17 + training.train_steps, prefix=f"s{training.train_steps}_")
    stream = ExperienceStream(settings, sampler)  # assignments and assembly; lock-step rollouts need no admission
    horizon = r.horizon_chunks or session.horizon
    auto_reset = "none" if cfg.run.mode == "sync-best" else ("filler" if grpo else "keep")
    overlap = cfg.run.mode == "async-train"
    faults = training.fault_report = {"episodes_dropped": 0, "faults_injected_reported": 0}
    guard = None
    if cfg.run.backend == "ray" and session.make_env_worker is not None:  # dead or hung workers: drop and replace
        guard = LockstepGuard(b, session.env_workers, session.make_env_worker, cfg.faults.step_timeout_s,
                              cfg.faults.max_worker_restarts, session.fault_report).watch_generators(session)
    pending = None  # (train ref, trained samples) of the batch being learned during the next rollout
    watch_update = overlap and cfg.run.backend == "ray"  # when the update in flight is seen done (trainer idle)
    while not training.should_stop():
        t_iter = time.perf_counter()
        if pending is None:  # overlapped: weights were published when the last update finished
            version = session.publish_weights()
        roll = RolloutResult()
        watch = pending[0] if pending is not None and watch_update else None
        for _ in range(r.rollout_epochs):
            res = lockstep_rollout(b, session.env_workers, session.generators,
                                   rollout_assignments(stream, r.num_env_workers, envs_per_worker(r)), auto_reset,
                                   horizon, temperature=r.temperature, bootstrap=not grpo, guard=guard,
                                   watch=None if roll.watch_done_at else watch)
            roll.add(res)
        faults["episodes_dropped"] += roll.episodes_dropped
        faults["faults_injected_reported"] = roll.faults_injected
        t_exp = time.perf_counter()
        batch, stats = stream.rollout_samples(roll.episodes)
        t0 = time.perf_counter()
        trained = len(batch) if batch is not None else 0
        if trained:
            training.trained_ids.append(batch.sample_ids)
        if overlap:
            # Last iteration's update ran during this rollout: collect it and publish it while the
            # trainer is idle, then let this batch train during the next rollout.
            prev_ref, prev_trained = pending or (None, 0)
            results = b.get(prev_ref) if prev_ref is not None else []
            idle_from = t_iter if prev_ref is None else (roll.watch_done_at or time.perf_counter())
            version = session.publish_weights()
            t_idle = time.perf_counter() - idle_from  # the driver's view, as in the asynchronous schedules
            pending = (session.trainer.train_batch.remote(batch) if trained else None, trained)
            trained = prev_trained
        else:
            results = b.get(session.trainer.train_batch.remote(batch)) if trained else []
        t_train = time.perf_counter() - t0
        t_all = time.perf_counter() - t_iter
        timings = {"time/iteration_s": t_all, "time/rollout_s": roll.wall_s,
                   "time/rollout_infer_s": roll.infer_time_s, "time/rollout_env_s": roll.env_time_s,
                   "time/experience_s": t0 - t_exp, "time/train_wait_s": t_train,
                   "time/trainer_idle_s": t_idle if overlap else t_all - t_train}
        training.record_iteration(env_steps=roll.env_steps, outcomes=roll.outcomes, exp=stats, results=results,
                                  version=version, timings=timings, trained=trained)
    if pending is not None and pending[0] is not None:  # async-train: the last update
        t0 = time.perf_counter()
        results = b.get(pending[0])
        t_wait = time.perf_counter() - t0
        training.record_iteration(env_steps=0, outcomes=[], exp=ExperienceStats(), results=results,
                                  version=session.published_version, trained=pending[1],
                                  timings={"time/iteration_s": t_wait, "time/train_wait_s": t_wait,
                                           **{f"time/{k}_s": 0.0 for k in ("rollout", "rollout_infer", "rollout_env",
                                                                           "experience", "trainer_idle")}})

