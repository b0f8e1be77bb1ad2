"""Where workers run: Ray actors (default; the same command works on a cluster) or, for
debugging, plain objects in this process behind the same `.method.remote()` calls."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from rlvla3.process.heap import heap_env, keep_freed_memory


class _Done:
    """A finished local call, standing in for a Ray ObjectRef."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _LocalMethod:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args, **kwargs) -> _Done:
        # Like Ray, a finished result passed as an argument arrives as its value.
        args = [a.value if isinstance(a, _Done) else a for a in args]
        kwargs = {k: v.value if isinstance(v, _Done) else v for k, v in kwargs.items()}
        return _Done(self._fn(*args, **kwargs))


class LocalActor:
    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name: str):
        return _LocalMethod(getattr(self._obj, name))


class LocalBackend:
    name = "local"

    def actor(self, cls, *args, num_cpus: float = 0, num_gpus: float = 0, placement=None, **kwargs) -> LocalActor:
        return LocalActor(cls(*args, **kwargs))

    def get(self, refs, timeout_s: Optional[float] = None, what: str = "", actors: Sequence = ()):
        if isinstance(refs, list):
            return [r.value for r in refs]
        return refs.value

    def put(self, value):
        return value

    def shutdown(self) -> None:
        pass


class RayBackend:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, heap_keep_mb: int = 0,
                 worker_nice: int | None = None, call_timeout_s: float = 600.0, object_store_mb: int = 0):
        import ray

        self.ray = ray
        self.call_timeout_s = call_timeout_s  # faults.call_timeout_s: the deadline of a wait with none of its own
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True, configure_logging=False)
            if not address:  # embedded single-machine cluster
                kwargs.update(num_cpus=num_cpus or os.cpu_count())
                if object_store_mb:  # process.object_store_mb; 0: Ray sizes it
                    kwargs["object_store_memory"] = object_store_mb << 20
                if worker_nice is not None and "RAY_worker_niceness" not in os.environ:  # an exported value wins
                    kwargs["_system_config"] = {"worker_niceness": worker_nice}
            # Workers must import rlvla3 from this checkout even when it is not installed.
            pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env = {"PYTHONPATH": os.pathsep.join(filter(None, [pkg_root, os.environ.get("PYTHONPATH")])),
                   "OMP_NUM_THREADS": "1",
                   # glibc gives each thread that allocates its own heap arena; Ray's threads then
                   # fragment a worker's memory a little with every call (measured: +9-12 MB of
                   # free-but-kept heap per 30k calls of a trivial actor). Two arenas keep it
                   # bounded; set MALLOC_ARENA_MAX yourself to override.
                   "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
                   **heap_env(heap_keep_mb)}  # process.heap_keep_mb
            # Every worker answers SIGUSR2 with its Python stacks (for an expired deadline).
            ray.init(address=address, runtime_env={"env_vars": env,
                                                   "worker_process_setup_hook": "rlvla3.process.stack_dump.install"},
                     **kwargs)

    def actor(self, cls, *args, num_cpus: float = 0, num_gpus: float = 0, placement=None, **kwargs):
        # num_cpus=0 by default: on a laptop the roles oversubscribe the cores on purpose;
        # each actor limits its own torch threads. num_gpus makes Ray set CUDA_VISIBLE_DEVICES.
        # placement: (placement group, bundle index): the GPU the actor's share comes from.
        opts: dict[str, Any] = dict(num_cpus=num_cpus, num_gpus=num_gpus)
        if placement is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            group, bundle = placement
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle)
        return self.ray.remote(**opts)(cls).remote(*args, **kwargs)

    def get(self, refs, timeout_s: Optional[float] = None, what: str = "", actors: Sequence = ()):
        """ray.get with a deadline (`timeout_s`, else faults.call_timeout_s). On expiry raises
        RemoteTimeout naming `what` and the `actors` (those whose refs are not ready, when
        `refs` is a list of one ref per actor) with their Python stacks."""
        from ray.exceptions import GetTimeoutError

        from rlvla3.runtime.remote_wait import timeout_error

        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        try:
            return self.ray.get(refs, timeout=timeout)
        except GetTimeoutError:
            pass
        if isinstance(refs, list) and len(actors) == len(refs):
            ready = set(self.ray.wait(list(refs), num_returns=len(refs), timeout=0)[0])
            actors = [a for a, r in zip(actors, refs) if r not in ready]
        knob = "faults.call_timeout_s" if timeout_s is None else "its deadline"
        raise timeout_error(what or "a remote call", timeout, knob, actors)

    def put(self, value):
        return self.ray.put(value)

    def shutdown(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def make_backend(name: str, heap_keep_mb: int = 0, worker_nice: int | None = None, call_timeout_s: float = 600.0,
                 object_store_mb: int = 0):
    """`worker_nice`: the nice value an embedded Ray cluster starts its workers at (None: Ray's
    default, 15); a cluster that is already running keeps its own."""
    keep_freed_memory(heap_keep_mb)  # process.heap_keep_mb in this process too: the driver unpacks every episode
    if name == "local":
        return LocalBackend()
    if name == "ray":
        return RayBackend(heap_keep_mb=heap_keep_mb, worker_nice=worker_nice, call_timeout_s=call_timeout_s,
                          object_store_mb=object_store_mb)
    raise ValueError(f"run.backend must be 'ray' or 'local', got {name!r}")
