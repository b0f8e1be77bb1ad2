"""One GPU shared by the trainer and a generator: two processes (as rlvla3 runs them now) against
one process with the generator on a thread and a CUDA stream of its own.

In `full` on one GPU the trainer trains at about half its speed alone beside a generator whose
forward passes would take a quarter of the device alone (docs/benchmarks/gpu-dec07e-libero-oft1b-graphs):
two processes are two CUDA contexts, which the device time-slices, and a slice of the generator's
batch of 2 holds the whole GPU. Kernels of one context on two streams can run side by side. This
measures whether that frees the trainer, before the roles are rearranged for it.

    carry [".device/vlapack"]
    mkdir -p /tmp/vp && tar xJf .device/vlapack/vla.tar.xz -C /tmp/vp && \\
      PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD HF_HUB_OFFLINE=1 python3 tools/device_share_check.py oft-1b $OUT

Cases (SECONDS each): the trainer alone; the generator alone, paced at RATE forwards/s of batch
BATCH (the in-pipeline rate of gpu-dec07e's `full`: 23/s at 1.7); both, the generator in a second
process; both, the generator on a thread of this process with its own stream (normal priority,
then high). Writes OUT/share_POLICY.json after every case.
"""

import json
import os
import sys
import threading
import time

import numpy as np
import torch
import torch.multiprocessing as mp

from rlvla3.bench.policy_bench import INSTRUCTIONS
from rlvla3.bench.synthetic import random_obs
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config

SECONDS = float(os.environ.get("SECONDS_PER_CASE", 25))
RATE = float(os.environ.get("RATE", 23))
BATCH = int(os.environ.get("BATCH", 2))
DEVICE = os.environ.get("DEVICE", "cuda")  # cpu: a smoke test of the script (no streams, no graphs)


def overrides(name, micro=28):
    fam = name.split("-")[0]
    return [f"policy={name}", f"policy.{fam}.dtype=bfloat16", "env.type=libero", "env.libero.image_size=128",
            "sft.enabled=false", f"policy.device={DEVICE}", f"algo.micro_batch={micro}", "algo.global_batch=392",
            "algo.update_epochs=1"] + (["generator.cuda_graphs=true"] if DEVICE == "cuda" else [])


def make_generator(name):
    policy = build_policy(load_config(overrides(name)).policy)
    if DEVICE == "cuda":
        policy.use_cuda_graphs(16)
    obs = random_obs(BATCH, policy.image_size, policy.proprio_dim, INSTRUCTIONS)
    for _ in range(3):
        policy.act(obs)
    return policy, obs


def paced(policy, obs, seconds, stop=None):
    """Forward passes at RATE per second (a late one starts at once); their latencies in ms."""
    lat, t_start = [], time.perf_counter()
    t_next, t_end = t_start, t_start + seconds
    while time.perf_counter() < t_end and not (stop and stop.is_set()):
        t_next = max(t_next, time.perf_counter())
        time.sleep(max(0.0, t_next - time.perf_counter()))
        t0 = time.perf_counter()
        policy.act(obs)  # returns numpy: synchronised
        lat.append(1000 * (time.perf_counter() - t0))
        t_next += 1.0 / RATE
    return lat, time.perf_counter() - t_start


def summary(run):
    lat, elapsed = run
    a = np.asarray(lat)
    return {"forwards": len(a), "per_s": len(a) / elapsed, "p50_ms": float(np.percentile(a, 50)),
            "p90_ms": float(np.percentile(a, 90)), "mean_ms": float(a.mean()), "busy": float(a.sum() / 1000 / elapsed)}


def child(name, ready, go, result):
    policy, obs = make_generator(name)
    ready.set()
    go.wait()
    result.put(paced(policy, obs, SECONDS + 5))


def train(trainer, obs):
    r = trainer.bench_train(SECONDS, obs)
    return r["samples"] / r["seconds"]


def main():
    name, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    res = {"policy": name, "device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "seconds": SECONDS, "rate": RATE,
           "batch": BATCH, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__}

    def write(key, value):
        res[key] = value
        print(key, json.dumps(value), flush=True)
        with open(os.path.join(out, f"share_{name}.json"), "w") as f:
            json.dump(res, f, indent=2)

    # the second process first, before this one holds the trainer's memory
    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=child, args=(name, ready, go, result), daemon=True)
    proc.start()
    from rlvla3.workers.trainer import Trainer

    trainer = Trainer(load_config(overrides(name)), seed=0, torch_threads=4)
    tobs = random_obs(392, trainer.policy.image_size, trainer.policy.proprio_dim, INSTRUCTIONS)
    trainer.bench_train(0.0, tobs)  # warm-up: one global batch
    write("trainer_alone_samples_per_s", train(trainer, tobs))
    if not ready.wait(300):
        raise RuntimeError("the generator process was not ready in 300 s")
    go.set()
    time.sleep(2)  # its first paced forwards
    write("two_processes_trainer_samples_per_s", train(trainer, tobs))
    write("two_processes_generator", summary(result.get(timeout=120)))
    proc.join(30)

    policy, obs = make_generator(name)
    write("generator_alone", summary(paced(policy, obs, SECONDS)))
    for label, priority in (("one_process", 0), ("one_process_high_priority", -1)) if DEVICE == "cuda" else ():
        stream, stop, box = torch.cuda.Stream(priority=priority), threading.Event(), {}

        def serve():
            with torch.cuda.stream(stream):
                box["run"] = paced(policy, obs, SECONDS + 5, stop)

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        time.sleep(2)
        write(f"{label}_trainer_samples_per_s", train(trainer, tobs))
        stop.set()
        th.join(60)
        write(f"{label}_generator", summary(box["run"]))
    # MICROS (e.g. 56 on an H200): the trainer alone at larger micro-batches (392 = 7 x 56)
    trainer = policy = None
    for micro in [int(m) for m in os.environ.get("MICROS", "").split(",") if m]:
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            trainer = Trainer(load_config(overrides(name, micro)), seed=0, torch_threads=4)
            trainer.bench_train(0.0, tobs)
            write(f"trainer_alone_micro{micro}_samples_per_s", train(trainer, tobs))
            if DEVICE == "cuda":
                write(f"trainer_alone_micro{micro}_peak_gb", torch.cuda.max_memory_allocated() / 2**30)
        except torch.OutOfMemoryError:
            write(f"trainer_alone_micro{micro}_samples_per_s", "out of memory")
        trainer = None


if __name__ == "__main__":
    main()
