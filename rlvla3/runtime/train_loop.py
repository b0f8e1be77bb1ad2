"""`rlvla3 train`: SFT warm start -> evaluate -> RL under the chosen schedule -> evaluate.

Writes into the run directory: config.yaml, metrics.jsonl, tb/, sft_policy/,
checkpoints/latest/, eval_sft.{json,md}, eval_final.{json,md}, videos/, curve.png,
summary.json.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np

from rlvla3.core.experience import ExperienceStats
from rlvla3.envs.factory import env_config
from rlvla3.runtime.config import Config, envs_per_worker, to_yaml
from rlvla3.runtime.eval_curve import CLOCK, EvalPoint
from rlvla3.runtime.evaluation import EvalReport, evaluate, per_task_metrics
from rlvla3.runtime.graceful import TrainerLost, stop_on_signals, trainer_alive
from rlvla3.runtime.outputs import save_curve, save_videos, write_json
from rlvla3.runtime.run_logger import RunLogger
from rlvla3.runtime.session import Session, start_session
from rlvla3.runtime.sft_eval_cache import evaluate_sft


@dataclass
class TrainingRun:
    """Counters, stop conditions and per-iteration logging shared by every schedule."""

    cfg: Config
    logger: RunLogger
    session: Optional[Session] = None
    run_dir: str = ""
    env_steps: int = 0
    train_steps: int = 0
    episodes: int = 0
    successes: int = 0
    samples_trained: int = 0
    steps_skipped: int = 0
    wall_s_before: float = 0.0  # wall time of earlier (resumed) segments
    t_start: float = field(default_factory=time.time)
    eval_points: List = field(default_factory=list)  # (env_steps, success): kept for older readers
    eval_curve: List[EvalPoint] = field(default_factory=list)  # the same evaluations, with the RL clock
    rl_t0: float = 0.0  # time.time() when this segment's RL stage started; 0 = not yet (eval_curve.CLOCK)
    rl_wall_s_before: float = 0.0  # RL-stage wall time of earlier (resumed) segments
    eval_s: float = 0.0  # seconds spent in evaluations during RL
    train_points: List = field(default_factory=list)
    exp_totals: dict = field(default_factory=dict)
    trained_ids: List = field(default_factory=list)  # sample ids handed to the trainer (each once)
    async_report: dict = field(default_factory=dict)
    fault_report: dict = field(default_factory=dict)  # summary.json -> faults
    stop_requested: str = ""  # signal name once a graceful stop was asked for
    ended_by: str = ""  # what first made should_stop true (summary.json): a signal or a budget
    rearm_signals: Optional[object] = None  # re-installs the stop handlers (set by stop_on_signals)
    deadline: float = 0.0  # time.time() after which the schedule stops (benchmarks); 0 = none
    COUNTERS = ("env_steps", "train_steps", "episodes", "successes", "samples_trained", "steps_skipped")

    @property
    def wall_s(self) -> float:
        return self.wall_s_before + time.time() - self.t_start

    @property
    def rl_wall_s(self) -> float:
        """The RL stage's clock (eval_curve.CLOCK): 0 until `start_rl_clock`."""
        return self.rl_wall_s_before + (time.time() - self.rl_t0 if self.rl_t0 else 0.0)

    def start_rl_clock(self) -> None:
        self.rl_t0 = time.time()

    def should_stop(self) -> bool:
        reason = self.end_reason()
        self.ended_by = self.ended_by or reason  # the first; the clock runs on through the final evaluation
        return bool(reason)

    def ended_first_by(self) -> Optional[str]:
        """summary.json's `ended_by`: what first ended the run. A signal during the final evaluation
        of a run whose budget had ended does not rename it; a signal before any check (SFT) does."""
        return self.ended_by or self.stop_requested or None

    def end_reason(self) -> str:
        """What ends the run now ("" while nothing does): the signal's name, or the budget spent."""
        r = self.cfg.run
        if self.stop_requested:
            return self.stop_requested
        if self.deadline and time.time() >= self.deadline:
            return "deadline"
        if r.max_rl_minutes and self.rl_t0 and self.rl_wall_s >= 60.0 * r.max_rl_minutes:
            return "run.max_rl_minutes"
        if self.env_steps >= r.total_env_steps:
            return "run.total_env_steps"
        return "run.max_train_steps" if r.max_train_steps and self.train_steps >= r.max_train_steps else ""

    def record_iteration(self, env_steps: int, outcomes: list, exp: ExperienceStats, results: list, version: int,
                         timings: dict, trained: int, extra: Optional[dict] = None) -> None:
        self.env_steps += env_steps
        self.episodes += len(outcomes)
        self.successes += sum(o["success"] for o in outcomes)
        for k, v in asdict(exp).items():
            self.exp_totals[k] = self.exp_totals.get(k, 0) + v
        done = [r for r in results if not r.skipped]
        self.train_steps += len(done)
        self.steps_skipped += len(results) - len(done)
        self.samples_trained += trained
        m = {"rollout/episodes": len(outcomes), "rollout/episodes_total": self.episodes,
             "rollout/success_rate": float(np.mean([o["success"] for o in outcomes])) if outcomes else float("nan"),
             "rollout/groups_dropped_degenerate": exp.groups_dropped_degenerate,
             "rollout/episodes_dropped": exp.episodes_dropped, "train/samples": trained,
             "train/steps_skipped_total": self.steps_skipped, "policy/version": version,
             "throughput/env_steps_per_s": self.env_steps / max(self.wall_s, 1e-9), **timings, **(extra or {})}
        for k in sorted({k for r in done for k in r.metrics}):  # some keys come from one pass only
            m[f"train/{k}"] = float(np.mean([r.metrics[k] for r in done if k in r.metrics]))
        if outcomes:
            self.train_points.append((self.env_steps, m["rollout/success_rate"]))
        self.logger.log(self.train_steps, m, self.env_steps)
        cfg = self.cfg
        if cfg.eval.every_steps and done and self.train_steps // cfg.eval.every_steps != (
                self.train_steps - len(done)) // cfg.eval.every_steps:
            self.evaluate("eval_periodic", save=False)
        if cfg.run.checkpoint_every and done and self.train_steps // cfg.run.checkpoint_every != (
                self.train_steps - len(done)) // cfg.run.checkpoint_every:
            self.checkpoint()

    def evaluate(self, stem: str, save: bool = True, videos: int = 0) -> EvalReport:
        s = self.session
        s.publish_weights()
        e = self.cfg.eval
        n_eval = env_config(self.cfg).num_eval_init_states
        n_init = e.episodes_per_task or n_eval
        t0, wall = time.time(), self.rl_wall_s
        report = evaluate(s.backend, s.eval_workers, s.generators, envs_per_worker(self.cfg.rollout),
                          s.instructions, min(n_init, n_eval), s.horizon,
                          e.deterministic, video_slots=videos, policy_version=s.published_version,
                          guard=s.eval_guard(), repeats=e.repeats)
        self.record_eval(stem, report.success_rate, wall, time.time() - t0, report.per_task)
        if save:
            report.save(self.run_dir, stem)
        return report

    def record_eval(self, stem: str, success_rate: float, wall_s: float, duration_s: float,
                    per_task: Optional[Dict[str, dict]] = None) -> EvalPoint:
        """One evaluation that started at RL-clock `wall_s` and took `duration_s`: into
        eval_points, eval_curve and metrics.jsonl (with each task's success as
        `eval_task/<instruction>`, so that tasks trading against each other show in the curves,
        not only in the final table). Only evaluations on the running clock add to eval_s (the
        SFT policy's is made before it starts)."""
        p = EvalPoint(self.env_steps, wall_s, self.eval_s, duration_s, success_rate, self.train_steps, stem)
        if self.rl_t0:
            self.eval_s += duration_s
        self.eval_points.append((self.env_steps, success_rate))
        self.eval_curve.append(p)
        self.logger.log(self.train_steps, {"eval/success_rate": success_rate, "eval/wall_s": round(wall_s, 3),
                                           "eval/eval_s": round(p.eval_s, 3),
                                           "eval/duration_s": round(duration_s, 3),
                                           **per_task_metrics(per_task or {})}, self.env_steps)
        return p

    def checkpoint(self) -> None:
        s = self.session
        counters = dict({k: getattr(self, k) for k in self.COUNTERS}, wall_s_before=self.wall_s,
                        rl_wall_s_before=self.rl_wall_s, eval_s=self.eval_s,
                        eval_points=[list(p) for p in self.eval_points],
                        eval_curve=[p.to_json() for p in self.eval_curve],
                        train_points=[list(p) for p in self.train_points])
        s.backend.get(s.trainer.save.remote(os.path.join(self.run_dir, "checkpoints", "latest"), counters))

    def restore(self, counters: dict) -> None:
        for k in self.COUNTERS + ("wall_s_before", "rl_wall_s_before", "eval_s"):
            setattr(self, k, counters.get(k, getattr(self, k)))
        self.eval_points = [tuple(p) for p in counters.get("eval_points", [])]
        # a checkpoint from before eval_curve: the same points, their clock unknown
        self.eval_curve = [EvalPoint.from_json(p) for p in counters["eval_curve"]] if "eval_curve" in counters \
            else [EvalPoint(int(e), None, 0.0, 0.0, float(r)) for e, r in self.eval_points]
        self.train_points = [tuple(p) for p in counters.get("train_points", [])]


