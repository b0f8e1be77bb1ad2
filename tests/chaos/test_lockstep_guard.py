"""Evaluation (a lock-step rollout) survives an eval worker that dies: its episodes are
dropped, the worker is replaced and its (task, init) pairs are run again."""

from rlvla3.envs.config import TabletopConfig
from rlvla3.envs.faults import EnvFaultConfig
from rlvla3.policies.tiny_vla import TinyVLAConfig
from rlvla3.runtime.backend import make_backend
from rlvla3.runtime.config import PolicyConfig
from rlvla3.runtime.evaluation import evaluate
from rlvla3.runtime.lockstep_guard import LockstepGuard
from rlvla3.workers.env_worker import EnvWorker
from rlvla3.workers.generator import Generator


def test_evaluation_replaces_a_dead_worker_and_reruns_its_pairs():
    b = make_backend("ray")
    try:
        env_cfg = TabletopConfig(image_size=32, families=["reach"], max_steps=16, num_init_states=4,
                                 num_eval_init_states=4)
        crash = EnvFaultConfig(enabled=True, kind="crash", worker=1, slot=0, after_chunk_steps=1, lives=1)

        def make(i, incarnation=0):
            return b.actor(EnvWorker, i, env_cfg, 2, 100 + i + 7 * incarnation, faults=crash,
                           incarnation=incarnation)

        workers = [make(0), make(1)]
        pcfg = PolicyConfig(tiny=TinyVLAConfig(image_size=32, channels=[8, 8], hidden=32))
        gens = [b.actor(Generator, 0, pcfg, 0)]
        guard = LockstepGuard(b, workers, make, step_timeout_s=30, max_restarts=3)
        instructions = b.get(workers[0].task_instructions.remote())
        report = evaluate(b, workers, gens, 2, instructions, 4, horizon=4, guard=guard)
        assert guard.report.worker_crashes == 1 and guard.report.worker_restarts == 1
        assert report.episodes == len(instructions) * 4  # every pair evaluated despite the crash
        assert all(row["episodes"] == 4 for row in report.per_task.values())
    finally:
        b.shutdown()
