"""Soak run: `rlvla3 train` on tabletop-emulated for N minutes while the RSS of every worker
process is sampled; then SIGTERM (graceful stop) and a report of memory and throughput.

    python tools/soak.py --minutes 30 --out docs/reliability/soak [key=value ...]

Writes OUT/soak.json and OUT/soak.md: RSS per process at the end of warm-up and at the end,
the trainer's own heap accounting (OUT/trainer_memory.jsonl, trainer.memory_log),
env steps/s per window, and the run's sample accounting (nothing may be lost).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from rlvla3.bench.cpu_accounting import cores_by_role, machine_cpu_s, snapshot
from rlvla3.bench.workloads import WORKLOADS

TITLES = ("ray::EnvWorker", "ray::Generator", "ray::AsyncGenerator", "ray::Trainer", "ray::EvalWorker")


def trend(points: list) -> dict:
    """Least-squares slope (MB per hour) of (t s, MB) points, and the means of their first and
    second halves: a leak shows as a slope that stays positive in the second half too."""
    if len(points) < 4:
        return {}
    n, half = len(points), len(points) // 2

    def slope(pts):
        ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
        var = sum((t - mt) ** 2 for t in ts)
        return 3600 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var else 0.0

    return {"slope_mb_per_h": slope(points), "slope_second_half_mb_per_h": slope(points[half:]),
            "mean_first_half_mb": sum(p[1] for p in points[:half]) / half,
            "mean_second_half_mb": sum(p[1] for p in points[half:]) / (n - half)}


def heap_trends(rows: list, t0: float, warmup_s: float, trim_every: int) -> dict:
    """Trends of the trainer's own heap accounting (trainer.memory_log, workers/memory_probe.py)
    after warm-up. Anonymous memory right after a heap trim (`post_trim_anon_mb`) is the
    baseline without the churn of the last few steps, which sampled RSS mixes in."""
    rows = [r for r in rows if r["t"] - t0 >= warmup_s]
    out = {}
    for key in ("anon_mb", "heap_in_use_mb", "heap_free_mb", "python_objects"):
        pts = [(r["t"] - t0, r[key]) for r in rows if key in r]
        if pts:
            out[key] = {"first": pts[0][1], "last": pts[-1][1], **trend(pts)}
    if trim_every > 0:
        pts = [(r["t"] - t0, r["anon_mb"]) for r in rows if r.get("updates", 1) % trim_every == 0]
        if pts:
            out["post_trim_anon_mb"] = {"first": pts[0][1], "last": pts[-1][1], **trend(pts)}
    return out


def calibrate_ms(rounds: int = 20_000) -> float:
    """CPU milliseconds this process spends on a fixed piece of work. On a shared VM the host
    can slow the vCPUs; a throughput trend means little unless this stays flat with it."""
    c0 = time.process_time()
    x = 0
    for i in range(rounds):
        x += i * i % 7
    return (time.process_time() - c0) * 1000


_TORCH_PROBE = None


def calibrate_torch_ms() -> float:
    """CPU milliseconds of a fixed convolution and matmul on one thread: the kind of work the
    trainer does, which also slows when a neighbour on the host takes cache and memory
    bandwidth (the Python loop above barely touches memory)."""
    global _TORCH_PROBE
    import torch

    if _TORCH_PROBE is None:
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        _TORCH_PROBE = (torch.randn(8, 32, 32, 32, generator=g), torch.randn(64, 32, 3, 3, generator=g),
                        torch.randn(512, 512, generator=g))
    x, w, m = _TORCH_PROBE
    c0 = time.process_time()
    with torch.no_grad():
        torch.nn.functional.conv2d(x, w, padding=1)
        m @ m
    return (time.process_time() - c0) * 1000


def cpu_windows(snaps: list, windows: list) -> list:
    """Cores used by each process role in each throughput window, from the /proc snapshots
    nearest to the window's bounds; with the calibration measured in it and the cores the
    hypervisor stole (the calibration counts CPU time only, so it cannot see steal)."""
    out = []
    for w in windows:
        inside = [x for x in snaps if w["from_s"] <= x[0] <= w["to_s"]]
        if len(inside) < 2:
            continue
        (ta, a, _, sa, _), (tb, b, _, sb, _) = inside[0], inside[-1]
        out.append({"from_s": w["from_s"], "to_s": w["to_s"], "cores_by_role": cores_by_role(a, b, tb - ta),
               "calibration_ms_median": _median([x[2] for x in inside]),
               "steal_cores": round((sb - sa) / (tb - ta), 3),
               "calibration_torch_ms_median": _median([x[4] for x in inside])})
    return out


def _median(xs: list) -> float:
    return sorted(xs)[len(xs) // 2]


def rss_mb(pid: int) -> tuple | None:
    """(resident, anonymous, shared-memory) MB. Ray's object store is shared memory mapped into
    every worker that reads from it, so resident memory also grows as a worker touches more of
    the store; anonymous memory is the process's own (a leak shows there)."""
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("VmRSS", "RssAnon", "RssShmem"):
                    vals[key] = int(line.split()[1]) / 1024
    except OSError:
        return None
    if "VmRSS" not in vals:
        return None
    return vals["VmRSS"], vals.get("RssAnon", float("nan")), vals.get("RssShmem", float("nan"))