def make_run_dir(cfg: Config) -> str:
    name = cfg.run.name or time.strftime("%Y%m%d-%H%M%S") + f"-{cfg.run.mode}-{cfg.algo.name}"
    path = os.path.join(cfg.run.output_dir, name)
    os.makedirs(path, exist_ok=True)
    return path


def run_sft_stage(cfg: Config, run_dir: str, logger: RunLogger) -> str:
    """Train (or reuse) the SFT checkpoint; returns its directory."""
    if cfg.sft.checkpoint:
        return cfg.sft.checkpoint
    out = os.path.join(run_dir, "sft_policy")
    if os.path.isfile(os.path.join(out, "model.safetensors")):
        return out  # resumed run: the SFT stage already finished
    if not cfg.sft.enabled:
        return cfg.policy.init_from
    from rlvla3.runtime.sft_command import run_sft

    run_sft(cfg, out, logger)
    return out


def train(cfg: Config, resume: str = "") -> dict:
    run_dir = resume or make_run_dir(cfg)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(to_yaml(cfg))
    logger = RunLogger(run_dir, cfg.run.total_env_steps, cfg.run.progress)
    training = TrainingRun(cfg=cfg, logger=logger, run_dir=run_dir)
    with stop_on_signals(training):
        return _train(cfg, resume, run_dir, logger, training)


