"""`rlvla3 bench-weights`: how long a weight publication takes, trainer -> every generator,
through Ray's object store (float32, and bfloat16 copies: `object_store_bf16`) and through the
torch.distributed channel, side by side in one session (the same actors), and whether
inference goes on meanwhile.

Each publication is timed from the driver's call until every generator holds the new state
(stored, ready for its swap between two batches). A prober thread keeps asking generator 0
for single actions the whole time; its latencies inside publication windows against those
outside show what a publication costs the env slots.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import List, Optional

from rlvla3.bench.runner import command_line, machine_info
from rlvla3.core.stats import percentiles
from rlvla3.bench.synthetic import random_obs
from rlvla3.core.types import ActionRequest, ObsBatch
from rlvla3.envs.factory import env_config
from rlvla3.policies import family_config
from rlvla3.runtime.config import load_config

TRANSPORTS = ("object_store", "object_store_bf16", "collective")  # _bf16: generator.weight_dtype=bfloat16


class _Prober(threading.Thread):
    """Back-to-back single-sample requests to one generator: (start, latency s) pairs."""

    def __init__(self, backend, generator, obs: ObsBatch):
        super().__init__(daemon=True)
        self.backend, self.generator, self.obs = backend, generator, obs
        self.samples: List[tuple] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rid = 0
        while not self.stop.is_set():
            rid += 1
            t0 = time.perf_counter()
            self.backend.get(self.generator.infer.remote(ActionRequest(rid, 0, 0, self.obs)))
            self.samples.append((t0, time.perf_counter() - t0))


def run_weight_bench(overrides: List[str], transports: List[str], publishes: int, out_dir: str,
                     argv: Optional[List[str]] = None) -> dict:
    from rlvla3.runtime.session import start_session

    cfg = load_config([*overrides, "run.mode=full", "run.backend=ray", "generator.weight_transport=collective",
                       "eval.num_workers=1"])
    os.makedirs(out_dir, exist_ok=True)
    s = start_session(cfg, with_train_envs=False)
    try:
        obs = random_obs(1, env_config(cfg).image_size, family_config(cfg.policy).proprio_dim, s.instructions)
        prober = _Prober(s.backend, s.generators[0], obs)
        prober.start()
        time.sleep(2.0)  # a baseline of undisturbed requests
        windows, rows = [], []
        for transport in transports:
            s.weights.transport = "object_store" if transport.startswith("object_store") else transport
            s.weights.wire_dtype = "bfloat16" if transport == "object_store_bf16" else "float32"
            s.weights.publish(wait=True)  # warm-up: first allocations, connections
            times = []
            for _ in range(publishes):
                t0 = time.perf_counter()
                s.weights.publish(wait=True)
                t1 = time.perf_counter()
                times.append(t1 - t0)
                windows.append((t0, t1))
                time.sleep(0.5)  # undisturbed requests between publications
            size = None
            if transport.startswith("object_store"):  # what the last publication carried, as the trainer packed it
                size = s.backend.get(s.trainer.stats.remote())["weights_bytes"]
            rows.append({"transport": transport, "publish_s_median": percentiles(times, (50,))["p50"], "bytes": size,
                         "publish_s_max": max(times),
                         "publish_s_all": times})
        prober.stop.set()
        prober.join(timeout=60)
        report = s.weights.report()
        store = s.backend.ray.cluster_resources().get("object_store_memory")  # a publication above it spills
    finally:
        s.shutdown()
    inside = [lat for t, lat in prober.samples if any(a <= t < b for a, b in windows)]
    outside = [lat for t, lat in prober.samples if not any(a <= t < b for a, b in windows)]
    result = {
        "command": command_line(argv), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                          time.gmtime()),
        "machine": machine_info(),
        "overrides": overrides,
        "policy": cfg.policy.type, "generators": cfg.generator.num_generators, "device": cfg.policy.device,
        "channel_backend": report.get("backend"), "bytes_per_publish": report.get("bytes_per_send"),
        "bucket_mb": cfg.generator.weight_bucket_mb, "transports": rows,
        "object_store_mib": round(store / 2**20) if store else None,
        "inference_during_publish": _latency(inside), "inference_outside_publish": _latency(outside),
    }
    with open(os.path.join(out_dir, "weights.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out_dir, "weights.md"), "w") as f:
        f.write(table(result))
    return result


def _latency(seconds: List[float]) -> dict:
    if not seconds:
        return {"requests": 0, "latency_ms_p50": None, "latency_ms_max": None}
    return {"requests": len(seconds), "latency_ms_p50": round(1000 * percentiles(seconds, (50,))["p50"], 2),
            "latency_ms_max": round(1000 * max(seconds), 2)}


def table(r: dict) -> str:
    store = f"; Ray object store {r['object_store_mib']} MiB" if r.get("object_store_mib") else ""
    lines = [f"# `rlvla3 bench-weights`: {r['policy']} policy, {r['generators']} generator(s), device {r['device']}",
             "", f"- command: `{r['command']}`", f"- date: {r['date']}",
             f"- machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs{store}",
             f"- collective channel backend: {r['channel_backend']}, buckets of {r['bucket_mb']} MiB", "",
             "| transport | MiB per publication | publish median (s) | max (s) | MiB/s per generator (median) |",
             "|---|---:|---:|---:|---:|"]
    for row in r["transports"]:
        med, row_mb = row["publish_s_median"], (row.get("bytes") or r["bytes_per_publish"] or 0) / 2**20
        lines.append(f"| {row['transport']} | {row_mb:.1f} | {med:.3f} | {row['publish_s_max']:.3f} | {row_mb / med:.0f} |")
    i, o = r["inference_during_publish"], r["inference_outside_publish"]
    lines += ["", "Generator 0 kept serving single-sample requests throughout (latency p50 / max):",
              f"- during publications: {i['requests']} requests, {i['latency_ms_p50']} / {i['latency_ms_max']} ms",
              f"- outside: {o['requests']} requests, {o['latency_ms_p50']} / {o['latency_ms_max']} ms", ""]
    return "\n".join(lines)
