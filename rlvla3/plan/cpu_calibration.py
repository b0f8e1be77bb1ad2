"""CpuCosts from a bench.json: what each process asks of the CPU per unit of work.

`rlvla3 bench` records, per mode, the cores each role used over the window (`modes.*.cpu.by_role`,
bench/cpu_accounting.py). Divided by the work that role did in the same window (trained samples
for the trainer, decisions for the env workers and the driver, batches for the generator) it gives
a cost per unit of work: what the process needs, not the throughput it reached, so the model can
share the cores between the processes and predict the rate. Runs recorded before the accounting
existed take the medians of the accounted 2-core VM runs with the same request transport
(`VM_MEDIANS`).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from rlvla3.plan.cpu import CpuCosts
from rlvla3.plan.profile import GeneratorCosts

MODELLED_ROLES = ("Trainer", "Generator", "AsyncGenerator", "EnvWorker", "driver")
BACKGROUND_ROLES = ("ray daemons", "ray idle workers", "IDLE", "other", "DashboardAgent", "RuntimeEnvAgent")
# Medians over the 2-core VM's `full` runs with accounting and no request coalescing, by request
# transport: the trainer's CPU per sample over its streaming time alone, the env workers' and the
# driver's CPU per decision (ms), the background (cores), the generator's CPU per request beyond
# the forward (ms). Ray calls: cpu-eta2-dec03-coalesce control / wait25 / wait50 and
# cpu-dec03-socket/sweep pairA-ray / pairB-ray (5 runs); socket: the cpu-dec03-* runs after it
# became the default, and pairA-sock / pairB-sock (24 runs).
# `python -m rlvla3.plan.cpu_calibration` prints them again.
VM_MEDIANS = {"ray": dict(trainer_ratio=1.01, env_ms=3.5, driver_ms=1.0, background=0.075, per_request_ms=2.0),
              "socket": dict(trainer_ratio=1.11, env_ms=1.31, driver_ms=0.48, background=0.11, per_request_ms=0.81)}
VM_CORES = 2.0
SOCKET_SINCE = "2026-12-03 13:42"  # generator.request_transport=socket became the default (288ae79)


WORKERS_AT_NICE_0_SINCE = "2026-12-03 22:11"  # rollout.nice > 0 starts Ray's workers at 0, not 15


def nice_weights(bench: dict, rollout_nice: int) -> tuple:
    """(trainer, rollout, driver) scheduler weights, 1.25^-nice as Linux weighs them: the driver at
    nice 0; Ray's workers at 15, or at 0 when rollout.nice > 0 (since the date above); the env
    workers and generators rollout.nice above the workers, at most 19."""
    workers = 0 if rollout_nice > 0 and bench.get("date", "")[:16] >= WORKERS_AT_NICE_0_SINCE else 15
    w = lambda nice: 1.25 ** -min(19, nice)  # noqa: E731
    return w(workers), w(workers + rollout_nice), w(0)


# Config defaults that changed, with the time they did (UTC) and the value before: a run made
# earlier ran with it unless its overrides set the key. bench.json records only the overrides.
OLD_DEFAULTS = [(SOCKET_SINCE, "generator.request_transport=ray"),
                ("2026-12-05 12:00", "algo.staleness=1")]  # algo.staleness became 2 (446be10)


# Keys an old run's bench.json spells as they were before a rename that is no longer accepted
# (runtime/deprecated_keys.py keeps the recent renames): what the run set, in today's spelling.
RETIRED_KEYS = {"run.rollout_nice": "process.nice"}  # renamed rollout.nice, then process.nice


def respell(overrides: List[str]) -> List[str]:
    out = []
    for o in overrides:
        k, sep, v = o.partition("=")
        out.append(f"{RETIRED_KEYS.get(k, k)}{sep}{v}")
    return out


def defaults_at(date: str, overrides: List[str]) -> List[str]:
    """The old defaults a run of `date` ran with (as overrides), less the keys it set itself."""
    d = date[:16]
    set_keys = {o.split("=", 1)[0] for o in overrides}
    return [o for since, o in OLD_DEFAULTS if d and d < since and o.split("=", 1)[0] not in set_keys]


def transport(bench: dict) -> str:
    """How the run's action requests travelled: its override, else the default on its date."""
    overrides = list(bench.get("overrides", []))
    for o in defaults_at(bench.get("date", ""), overrides) + overrides:
        if o.startswith("generator.request_transport="):
            return o.split("=", 1)[1]
    return "socket"