def _summary(training: TrainingRun, session: Session, run_dir: str) -> dict:
    cfg = training.cfg
    # restarts by any guard or supervisor of the session, evaluation included
    restarts = {k: v for k, v in asdict(session.fault_report).items()
                if k.startswith(("worker_", "generator_"))}
    training.fault_report.update({k: max(v, training.fault_report.get(k, 0)) for k, v in restarts.items()})
    return {
        "run_dir": run_dir, "mode": cfg.run.mode, "algo": cfg.algo.name,
        "env_steps": training.env_steps, "train_steps": training.train_steps,
        "policy_version": session.backend.get(session.trainer.get_version.remote()), "episodes": training.episodes,
        "samples_trained": training.samples_trained, "steps_skipped": training.steps_skipped,
        "wall_s": round(training.wall_s, 2),
        "env_steps_per_s": round(training.env_steps / max(training.wall_s, 1e-9), 2),
        "experience": training.exp_totals, "eval_points": training.eval_points, "async": training.async_report,
        "eval_curve": [p.to_json() for p in training.eval_curve], "eval_curve_clock": CLOCK,
        "rl_wall_s": round(training.rl_wall_s, 2), "rl_eval_s": round(training.eval_s, 2),
        "faults": training.fault_report, "stopped_by": training.stop_requested or None,
        "ended_by": training.ended_first_by(),  # the signal, or the budget (run.*)
        "weights": session.weights.report() if session.weights is not None else {},
    }


def _write_summary(training: TrainingRun, run_dir: str, summary: dict) -> dict:
    """summary.json and the ids of every sample handed to the trainer; returns `summary`."""
    write_json(os.path.join(run_dir, "summary.json"), summary)
    ids = np.concatenate(training.trained_ids) if training.trained_ids else np.zeros(0, np.int64)
    np.save(os.path.join(run_dir, "trained_sample_ids.npy"), ids)
    return summary


