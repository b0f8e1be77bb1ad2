"""Python stacks of a live worker process on request (SIGUSR2), for the deadlines.

Every Ray worker process runs `install()` at start (a `worker_process_setup_hook`): on
SIGUSR2, `faulthandler` writes every thread's stack to `stack_path(pid)`. It does so from
the signal handler, so a process stuck in C code (a simulator, a socket read, a lock) still
answers. The driver sends the signal when a wait on that process expires and prints the file
(`rlvla3/runtime/remote_wait.py`).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import tempfile

SIGNAL = signal.SIGUSR2


def stack_path(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), "rlvla3-stacks", f"{pid}.txt")


def install() -> None:
    path = stack_path(os.getpid())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "w")  # kept open for the process's life: faulthandler writes to its fd
    faulthandler.register(SIGNAL, file=f, all_threads=True, chain=False)
    install.file = f  # keep a reference