def _base(mode: str) -> str:
    return mode.split(" ")[0]


def accounted(bench: dict, mode: str) -> Optional[dict]:
    """The mode's per-role accounting: its own, else its base mode's (a straggler rerun's costs per unit of
    work are the same processes')."""
    for name in (mode, _base(mode)):
        cpu = bench["modes"].get(name, {}).get("cpu")
        if cpu and cpu.get("by_role"):
            return cpu
    return None


def cpu_costs(bench: dict, mode: str, on_cpu: bool, spd: float, envs_per_slot: int,
              gen: GeneratorCosts) -> Tuple[CpuCosts, Optional[float], str]:
    """(CpuCosts for `mode`, the generator's CPU per request or None, where they came from)."""
    cores = float(bench.get("machine", {}).get("cpus") or 0)
    tr = bench["bounds"]
    key = "trainer_streaming_samples_per_s" if _base(mode) == "full" else "trainer_samples_per_s"
    alone_ms = 1000.0 / (tr.get(key) or tr["trainer_samples_per_s"])
    cpu = accounted(bench, mode)
    name = mode if mode in bench["modes"] and bench["modes"][mode].get("cpu") else _base(mode)
    if cpu is None:
        v = VM_MEDIANS[transport(bench)]
        return (CpuCosts(cores, v["background"], on_cpu, on_cpu, v["trainer_ratio"] * alone_ms, v["env_ms"],
                         v["driver_ms"]), v["per_request_ms"] if on_cpu else None,
                f"no CPU accounting: medians of the accounted 2-core VM runs, {transport(bench)} transport "
                "(cpu_calibration.VM_MEDIANS)")
    m = bench["modes"][name]
    roles = cpu["by_role"]
    decisions = m["env_steps_per_s"] / spd  # samples (env decisions) per second
    per = lambda role, rate: 1000.0 * roles.get(role, 0.0) / rate if rate > 0 else 0.0  # noqa: E731
    # Everything the machine ran besides the modelled processes: Ray's daemons, and on a shared
    # machine other users' work that no process of this run's /proc shows (machine busy - roles).
    modelled = sum(roles.get(r, 0.0) for r in MODELLED_ROLES)
    background = max(sum(roles.get(r, 0.0) for r in BACKGROUND_ROLES), cpu.get("machine_busy_cores", 0.0) - modelled) \
        + cpu.get("machine_steal_cores", 0.0)
    costs = CpuCosts(cores, background, on_cpu, on_cpu, per("Trainer", m.get("trained_samples_per_s", 0.0)) or alone_ms,
                     per("EnvWorker", decisions), per("driver", decisions))
    per_request = None
    g = m.get("generator", {})
    if on_cpu and g.get("batches") and g.get("mean_batch") and m.get("window_s"):
        # The generator's CPU per batch beyond the forward alone and the per-batch overhead,
        # spread over the batch's requests.
        gen_cpu = roles.get("AsyncGenerator", roles.get("Generator", 0.0)) * m["window_s"] / g["batches"] * 1000.0
        n = int(round(g["mean_batch"]))
        # Outside the forward span (receiving, decoding) when the span's own CPU is recorded; else
        # everything beyond the forward in the profile.
        inside = g.get("forward_cpu_ms_mean", gen.act_s(n) * 1000.0)
        per_request = max(0.0, gen_cpu - inside) / max(g["mean_batch"] / envs_per_slot, 1.0)
    return costs, per_request, f"modes.{name}.cpu.by_role per unit of that mode's work"


def auto_cpu_mode(bench: dict) -> str:
    """The asynchronous mode whose accounting a profile takes ("none" when no mode is accounted)."""
    modes = bench.get("modes", {})
    return next((m for m in ("full", "async-rollout") if modes.get(m, {}).get("cpu")), "none")


def reference_mode(prof) -> str:
    return prof.source.rsplit("reference mode ", 1)[-1].rstrip(")")


