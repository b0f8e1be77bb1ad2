"""Stopping a run on purpose (Ctrl-C / SIGTERM) and when the trainer is lost.

First SIGINT/SIGTERM: the schedule stops at its next tick, the run writes a checkpoint and
summary.json (`stopped_by`) and exits; `rlvla3 train --resume RUN_DIR` continues it. A
second signal interrupts at once (KeyboardInterrupt), for a run that is stuck.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class TrainerLost(RuntimeError):
    """The trainer process died: the run stops; the last checkpoint is what survives."""


@contextmanager
def stop_on_signals(training):
    """Route SIGINT/SIGTERM to `training.stop_requested` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if training.stop_requested:
            raise KeyboardInterrupt(f"second {name}: stopping now, without a checkpoint")
        training.stop_requested = name
        training.logger.print(f"{name} received: stopping after the current step, writing a checkpoint "
                          f"(send it again to abort at once)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    training.rearm_signals = lambda: [signal.signal(s, handler) for s in old]  # ray.init installs its own SIGTERM
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def trainer_alive(session, timeout_s: float = 10.0) -> bool:
    b = session.backend
    if getattr(b, "name", "") != "ray":
        return True
    ref = session.trainer.get_version.remote()
    ready, _ = b.ray.wait([ref], timeout=timeout_s)
    if not ready:
        return True  # busy, not dead
    try:
        b.ray.get(ref)
        return True
    except Exception:
        return False
