"""A training session: the backend and the three worker groups, created from a Config."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from rlvla3.core.timeline import SpanRecorder
from rlvla3.runtime.backend import make_backend
from rlvla3.envs.factory import env_config
from rlvla3.policies import family_config
from rlvla3.runtime.config import envs_per_worker
from rlvla3.runtime.gpu_placement import placement_for
from rlvla3.runtime.supervisor import FaultReport
from rlvla3.runtime.weight_publisher import WeightPublisher
from rlvla3.workers.async_generator import AsyncGenerator
from rlvla3.workers.env_worker import EnvWorker
from rlvla3.workers.generator import Generator
from rlvla3.workers.trainer import Trainer
from rlvla3.workers.trainer_host import RoleView, TrainerHost


ASYNC_ROLLOUT_MODES = ("async-rollout", "full")


@dataclass
class Session:
    cfg: object
    backend: object
    env_workers: List = field(default_factory=list)
    eval_workers: List = field(default_factory=list)
    generators: List = field(default_factory=list)
    trainer: object = None
    instructions: List[str] = field(default_factory=list)
    published_version: int = -1
    spans: SpanRecorder = field(default_factory=lambda: SpanRecorder(enabled=False))  # driver timeline
    # (index, incarnation) -> a new actor: how the supervisor replaces a dead or hung one
    make_env_worker: Optional[Callable] = None
    make_generator: Optional[Callable] = None
    make_eval_worker: Optional[Callable] = None
    _eval_guard: Optional[object] = None
    # restarts and drops of every guard and supervisor of this session (summary.json -> faults)
    fault_report: FaultReport = field(default_factory=FaultReport)
    placement: Optional[object] = None  # core.placement.PlacementPlan on CUDA
    weights: Optional[WeightPublisher] = None  # how new weights reach the generators

    def eval_guard(self):
        """Drops and replaces dead or hung evaluation workers (Ray backend only)."""
        if self._eval_guard is None and self.cfg.run.backend == "ray" and self.make_eval_worker is not None:
            from rlvla3.runtime.lockstep_guard import LockstepGuard

            f = self.cfg.faults
            self._eval_guard = LockstepGuard(self.backend, self.eval_workers, self.make_eval_worker, f.step_timeout_s,
                                             f.max_worker_restarts, self.fault_report)
            self._eval_guard.watch_generators(self)
        return self._eval_guard

    @property
    def horizon(self) -> int:
        """Chunk steps that fit one full episode."""
        return math.ceil(env_config(self.cfg).episode_steps() / family_config(self.cfg.policy).chunk_size)

    def publish_weights(self) -> int:
        """Push the trainer's current weights to every generator (once per version)."""
        b = self.backend
        version = b.get(self.trainer.get_version.remote())
        if version != self.published_version:
            with self.spans.span("driver", "weight_sync", version=version):  # inference waits for it
                self.weights.publish(wait=True)
            self.published_version = version
        return version

    def publish_weights_async(self, version: int) -> None:
        """Send version `version` to every generator without waiting; they swap it in
        between two batches."""
        self.weights.publish(wait=False)
        self.published_version = version

    def shutdown(self) -> None:
        self.backend.shutdown()


def generator_faults(cfg, i: int, incarnation: int) -> dict:
    """Faults injected into generator 0's first life (request counts; 0 = none)."""
    f = cfg.faults
    if i or incarnation:
        return {}
    return dict(crash_after_requests=f.generator_crash_after_requests,
                hang_after_requests=f.generator_hang_after_requests, hang_at_start=f.generator_hang_at_start)