def worker_processes(driver: int) -> dict:
    """{pid: title} of the run's Ray workers and its driver."""
    out = {driver: "driver"}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(TITLES):
            out[int(pid)] = cmd.split()[0]
    return out


def throughput_windows(metrics_path: str, window_s: float) -> list:
    rows = []
    with open(metrics_path) as f:
        for line in f:
            d = json.loads(line)
            if "throughput/env_steps_per_s" in d or "env_steps" in d:
                rows.append((d["wall_s"], d["env_steps"]))
    out, start = [], None
    for t, steps in rows:
        if steps == 0:
            continue
        if start is None:
            start = (t, steps)
            continue
        if t - start[0] >= window_s:
            out.append({"from_s": round(start[0]), "to_s": round(t), "env_steps_per_s": (steps - start[1]) / (t - start[0])})
            start = (t, steps)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=3.0, help="RSS baseline is taken after this")
    ap.add_argument("--sample-s", type=float, default=20.0)
    ap.add_argument("--window-minutes", type=float, default=5.0, help="throughput window")
    ap.add_argument("--out", default="runs/soak")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cmd = [sys.executable, "-m", "rlvla3.cli.main", "train", "preset=quickstart", *WORKLOADS["tabletop-emulated"],
           "run.mode=full", "run.total_env_steps=1000000000", "run.progress=false", "eval.every_steps=0",
           "sft.epochs=3", f"run.output_dir={os.path.abspath(args.out)}", "run.name=run",
           f"trainer.memory_log={os.path.abspath(os.path.join(args.out, 'trainer_memory.jsonl'))}",
           "trainer.memory_log_every=10", *args.overrides]
    trim_every = 50  # the trainer's default heap trim interval, unless overridden
    for o in args.overrides:
        if o.startswith("trainer.trim_heap_every="):
            trim_every = int(o.split("=", 1)[1])
    log = open(os.path.join(args.out, "train.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    samples = []  # (t, {pid: (title, rss)})
    cpu_snaps = []  # (t, /proc CPU snapshot, calibration ms, machine steal s, torch calibration ms)
    while time.time() - t0 < args.minutes * 60 and proc.poll() is None:
        time.sleep(args.sample_s)
        procs = worker_processes(proc.pid)
        samples.append((time.time() - t0, {pid: (title, rss_mb(pid)) for pid, title in procs.items()}))
        cpu_snaps.append((time.time() - t0, snapshot(driver_pid=proc.pid), calibrate_ms(), machine_cpu_s()[1],
                          calibrate_torch_ms()))
    stopped_at = time.time() - t0
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # graceful: checkpoint, summary.json
    try:
        rc = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -9
    stop_s = time.time() - t0 - stopped_at
    run_dir = os.path.join(args.out, "run")
    # RSS per process: first sample after warm-up vs last sample
    per_pid: dict = {}
    for t, snap in samples:
        for pid, (title, parts) in snap.items():
            if parts is None:
                continue
            e = per_pid.setdefault(pid, {"title": title, "first": None, "last": None})
            if t >= args.warmup_minutes * 60 and e["first"] is None:
                e["first"], e["first_parts"] = (round(t), parts[0]), (round(t), parts)
            e["last"], e["last_parts"] = (round(t), parts[0]), (round(t), parts)
    procs = [dict(pid=pid, **e) for pid, e in sorted(per_pid.items(), key=lambda kv: kv[1]["title"]) if e["first"]]
    summary = {}
    if os.path.isfile(os.path.join(run_dir, "summary.json")):
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    windows = throughput_windows(os.path.join(run_dir, "metrics.jsonl"), args.window_minutes * 60)
    # metrics' wall_s counts from the run's start, a little after t0: close enough for 5-min windows
    cpu = cpu_windows(cpu_snaps, windows)
    series = {str(pid): {"title": e["title"], "rss_anon_shmem_mb": [(round(t), *snap[pid][1]) for t, snap in samples
                                                                   if pid in snap and snap[pid][1] is not None]}
              for pid, e in per_pid.items()}
    for p in procs:  # trend of anonymous memory (the process's own) after warm-up
        p["anon_trend"] = trend([(t, anon) for t, _, anon, _ in series[str(p["pid"])]["rss_anon_shmem_mb"]
                                 if t >= args.warmup_minutes * 60])
    heap = {}
    mem_log = os.path.join(args.out, "trainer_memory.jsonl")
    if os.path.isfile(mem_log):
        with open(mem_log) as f:
            heap = heap_trends([json.loads(line) for line in f if line.strip()], t0, args.warmup_minutes * 60,
                               trim_every)
    report = {"command": " ".join(cmd), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "minutes": args.minutes,
              "exit_code": rc, "stop_after_sigterm_s": stop_s, "processes": procs, "throughput_windows": windows,
              "rss_series": series, "trainer_heap": heap, "cpu_windows": cpu,
              "run_summary": {k: summary.get(k) for k in ("env_steps", "train_steps", "samples_trained", "stopped_by",
                                                          "async", "faults")}}
    with open(os.path.join(args.out, "soak.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [f"# Soak run ({args.minutes:.0f} min, `full`, tabletop-emulated)", "",
             f"- command: `{report['command']}`", f"- date: {report['date']}",
             f"- exit code {rc}, stopped {stop_s:.1f} s after SIGTERM", "",
             "| process | pid | RSS MB at warm-up end (t s) | RSS MB at end (t s) | change |", "|---|---:|---:|---:|---:|"]
    for p in procs:
        (t1, r1), (t2, r2) = p["first"], p["last"]
        lines.append(f"| {p['title']} | {p['pid']} | {r1:.0f} ({t1}) | {r2:.0f} ({t2}) | {100 * (r2 - r1) / r1:+.1f}% |")
    lines += ["", "| process | anonymous MB at warm-up end | at end | shared MB at warm-up end | at end |",
              "|---|---:|---:|---:|---:|"]
    for p in procs:
        (_, a1), (_, a2) = p["first_parts"], p["last_parts"]
        lines.append(f"| {p['title']} | {a1[1]:.0f} | {a2[1]:.0f} | {a1[2]:.0f} | {a2[2]:.0f} |")
    lines += ["", "Anonymous memory after warm-up, least-squares trend:", "",
              "| process | slope MB/h | slope MB/h, second half | mean MB, first half | mean MB, second half |",
              "|---|---:|---:|---:|---:|"]
    for p in procs:
        tr = p["anon_trend"]
        if tr:
            lines.append(f"| {p['title']} | {tr['slope_mb_per_h']:+.1f} | {tr['slope_second_half_mb_per_h']:+.1f} | "
                         f"{tr['mean_first_half_mb']:.0f} | {tr['mean_second_half_mb']:.0f} |")
    if heap:
        lines += ["", "Trainer, from inside (glibc heap accounting every 10 optimizer steps, after warm-up):", "",
                  "| quantity | first | last | slope per h | slope per h, second half |", "|---|---:|---:|---:|---:|"]
        for key, tr in heap.items():
            if "slope_mb_per_h" in tr:
                lines.append(f"| {key} | {tr['first']:.1f} | {tr['last']:.1f} | {tr['slope_mb_per_h']:+.1f} | "
                             f"{tr['slope_second_half_mb_per_h']:+.1f} |")
    lines += ["", "| window (s) | env steps/s |", "|---|---:|"]
    lines += [f"| {w['from_s']}–{w['to_s']} | {w['env_steps_per_s']:.0f} |" for w in windows]
    if cpu:
        lines += ["", "CPU cores by process role per window, and the machine's speed (CPU ms of a fixed loop "
                      "in the soak script; higher = slower host):", ""]
        for c in cpu:
            roles = ", ".join(f"{r} {v:.2f}" for r, v in c["cores_by_role"].items() if v >= 0.01)
            lines.append(f"- {c['from_s']}–{c['to_s']} s: calibration {c['calibration_ms_median']:.1f} ms, "
                         f"torch {c['calibration_torch_ms_median']:.1f} ms; "
                         f"stolen by the hypervisor {c['steal_cores']:.2f} cores; {roles}")
    acc = (summary.get("async") or {})
    if acc:
        lines += ["", f"samples produced {acc.get('samples_produced')}, trained {acc.get('samples_trained')}, "
                      f"dropped stale {acc.get('samples_dropped_stale')}, left in queue {acc.get('samples_left_in_queue')},"
                      f" unstepped at stop {acc.get('samples_unstepped_at_stop')}"]
    with open(os.path.join(args.out, "soak.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
