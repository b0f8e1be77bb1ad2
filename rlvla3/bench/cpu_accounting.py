"""Where the machine's CPU goes during a benchmark window: cores used per process role.

On a machine where every stage shares the same few cores, a stage's standalone bound is only
reachable if the others leave it its share; this tells how much each role actually took.
Linux only (reads /proc); elsewhere `CpuWindow.result()` is None. Ray names its worker
processes `ray::ClassName...`, which gives the role; Ray's own daemons (raylet, GCS, agents)
are grouped, and everything else on the machine is `other`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, Optional, Tuple

RAY_AGENTS = ("DashboardAgent", "RuntimeEnvAgent")  # Ray's own helpers, named like workers
RAY_DAEMONS = ("raylet", "gcs_server", "dashboard", "runtime_env", "log_monitor", "monitor.py")


def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def role_of(cmdline: str, pid: int, driver_pid: int) -> str:
    if pid == driver_pid:
        return "driver"
    if cmdline.startswith("ray::"):
        name = cmdline[5:].split(".")[0].split(" ")[0].strip()
        if name in RAY_AGENTS:
            return "ray daemons"
        return "ray idle workers" if name == "IDLE" else (name or "ray worker")
    if any(d in cmdline for d in RAY_DAEMONS):
        return "ray daemons"
    return "other"


def process_cpu_s(pid: int) -> Optional[float]:
    """User + system CPU seconds of a process (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may contain spaces
        return (int(fields[11]) + int(fields[12])) / _ticks()  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu_s() -> Tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine (all cores), from one read of /proc/stat.
    Busy: running its own work (user..softirq, minus idle and iowait; guest is inside user).
    Stolen: the hypervisor ran something else while this VM was ready to run; on a shared VM
    every stage slows down by this much, whatever its own CPU accounting says."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    return (sum(v[:7]) - v[3] - v[4]) / _ticks(), v[7] / _ticks()


def snapshot(driver_pid: Optional[int] = None) -> Dict[int, Tuple[str, float]]:
    driver_pid = os.getpid() if driver_pid is None else driver_pid
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        cpu = process_cpu_s(pid)
        if cpu is not None and cmd:  # kernel threads have no command line
            out[pid] = (role_of(cmd, pid, driver_pid), cpu)
    return out


def cores_by_role(before: Dict[int, Tuple[str, float]], after: Dict[int, Tuple[str, float]],
                  seconds: float) -> Dict[str, float]:
    """Mean cores each role used between two snapshots (processes alive at both)."""
    used: Dict[str, float] = {}
    for pid, (role, cpu1) in after.items():
        if pid in before:
            used[role] = used.get(role, 0.0) + (cpu1 - before[pid][1]) / seconds
    return {k: round(v, 3) for k, v in sorted(used.items(), key=lambda kv: -kv[1])}


class CpuWindow:
    """Snapshots at t0 and t1 (wall clock) on a thread of its own; `result()` after t1 or stop."""

    def __init__(self, t0: float, t1: float):
        self.t0, self.t1 = t0, t1
        self.stop_event = threading.Event()
        self.out: Optional[dict] = None
        self.enabled = os.path.isdir("/proc/self") and os.path.exists("/proc/stat")
        self.thread = threading.Thread(target=self._run, daemon=True, name="cpu-window")
        if self.enabled:
            self.thread.start()

    def _run(self) -> None:
        if self.stop_event.wait(max(0.0, self.t0 - time.time())):
            return  # stopped before the window began
        a, (ma, sa), ta = snapshot(), machine_cpu_s(), time.time()
        self.stop_event.wait(max(0.0, self.t1 - time.time()))
        b, (mb, sb), tb = snapshot(), machine_cpu_s(), time.time()
        dt = max(tb - ta, 1e-6)
        self.out = {"seconds": round(dt, 2), "machine_cores": os.cpu_count(),
                    "machine_busy_cores": round((mb - ma) / dt, 3), "machine_steal_cores": round((sb - sa) / dt, 3),
                    "by_role": cores_by_role(a, b, dt)}

    def result(self) -> Optional[dict]:
        if not self.enabled:
            return None
        self.stop_event.set()
        self.thread.join(timeout=30)
        return self.out
