"""Fault injection in the generator and trainer (`faults.generator_*`, `faults.trainer_*`): crash
or stop answering once a scheduled count is reached. The env faults live in `envs/faults.py`."""

import os

from rlvla3.envs.faults import CRASH_EXIT_CODE


def crash_process_if(scheduled: int, count: int) -> None:
    """Exit the process (no cleanup, as a crash) once `count` reaches a scheduled `scheduled` > 0."""
    if scheduled and count >= scheduled:
        print(f"fault injection: process {os.getpid()} exits after {count} (scheduled {scheduled})", flush=True)
        os._exit(CRASH_EXIT_CODE)


def hang_if(scheduled: int, count: int) -> bool:
    """True once `count` reaches a scheduled `scheduled` > 0: the caller then stops answering
    (a wedged forward pass: the process stays alive and answers pings)."""
    if scheduled and count >= scheduled:
        print(f"fault injection: process {os.getpid()} hangs after {count} (scheduled {scheduled})", flush=True)
        return True
    return False