def _last_checkpoint_hint(training: TrainingRun) -> str:
    ckpt = os.path.join(training.run_dir, "checkpoints", "latest")
    return f"the last checkpoint is {ckpt} (resume: rlvla3 train --resume {training.run_dir})" \
        if os.path.isdir(ckpt) else "no checkpoint was written yet"


def _run_schedule_or_explain(session: Session, training: TrainingRun) -> None:
    """A dead trainer, or a worker past its deadline, ends the run with a message naming the
    last checkpoint, not a hang."""
    from rlvla3.runtime.remote_wait import RemoteTimeout, WorkersLost

    try:
        run_schedule(session, training)
    except (RemoteTimeout, WorkersLost) as e:
        raise type(e)(f"{e}\nat env step {training.env_steps:,} after {training.train_steps} optimizer steps; "
                      f"{_last_checkpoint_hint(training)}") from e
    except Exception as e:
        if trainer_alive(session):
            raise
        raise TrainerLost(f"the trainer process died at env step {training.env_steps:,} after {training.train_steps} "
                          f"optimizer steps ({type(e).__name__}); {_last_checkpoint_hint(training)}") from e


def _train(cfg: Config, resume: str, run_dir: str, logger: RunLogger, training: TrainingRun) -> dict:
    session = None
    try:
        policy_dir = run_sft_stage(cfg, run_dir, logger)
        session = start_session(cfg, policy_dir=policy_dir)
        if training.rearm_signals is not None:
            training.rearm_signals()  # after ray.init, which replaces the SIGTERM handler
        training.session = session
        ckpt = os.path.join(run_dir, "checkpoints", "latest")
        sft_report = None
        if resume and os.path.isdir(ckpt):
            training.restore(session.backend.get(session.trainer.load.remote(ckpt)))
            logger.print(f"resumed from {ckpt} at env step {training.env_steps:,}, "
                         f"{training.train_steps} optimizer steps")
        if os.path.isfile(os.path.join(run_dir, "eval_sft.json")):
            import json

            sft_report = json.load(open(os.path.join(run_dir, "eval_sft.json")))["success_rate"]
        else:
            sft_report = evaluate_sft(cfg, training, policy_dir, logger).success_rate
            training.eval_points[:] = [(0, sft_report)]
            training.eval_curve[:] = training.eval_curve[-1:]
        logger.print(f"SFT policy: eval success rate {100 * sft_report:.1f}% on held-out initial states")
        training.start_rl_clock()
        _run_schedule_or_explain(session, training)
        training.checkpoint()
        if training.stop_requested:  # graceful stop: checkpoint written, no final evaluation
            summary = _write_summary(training, run_dir, _summary(training, session, run_dir))
            logger.print(f"stopped by {training.stop_requested} at env step {training.env_steps:,}; "
                         f"checkpoint written; continue with: rlvla3 train --resume {run_dir}")
            return summary
        final = training.evaluate("eval_final", videos=cfg.eval.videos)
        videos = save_videos(os.path.join(run_dir, "videos"), final.frames)
        logger.print(f"final policy: eval success rate {100 * final.success_rate:.1f}% "
                     f"(SFT {100 * sft_report:.1f}%, change {100 * (final.success_rate - sft_report):+.1f} points)")
        save_curve(os.path.join(run_dir, "curve.png"), training.eval_points,
                   f"{cfg.algo.name.upper()} ({cfg.run.mode}) on {cfg.env.type}", baseline=sft_report,
                   train_points=training.train_points,
                   wall_points=[(p.wall_s, p.success_rate) for p in training.eval_curve if p.wall_s is not None])
        return _write_summary(training, run_dir, {
            "sft_success_rate": sft_report, "final_success_rate": final.success_rate,
            "improvement_points": 100 * (final.success_rate - sft_report), "videos": videos,
            **_summary(training, session, run_dir)})
    finally:
        logger.close()
        if session is not None:
            session.shutdown()


def run_schedule(session: Session, training: TrainingRun) -> None:
    if session.cfg.run.mode in ("sync", "sync-best", "async-train"):
        from rlvla3.runtime.sync_schedule import run_sync

        run_sync(session, training)
    else:
        from rlvla3.runtime.async_schedule import run_async

        run_async(session, training)
