"""`rlvla3 eval`: per-task success on the held-out initial states, JSON + markdown + videos."""

from __future__ import annotations

import os

from rlvla3.envs.factory import env_config
from rlvla3.runtime.config import envs_per_worker
from rlvla3.runtime.evaluation import EvalReport, evaluate
from rlvla3.runtime.outputs import save_videos
from rlvla3.runtime.session import start_session


def run_eval(cfg, policy_dir: str, out_dir: str) -> EvalReport:
    session = start_session(cfg, policy_dir=policy_dir, with_trainer=False, with_train_envs=False)
    try:
        version = session.backend.get(session.generators[0].get_version.remote())
        e = cfg.eval
        n_eval = env_config(cfg).num_eval_init_states
        n_init = min(e.episodes_per_task or n_eval, n_eval)
        report = evaluate(session.backend, session.eval_workers, session.generators, envs_per_worker(cfg.rollout),
                          session.instructions, n_init, session.horizon, e.deterministic, video_slots=e.videos,
                          policy_version=version, guard=session.eval_guard(), repeats=e.repeats)
        report.save(out_dir, "eval")
        save_videos(os.path.join(out_dir, "videos"), report.frames)
        return report
    finally:
        session.shutdown()
