"""Waits on other processes that end: deadlines, and what the driver says when one expires.

Every blocking wait of the driver on a Ray actor goes through `RayBackend.get`, which
bounds it (`faults.call_timeout_s` unless the caller gives its own deadline). When a
deadline expires, the actors that did not answer are named with what they were asked, and
their Python stacks are printed (`rlvla3/process/stack_dump.py`), so that a hang is a
diagnosis, not a silent terminal.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence


class RemoteTimeout(RuntimeError):
    """A worker did not answer within its deadline; the run stops (exit code 4)."""


class WorkersLost(RuntimeError):
    """Workers kept failing past faults.max_worker_restarts; the run stops (exit code 4)."""


def actor_label(actor) -> str:
    """'EnvWorker 3f2a1b (pid 1234)' for a Ray actor handle, as far as it is known."""
    try:
        from ray._private import state

        info = state.actors(actor._actor_id.hex())
        return f"{info.get('ActorClassName', 'actor')} {actor._actor_id.hex()[:8]} (pid {info.get('Pid')})"
    except Exception:
        return repr(actor)


def actor_stack(actor, wait_s: float = 2.0) -> str:
    """Every thread's Python stack of a Ray actor's process on this node; '' if not reachable."""
    try:
        import ray
        from ray._private import state

        from rlvla3.process.stack_dump import SIGNAL, stack_path

        info = state.actors(actor._actor_id.hex())
        pid = int(info.get("Pid") or 0)
        if not pid or info.get("Address", {}).get("NodeID") != ray.get_runtime_context().get_node_id():
            return ""
        path = stack_path(pid)
        size0 = os.path.getsize(path) if os.path.exists(path) else 0
        os.kill(pid, SIGNAL)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if os.path.exists(path) and os.path.getsize(path) > size0:
                time.sleep(0.2)  # let every thread's stack be written
                with open(path) as f:
                    f.seek(size0)
                    return f.read()
            time.sleep(0.05)
    except Exception as e:  # the diagnosis must never hide the timeout itself
        return f"(no stack: {e!r})"
    return ""


def timeout_error(what: str, timeout_s: float, knob: str, actors: Sequence = ()) -> RemoteTimeout:
    """The error of an expired deadline, also printed: what was waited for, for how long, the
    actors that did not answer and their stacks."""
    lines = [f"{what}: no answer within {timeout_s:.0f} s ({knob})"]
    for a in actors:
        lines.append(f"  not answering: {actor_label(a)}")
        stack = actor_stack(a)
        if stack:
            lines.append("  its Python stack:\n" + "\n".join("    " + ln for ln in stack.rstrip().splitlines()))
    print("\n".join(lines), file=sys.stderr, flush=True)
    return RemoteTimeout("\n".join(lines))