def span_overhead_ms(bench: dict, mode: str, gen: GeneratorCosts) -> Optional[float]:
    """CPU per batch inside `mode`'s forward spans beyond the forward alone (stacking observations,
    sampling, replies), where the run recorded the span's CPU (since 2026-12-07); else None."""
    m = bench["modes"].get(mode) or bench["modes"].get(_base(mode), {})
    g = m.get("generator", {})
    if g.get("forward_cpu_ms_mean") is None or not g.get("mean_batch"):
        return None
    return max(0.0, g["forward_cpu_ms_mean"] - gen.alone_ms(int(round(g["mean_batch"]))))


def set_cpu_costs(prof, bench: dict, mode: str) -> None:
    """Give `prof` the CPU costs of `mode` (the generator's per-request cost too, when accounted)."""
    on_cpu = prof.cpu.generator_on_cpu
    if accounted(bench, mode) is None and float(bench.get("machine", {}).get("cpus") or 0) != VM_CORES:
        prof.cpu.cores = 0.0  # the medians hold only for the machine they were measured on
        prof.sources["cpu"] = "no CPU accounting and not the 2-core VM: contention not modelled"
        return
    inside = span_overhead_ms(bench, mode, prof.generator) if on_cpu else None
    if inside is not None:
        # The span's own CPU, stretched by the contention the pool models: neither `sync`'s overhead
        # at its batch of 32 (1.2-3.3 ms in three runs of one code) nor zero.
        prof.generator.overhead_ms = inside
        prof.sources["generator.overhead_ms"] = f"modes.{mode}.generator forward_cpu_ms_mean minus alone"
    elif on_cpu and reference_mode(prof).split(" ")[0] in ("async-rollout", "full"):
        # The per-batch overhead came from that mode's forward spans, stretched by contention the
        # pool now models: the CPU per request (accounted, else the VM median) replaces it.
        prof.generator.overhead_ms = 0.0
        prof.sources["generator.overhead_ms"] = "0: the accounted CPU per request carries it"
    costs, per_request, src = cpu_costs(bench, mode, on_cpu, prof.env.steps_per_decision, prof.layout.envs_per_slot,
                                        prof.generator)
    costs.trainer_weight, costs.rollout_weight, costs.driver_weight = (
        prof.cpu.trainer_weight, prof.cpu.rollout_weight, prof.cpu.driver_weight)
    prof.cpu = costs
    prof.sources["cpu"] = src
    if on_cpu:  # the per-request time read from forward spans was contention, which the pool models
        prof.generator.per_request_ms = 0.0
        prof.sources["generator.per_request_ms"] = "0: CPU per request is cpu.generator_ms_per_request"
        prof.cpu.generator_ms_per_request = per_request if per_request is not None \
            else VM_MEDIANS[transport(bench)]["per_request_ms"]


def _medians() -> dict:
    """VM_MEDIANS recomputed from the committed benchmarks (`full`, accounted, no coalescing)."""
    import json

    import numpy as np

    from rlvla3.plan.from_bench import profile_from_bench
    from rlvla3.plan.validate import bench_files

    out = {t: {k: [] for k in VM_MEDIANS[t]} for t in VM_MEDIANS}
    for path in bench_files():
        with open(path) as f:
            bench = json.load(f)
        if bench.get("machine", {}).get("cpus") != 2 or not bench["modes"].get("full", {}).get("cpu"):
            continue
        prof = profile_from_bench(path)
        if prof.layout.coalesce_ms > 0:
            continue
        explicit = any(o.startswith("generator.request_transport=") for o in bench.get("overrides", []))
        if not explicit and "2026-12-03 12:00" <= bench["date"][:16] < SOCKET_SINCE:
            continue  # the socket was tried before it became the default: transport unknown
        prof.cpu.generator_on_cpu = True
        set_cpu_costs(prof, bench, "full")
        c, o = prof.cpu, out[transport(bench)]
        o["trainer_ratio"].append(c.trainer_ms_per_sample * bench["bounds"]["trainer_streaming_samples_per_s"] / 1000.0)
        o["env_ms"].append(c.env_ms_per_decision)
        o["driver_ms"].append(c.driver_ms_per_decision)
        o["background"].append(c.background_cores)
        o["per_request_ms"].append(c.generator_ms_per_request)
    return {t: {k: (round(float(np.median(v)), 3), len(v)) for k, v in o.items() if v} for t, o in out.items()}


if __name__ == "__main__":
    print(_medians())
