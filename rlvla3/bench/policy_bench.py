"""`rlvla3 bench-policy`: one policy's inference throughput against batch size and its
training throughput against micro-batch size, on the configured device (GPU numbers go to
docs/benchmarks/). Inference is `policy.act` (sampling included) on synthetic observations
of the env's shape; training is the trainer's PPO update (`Trainer.train_batch`: forward,
backward and one AdamW step per global batch of `accum` micro-batches)."""

from __future__ import annotations

import gc
import json
import os
import platform
import time
from typing import List

import torch

from rlvla3.bench.synthetic import random_obs
from rlvla3.policies import build_policy, family_config
from rlvla3.runtime.config import load_config

INSTRUCTIONS = ["put the black bowl on the plate", "open the top drawer of the cabinet", "reach the red block"]


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def bench_inference(policy, batches: List[int], seconds: float) -> List[dict]:
    rows = []
    for n in batches:
        obs = random_obs(n, policy.image_size, policy.proprio_dim, INSTRUCTIONS)
        _reset_memory(policy.device)
        for _ in range(2):  # warm-up: kernels, allocator, compile
            policy.act(obs)
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or calls < 3:
            policy.act(obs)  # returns numpy: the device is synchronised
            calls += 1
        dt = time.perf_counter() - t0
        rows.append({"batch": n, "samples_per_s": calls * n / dt, "ms_per_call": 1000 * dt / calls,
                     "peak_mem_gb": _peak_gb(policy.device)})
    return rows


def bench_graphs(policy, batches: List[int], seconds: float) -> dict:
    """`bench_inference` with generator.cuda_graphs, and how the deterministic acts of the graphed
    forward compare with the eager ones on one batch: the share of equal action tokens (None where
    two eager calls already differ: pi0's chain starts from fresh noise) and the largest log-prob
    difference (bfloat16 kernels may differ at a bin edge)."""
    obs = random_obs(max(batches), policy.image_size, policy.proprio_dim, INSTRUCTIONS, seed=1)
    eager, again = policy.act(obs, deterministic=True), policy.act(obs, deterministic=True)
    graphs = policy.use_cuda_graphs(max(batches))
    rows = bench_inference(policy, batches, seconds)
    out = policy.act(obs, deterministic=True)
    same = float((out.tokens == eager.tokens).mean()) if (again.tokens == eager.tokens).all() else None
    return {"inference": rows, "buckets": graphs.captured, "capture_s": graphs.capture_s,
            "greedy_tokens_equal": same, "greedy_logp_max_abs_diff": float(abs(out.logp - eager.logp).max()),
            "eager_calls": graphs.eager_calls}


def bench_training(cfg, micros: List[int], accum: int, seconds: float) -> List[dict]:
    from rlvla3.workers.trainer import Trainer

    rows = []
    for m in micros:
        cfg.algo.micro_batch, cfg.algo.global_batch, cfg.algo.update_epochs = m, m * accum, 1
        device = torch.device(cfg.policy.device)
        _reset_memory(device)
        trainer = Trainer(cfg, seed=0, torch_threads=torch.get_num_threads())
        pol = trainer.policy
        try:
            obs = random_obs(m * accum, pol.image_size, pol.proprio_dim, INSTRUCTIONS)
            trainer.bench_train(0.0, obs)  # warm-up: one global batch
            _reset_memory(device)
            r = trainer.bench_train(seconds, obs)
            rows.append({"micro_batch": m, "global_batch": m * accum, "samples_per_s": r["samples"] / r["seconds"],
                         "peak_mem_gb": _peak_gb(device)})
        except torch.OutOfMemoryError:
            rows.append({"micro_batch": m, "global_batch": m * accum, "samples_per_s": None, "peak_mem_gb": "OOM"})
        del trainer, pol
    return rows


def run_policy_bench(overrides: List[str], batches: List[int], micros: List[int], seconds: float, accum: int,
                     out_dir: str, label: str = "") -> dict:
    cfg = load_config(overrides)
    fam = family_config(cfg.policy)
    t0 = time.perf_counter()
    policy = build_policy(cfg.policy)
    build_s = time.perf_counter() - t0
    model = policy.model
    result = {
        "label": label or f"{cfg.policy.type}-{getattr(fam, 'size', 'tiny')}",
        "overrides": overrides,
        "policy_type": cfg.policy.type,
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in policy.parameters()),
        "dtype": getattr(fam, "dtype", "float32"),
        "device": str(policy.device),
        "device_name": torch.cuda.get_device_name(policy.device) if policy.device.type == "cuda" else platform.processor(),
        "chunk_size": fam.chunk_size, "action_dim": fam.action_dim, "image_size": fam.image_size,
        "build_s": build_s,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
    }
    result["inference"] = bench_inference(policy, batches, seconds)
    if cfg.generator.cuda_graphs:  # the same policy again, its act replayed from CUDA graphs
        result["cuda_graphs"] = bench_graphs(policy, batches, seconds)
    del policy, model
    result["training"] = bench_training(cfg, micros, accum, seconds)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{result['label']}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return result


def table(results: List[dict]) -> str:
    lines = ["| policy | params | trainable | dtype | batch | act samples/s | ms/call | peak GB |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for row in r["inference"]:
            lines.append(f"| {r['label']} | {r['params_total'] / 1e6:.0f}M | {r['params_trainable'] / 1e6:.0f}M | "
                         f"{r['dtype']} | {row['batch']} | {row['samples_per_s']:.1f} | {row['ms_per_call']:.1f} | "
                         f"{row['peak_mem_gb']:.1f} |")
        for row in r.get("cuda_graphs", {}).get("inference", []):
            lines.append(f"| {r['label']}, CUDA graphs | | | {r['dtype']} | {row['batch']} | "
                         f"{row['samples_per_s']:.1f} | {row['ms_per_call']:.1f} | {row['peak_mem_gb']:.1f} |")
    for r in results:
        g = r.get("cuda_graphs")
        if g:
            same = "n/a" if g["greedy_tokens_equal"] is None else f"{100 * g['greedy_tokens_equal']:.1f}%"
            lines.append(f"\n{r['label']}, CUDA graphs: buckets {g['buckets']}, captured in {g['capture_s']:.1f} s; "
                         f"deterministic acts against the eager forward's: action tokens equal {same}, "
                         f"log-probs within {g.get('greedy_logp_max_abs_diff', float('nan')):.2g}")
    lines += ["", "| policy | micro-batch | global batch | train samples/s | peak GB |", "|---|---:|---:|---:|---:|"]
    for r in results:
        for row in r["training"]:
            sps = "OOM" if row["samples_per_s"] is None else f"{row['samples_per_s']:.1f}"
            mem = row["peak_mem_gb"] if isinstance(row["peak_mem_gb"], str) else f"{row['peak_mem_gb']:.1f}"
            lines.append(f"| {r['label']} | {row['micro_batch']} | {row['global_batch']} | {sps} | {mem} |")
    return "\n".join(lines) + "\n"