def start_session(cfg, policy_dir: str = "", with_trainer: bool = True, with_train_envs: bool = True) -> Session:
    """Create workers. `policy_dir` (an SFT or earlier checkpoint) seeds every replica."""
    import copy

    cfg = copy.deepcopy(cfg)
    if policy_dir:
        cfg.policy.init_from = policy_dir
    if cfg.env.type == "libero":  # fail here, with the fix, rather than in every env worker
        from rlvla3.envs.libero_config import preflight_gl

        preflight_gl()
    if cfg.env.type == "metaworld":  # not installed: say which pip command installs it, once
        from rlvla3.envs.metaworld_config import import_metaworld

        import_metaworld()
    # process.nice > 0: workers start at nice 0 (the driver's), so the trainer outranks the
    # rollout by the whole offset instead of Ray's 15 + offset capped at 19
    nice = cfg.process.nice
    backend = make_backend(cfg.run.backend, heap_keep_mb=cfg.process.heap_keep_mb,
                           worker_nice=0 if nice > 0 else None, call_timeout_s=cfg.faults.call_timeout_s,
                           object_store_mb=cfg.process.object_store_mb)
    r, seed, threads = cfg.rollout, cfg.run.seed, cfg.run.torch_threads
    s = Session(cfg=cfg, backend=backend)
    env_cfg = env_config(cfg)
    if with_train_envs:
        slow = cfg.bench.straggler_slots(r.num_env_workers, envs_per_worker(r))

        def make_env_worker(i: int, incarnation: int = 0):
            return backend.actor(EnvWorker, i, env_cfg, envs_per_worker(r), seed * 100 + i + 7 * incarnation,
                                 slow_slots={j: cfg.bench.straggler_slowdown for j in slow[i]} or None,
                                 torch_threads=threads, faults=cfg.faults.env, incarnation=incarnation, nice=nice)

        s.make_env_worker = make_env_worker
        s.env_workers = [make_env_worker(i) for i in range(r.num_env_workers)]
    def make_eval_worker(i: int, incarnation: int = 0):
        return backend.actor(EnvWorker, i, env_cfg, envs_per_worker(r), 10_000 + seed * 100 + i + 7 * incarnation,
                             torch_threads=threads)

    s.make_eval_worker = make_eval_worker
    s.eval_workers = [make_eval_worker(i) for i in range(cfg.eval.num_workers)]
    g = cfg.generator
    gpus = placement_for(backend, cfg)  # None on the CPU
    s.placement = gpus.plan if gpus is not None else None
    if gpus is not None:
        print(f"placement: {gpus.plan.describe()}", flush=True)
    gen_opts = (lambda i: gpus.generator(i)) if gpus is not None else (lambda i: {})
    # async modes: a generator with its own dynamic batcher (max batch, max wait, temperature)
    cls, batching = (AsyncGenerator, (g.max_batch, g.max_wait_ms, r.temperature)) \
        if cfg.run.mode in ASYNC_ROLLOUT_MODES else (Generator, ())
    # generator.cuda_graphs: the largest batch each replica forms (the batcher's cap, or its share of the slots)
    graph_batch = 0 if not g.cuda_graphs else g.max_batch if batching else \
        math.ceil(r.num_env_workers * envs_per_worker(r) / g.num_generators)

    def make_generator(i: int, incarnation: int = 0):
        return backend.actor(cls, i, cfg.policy, seed + 7 * incarnation, threads, *batching, nice=nice,
                             cuda_graph_batch=graph_batch, **generator_faults(cfg, i, incarnation), **gen_opts(i))

    if g.in_trainer_process and with_trainer:  # one process for both: workers/trainer_host.py
        host_trainer_and_generator(s, backend.actor(
            TrainerHost, cfg, seed, threads, (0, cfg.policy, seed, threads, *batching),
            dict(cuda_graph_batch=graph_batch, **generator_faults(cfg, 0, 0)), **(gpus.trainer(0) if gpus else {})))
    else:
        s.make_generator = make_generator
        s.generators = [make_generator(i) for i in range(g.num_generators)]
        if with_trainer and cfg.trainer.num_ranks > 1:
            from rlvla3.runtime.trainer_group import TrainerGroup

            s.trainer = TrainerGroup(backend, cfg, seed, threads, placement=gpus)
        elif with_trainer:
            s.trainer = backend.actor(Trainer, cfg, seed, threads, **(gpus.trainer(0) if gpus is not None else {}))
    s.weights = WeightPublisher(backend, s.trainer, s.generators, cfg, s.placement)
    s.weights.open()
    s.instructions = wait_started(s)
    return s


def host_trainer_and_generator(s: Session, host) -> None:
    """The session's trainer and its one generator are two roles of `host` (a TrainerHost actor)."""
    s.trainer, s.generators = RoleView(host, "trainer"), [RoleView(host, "generator")]

    def no_replacement(i: int, incarnation: int = 0):
        raise RuntimeError("generator 0 runs in the trainer's process (generator.in_trainer_process=true) and "
                           "cannot be replaced alone: the run stops; resume it from its last checkpoint, or run "
                           "without generator.in_trainer_process to have lost generators replaced")

    s.make_generator = no_replacement


def wait_started(s: Session) -> List[str]:
    """Every worker built (simulators, models, CUDA/EGL contexts) within faults.start_timeout_s;
    otherwise RemoteTimeout names the ones still starting, with their Python stacks. Later
    deadlines (step, request) then measure work, not a slow start. Returns the task
    instructions (those of the first evaluation worker)."""
    workers = s.eval_workers + s.env_workers
    models = list(s.generators) + ([s.trainer] if s.trainer is not None else [])
    refs = [w.task_instructions.remote() for w in workers] + [m.get_version.remote() for m in models]
    out = s.backend.get(refs, timeout_s=s.cfg.faults.start_timeout_s, what="start of the workers",
                        actors=workers + models)
    return out[0]
