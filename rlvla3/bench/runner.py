"""`rlvla3 bench`: every mode for S seconds of steady state on the same machine, in one run.

For each mode a fresh session runs the real schedule (real env workers, generators and
trainer, learning from an SFT policy) with timeline recording on; after `warmup` seconds a
window of `seconds` is measured from the workers' own spans (`measure.py`), starting no
earlier than the first chunk step of every env slot (first resets and EGL contexts can
outlast the warm-up; a slot still silent at faults.start_timeout_s is reported). Then the stage
bounds are measured in a session of their own: the simulators alone (random actions, their
episodes cut at the lengths `full` ran, and, for reference, to the time limit), the
generators alone (inference at each batch size) and the trainer alone (synthetic global
batches), each converted to env steps/s, so `pipeline_efficiency = achieved / min(bounds)`.
bench.json and table.md are rewritten after every mode run and every bounds measurement
(`"partial": true` until the end), so a run killed midway keeps what it measured.
"""

from __future__ import annotations

import os
import platform
import shlex
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from rlvla3.bench.cpu_accounting import CpuWindow
from rlvla3.bench.measure import episode_lengths, slot_tracks, window_metrics, window_start
from rlvla3.bench.synthetic import random_obs
from rlvla3.bench.workloads import bench_sft, mode_of, workload_overrides
from rlvla3.envs.factory import env_config, has_expert
from rlvla3.policies import family_config
from rlvla3.runtime.config import envs_per_worker, load_config
from rlvla3.runtime.run_logger import RunLogger
from rlvla3.runtime.session import ASYNC_ROLLOUT_MODES, start_session
from rlvla3.runtime.train_loop import TrainingRun, run_schedule


def command_line(argv: Optional[List[str]]) -> str:
    """`rlvla3 ARGV...` shell-quoted, for the record of a result; `argv` is what the CLI parsed
    (None: called from Python, whose settings are the recorded overrides)."""
    return shlex.join(["rlvla3", *argv]) if argv is not None else "called from Python (see overrides)"


def machine_info() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def bench_policy(cfg, out: str, say: Callable) -> str:
    """A quickly behaviour-cloned policy (cached in OUT/sft_policy) where the env has a
    scripted expert (tabletop, MetaWorld); a random one elsewhere (LIBERO)."""
    path = os.path.join(out, "sft_policy")
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        return path
    if not has_expert(cfg.env.type):
        from rlvla3.policies import build_policy

        say(f"bench: no SFT for env.type={cfg.env.type}: a randomly initialised policy (pass --policy DIR to "
            "use a trained one)")
        build_policy(cfg.policy).save_pretrained(path)
    else:
        from rlvla3.runtime.sft_command import run_sft

        say("bench: training a quick SFT policy for the benchmark (cached for later runs)")
        run_sft(cfg, path)
    import torch

    if torch.cuda.is_available():  # the driver's cached blocks (5 GB for oft-1b) would crowd the trainer's GPU
        torch.cuda.empty_cache()
    return path


def _actors(session) -> list:
    return list(session.env_workers) + list(session.generators) + [session.trainer]


class SlotWatch:
    """While one mode runs: polls the env workers' spans (every `poll_s` from t0) until every
    env slot has finished a chunk step, or the cap passes; then fixes the window's start
    (`measure.window_start`), moves the schedule's deadline so that the window gets its full
    `seconds`, and starts the window's CPU accounting. Until the mode ends it also turns
    timeline recording on in env workers that the supervisor replaced (they start without it)."""

    def __init__(self, session, training, t0: float, warmup: float, seconds: float, cap: float, poll_s: float = 0.5):
        r = session.cfg.rollout
        self.session, self.training, self.seconds, self.poll_s = session, training, seconds, poll_s
        self.tracks = slot_tracks(r.num_env_workers, envs_per_worker(r))
        self.earliest, self.latest = t0 + warmup, t0 + max(warmup, cap)
        self.since, self.firsts, self.cpu = t0, {}, None  # firsts: track -> its first env_step span seen
        self.cpu_early = CpuWindow(self.earliest, self.earliest + seconds)  # the window if no slot is late
        self.stop, self.traced = threading.Event(), list(session.env_workers)
        training.deadline = self.latest + seconds  # until the window's start is known
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-slot-watch")
        self.thread.start()

    def _poll(self) -> None:
        b, workers, now = self.session.backend, list(self.session.env_workers), time.time()
        try:
            parts = b.get([w.timeline.remote(self.since) for w in workers],
                          timeout_s=self.session.cfg.faults.step_timeout_s,
                          what="bench: the env workers' spans (has every slot stepped?)", actors=workers)
        except Exception:  # a worker being replaced: ask again at the next poll
            return
        self.since = now - 1.0  # a span is recorded just after it ends
        for s in (s for part in parts for s in part):
            if s.name == "env_step" and (s.track not in self.firsts or s.end < self.firsts[s.track].end):
                self.firsts[s.track] = s

    def _trace_replacements(self) -> None:
        for w in list(self.session.env_workers):
            if not any(w is t for t in self.traced):
                self.traced.append(w)
                try:
                    self.session.backend.get(w.set_trace.remote(True), timeout_s=self.session.cfg.faults.step_timeout_s,
                                             what="bench: timeline recording on (a replaced env worker)", actors=[w])
                except Exception:  # replaced again, or gone: the next one is traced in turn
                    pass

    def _run(self) -> None:
        while not self.stop.is_set():
            self._trace_replacements()
            if self.cpu is None:
                self._poll()
                ws = window_start(self.firsts.values(), self.tracks, self.earliest, self.latest)
                if ws["all_slots_stepped"] or time.time() >= self.latest:
                    self.training.deadline = ws["start"] + self.seconds
                    if ws["start"] <= self.earliest + self.poll_s:  # CPU is a rate: close enough
                        self.cpu = self.cpu_early
                    else:
                        self.cpu_early.result()  # stop it
                        self.cpu = CpuWindow(ws["start"], ws["start"] + self.seconds)
            self.stop.wait(self.poll_s)

    def close(self) -> Optional[dict]:
        """Stop polling; the window's CPU accounting (None if the window never began)."""
        self.stop.set()
        self.thread.join(timeout=self.session.cfg.faults.step_timeout_s + 5)
        self.cpu_early.result()  # stops it (result() may be asked again)
        return self.cpu.result() if self.cpu else None


def run_mode(cfg, policy_dir: str, seconds: float, warmup: float, out_dir: str) -> tuple:
    """One mode: returns (metrics, spans of the measurement window, window bounds). The window
    starts at t0 + warmup, or later once every env slot has stepped (at most
    faults.start_timeout_s after t0); metrics say how late and whether every slot stepped."""
    session = start_session(cfg, policy_dir=policy_dir)
    b, f = session.backend, cfg.faults
    logger = RunLogger(out_dir, 0, progress=False)
    watch = None
    try:
        actors = _actors(session)
        b.get([a.set_trace.remote(True) for a in actors], timeout_s=f.call_timeout_s,
              what="bench: timeline recording on", actors=actors)
        session.spans.enabled = True
        training = TrainingRun(cfg=cfg, logger=logger, session=session, run_dir=out_dir)
        t0 = time.time()
        watch = SlotWatch(session, training, t0, warmup, seconds, f.start_timeout_s)
        run_schedule(session, training)
        t_stop = time.time()
        cpu_used = watch.close()
        actors = _actors(session)  # as the supervisor left them
        spans = [s for part in b.get([a.timeline.remote(t0) for a in actors], timeout_s=f.call_timeout_s,
                                     what="bench: the workers' timelines", actors=actors) for s in part]
        spans += session.spans.spans(t0)
        ws = window_start(spans + list(watch.firsts.values()), watch.tracks, watch.earliest, watch.latest)
        w0 = ws["start"] if ws["start"] < t_stop else watch.earliest  # a run stopped before its window: as before
        w1 = w0 + seconds
        metrics = window_metrics(spans, w0, min(w1, t_stop))
        metrics["cpu"] = cpu_used
        metrics.update(all_slots_stepped=ws["all_slots_stepped"], window_start_delay_s=round(w0 - watch.earliest, 3),
                       slots=ws["slots"], slots_stepped=ws["slots_stepped"])
        if ws["slots_not_stepped"]:
            metrics["slots_not_stepped"] = ws["slots_not_stepped"][:32]
        metrics["run"] = {"wall_s": round(t_stop - t0, 2), "env_steps_total": training.env_steps,
                          "optimizer_steps": training.train_steps, "samples_trained": training.samples_trained,
                          "episodes": training.episodes,
                          "rollout_success_rate": training.successes / training.episodes if training.episodes else None}
        if cfg.run.mode in ASYNC_ROLLOUT_MODES:
            gen = b.get([g.stats.remote() for g in session.generators], timeout_s=f.call_timeout_s,
                        what="bench: generator stats", actors=session.generators)
            metrics["batcher"] = [{k: v for k, v in g.items() if isinstance(v, (int, float))} for g in gen]
            rep = training.async_report
            metrics["staleness_run"] = {"hist": rep.get("staleness_hist", {}),
                                        "dropped_stale": rep.get("samples_dropped_stale", 0),
                                        "admission_refused": rep.get("admission_refused", 0)}
            # a streaming trainer that had not begun by the window's start: the window holds the start-up
            firsts = [s.start for s in spans if s.name == "micro_batch"]
            metrics["trainer_start_in_window_s"] = round(max(0.0, min(firsts) - w0), 3) if firsts else None
        window = [s for s in spans if s.end >= w0 and s.start <= w1]
        return metrics, window, (w0, w1)
    finally:
        if watch is not None:
            watch.close()
        logger.close()
        session.shutdown()


def stage_bounds(cfg, policy_dir: str, seconds: float, steps_per_decision: float,
                 episode_steps: Optional[List[int]] = None) -> dict:
    """Each stage alone, in env steps/s (decisions converted with the measured steps per decision).
    The simulators run random actions, so their episodes last to the time limit; with
    `episode_steps` (the lengths `full` measured) they are also run cut to those lengths, which
    is the bound: an SFT policy ends episodes early, so the pipeline pays more resets per step."""
    session = start_session(cfg, policy_dir=policy_dir)
    b, f = session.backend, cfg.faults
    deadline = 2 * seconds + f.call_timeout_s  # each run lasts `seconds`, plus its warm-up
    try:
        p, env = family_config(cfg.policy), env_config(cfg)

        def sims_alone(lengths):
            ws = list(session.env_workers)
            runs = b.get([w.bench_sim.remote(seconds, p.chunk_size, p.action_dim, lengths) for w in ws],
                         timeout_s=deadline + f.first_reset_timeout_s, actors=ws,  # an untimed first reset each
                         what="bench: the simulators alone (bench_sim" + (", measured lengths)" if lengths else ")"))
            return sum(r["env_steps"] for r in runs) / max(r["seconds"] for r in runs)

        sim_limit = sims_alone(None)
        sim = sims_alone(episode_steps) if episode_steps else sim_limit
        slots = cfg.rollout.num_env_workers * envs_per_worker(cfg.rollout)
        sizes = sorted({n for n in (1, 4, 16, 32, 64, 128, cfg.generator.max_batch, slots) if n <= max(slots, 1)})
        gen0 = session.generators[0]
        batches = [random_obs(n, env.image_size, p.proprio_dim, session.instructions) for n in sizes]
        per_size = b.get(gen0.bench_forward.remote(batches, seconds / len(sizes)),
                         timeout_s=deadline, what="bench: the generator alone (bench_forward)", actors=[gen0])
        gen = len(session.generators) * max(per_size.values()) * steps_per_decision
        # The trainer as each schedule runs it: whole global batches, or streamed micro-batches
        # (`full` with algo.stream_normalization=exact costs a second backward per micro-batch).
        trainer = session.trainer
        batch = random_obs(cfg.algo.global_batch, env.image_size, p.proprio_dim, session.instructions)
        tr = b.get(trainer.bench_train.remote(seconds, batch),
                   timeout_s=deadline, what="bench: the trainer alone (bench_train)", actors=[trainer])
        trs = b.get(trainer.bench_train.remote(seconds, batch, True),
                    timeout_s=deadline, what="bench: the trainer alone, streamed (bench_train)", actors=[trainer])
        train = tr["samples"] / tr["seconds"] * steps_per_decision
        train_s = trs["samples"] / trs["seconds"] * steps_per_decision
        return {"simulators_env_steps_per_s": sim, "simulators_time_limit_env_steps_per_s": sim_limit,
                "simulator_episode_steps_mean": float(sum(episode_steps) / len(episode_steps)) if episode_steps else None,
                "generators_env_steps_per_s": gen,
                "trainer_env_steps_per_s": train, "trainer_streaming_env_steps_per_s": train_s,
                "min_env_steps_per_s": min(sim, gen, train),
                "min_env_steps_per_s_streaming": min(sim, gen, train_s),
                "bottleneck": min((sim, "simulators"), (gen, "generators"), (train, "trainer"))[1],
                "bottleneck_streaming": min((sim, "simulators"), (gen, "generators"), (train_s, "trainer"))[1],
                "generator_samples_per_s_by_batch": {str(k): v for k, v in per_size.items()},
                "trainer_samples_per_s": tr["samples"] / tr["seconds"],
                "trainer_streaming_samples_per_s": trs["samples"] / trs["seconds"],
                "steps_per_decision": steps_per_decision, "seconds_each": seconds}
    finally:
        session.shutdown()


def _median_index(values: List[float]) -> int:
    """Index of the median (the lower one of an even count): a repeat that really ran."""
    return sorted(range(len(values)), key=values.__getitem__)[(len(values) - 1) // 2]


def build_result(head: dict, runs: Dict[str, List[dict]], ref: str, repeats: int, bounds_each_repeat: bool,
                 bounds_by_repeat: List[dict], bounds: Optional[dict] = None,
                 done: Optional[List[str]] = None) -> Tuple[dict, Dict[str, int]]:
    """The result from what has been measured so far: each mode's median repeat, the ratios to
    sync (paired by repeat), and the pipeline efficiencies where bounds exist (else None).
    `done` (the runs finished so far) marks a partial result; the final one has none.
    Returns (result, each mode's median repeat index)."""
    result: Dict = dict(head)
    if done is not None:
        result.update(partial=True, done=list(done))
    result["modes"] = {}
    medians = {}
    for name, ms in runs.items():
        medians[name] = _median_index([m["env_steps_per_s"] for m in ms])
        result["modes"][name] = dict(ms[medians[name]], repeat=medians[name] + 1)
        if repeats > 1:
            result["modes"][name]["repeats_env_steps_per_s"] = [m["env_steps_per_s"] for m in ms]
    if bounds_each_repeat and bounds_by_repeat:  # partial: the median repeat's, else the last measured
        i = min(medians.get(ref, 0), len(bounds_by_repeat) - 1)
        bounds, bounds_repeat = bounds_by_repeat[i], i + 1
    else:
        bounds_repeat = medians.get(ref, 0) + 1
    result["bounds"] = bounds
    if bounds is not None:
        result["bounds_repeat"] = bounds_repeat
    if bounds_each_repeat and bounds_by_repeat:
        result["bounds_by_repeat"] = bounds_by_repeat
    sync = result["modes"].get("sync", {}).get("env_steps_per_s")
    for name, m in result["modes"].items():
        m["ratio_to_sync"] = m["env_steps_per_s"] / sync if sync else None
        if repeats > 1 and sync:
            m["paired_ratios_to_sync"] = [a["env_steps_per_s"] / b["env_steps_per_s"]
                                          for a, b in zip(runs[name], runs["sync"])]
        # each mode against the trainer as it runs it: streamed micro-batches in `full`
        key = "min_env_steps_per_s_streaming" if mode_of(name.split(" ")[0]) == "full" else "min_env_steps_per_s"
        if bounds_each_repeat and bounds_by_repeat:
            effs = [_efficiency(a["env_steps_per_s"], b[key]) for a, b in zip(runs[name], bounds_by_repeat)]
            known = [e for e in effs if e is not None]
            m["paired_efficiencies"] = effs
            m["pipeline_efficiency"] = known[_median_index(known)] if known else None
        else:
            m["pipeline_efficiency"] = _efficiency(m["env_steps_per_s"], bounds[key]) if bounds is not None else None
        if name.endswith(" +stragglers"):
            clean = name[:-len(" +stragglers")]
            m["throughput_change_vs_no_stragglers"] = m["env_steps_per_s"] / result["modes"][clean]["env_steps_per_s"] - 1
            if repeats > 1:
                m["paired_changes_vs_no_stragglers"] = [a["env_steps_per_s"] / b["env_steps_per_s"] - 1
                                                        for a, b in zip(runs[name], runs[clean])]
    return result, medians


def _efficiency(achieved: float, bound: float) -> Optional[float]:
    """achieved / bound; None when a stage measured nothing in its bound's seconds (a trainer
    step longer than --bound-seconds): no efficiency rather than a division by zero."""
    return achieved / bound if bound and bound > 0 else None


def run_bench(workload: str, modes: List[str], seconds: float, out: str, overrides: List[str],
              warmup: float = 20.0, policy: str = "", straggler_fraction: float = 0.0,
              straggler_slowdown: float = 5.0, bound_seconds: Optional[float] = None,
              say: Callable = print, repeats: int = 1, bounds_each_repeat: bool = False,
              mode_overrides: Optional[Dict[str, List[str]]] = None, argv: Optional[List[str]] = None,
              keep_spans: bool = False) -> dict:
    """`repeats` > 1 runs the mode list that many times in turn (sync, full, sync, full, ...),
    so that a machine whose speed drifts (a shared VM) biases no mode: each mode reports its
    median repeat, every repeat's env steps/s, and the ratios to sync paired by repeat.
    `bounds_each_repeat` measures the stage bounds after every repeat too, and each mode's
    efficiency is the median of its repeats, each against the bounds of its own repeat.
    `mode_overrides` (mode -> overrides) runs a mode in its own layout; the stage bounds use the
    common overrides. bench.json and table.md are written after every run and every bounds measurement.
    `keep_spans` writes each run's measurement window as modes/RUN/spans.jsonl.gz (bench/span_file.py)."""
    from rlvla3.bench.report import trainer_start_note, window_note, write_outputs
    from rlvla3.bench.span_file import NAME as SPANS_FILE, save_spans

    os.makedirs(out, exist_ok=True)
    base_cfg = load_config(workload_overrides(workload, modes[0], bench_sft(workload) + overrides))
    policy_dir = policy or bench_policy(base_cfg, out, say)
    head = {"workload": workload, "command": command_line(argv),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
            "seconds": seconds, "warmup_s": warmup, "overrides": overrides}
    mode_overrides = mode_overrides or {}
    if mode_overrides:
        head["mode_overrides"] = mode_overrides
    variants = [("", [])]
    if straggler_fraction > 0:
        variants.append((" +stragglers", [f"bench.straggler_fraction={straggler_fraction}",
                                          f"bench.straggler_slowdown={straggler_slowdown}"]))
    bcfg = load_config(workload_overrides(workload, "full", overrides))
    bound_s = bound_seconds or max(5.0, seconds / 2)
    ref = "full" if "full" in modes else modes[0]  # the mode whose episodes the simulators' bound runs

    def bounds_for(rep: int, tag: str = "") -> dict:
        """Stage bounds on the steps per decision and episode lengths of `full` (else the first
        mode) in repeat `rep`: the simulators then run the episodes the pipeline ran."""
        spd = runs[ref][rep]["env_steps_per_decision"] or family_config(base_cfg.policy).chunk_size
        window, span = windows[ref][rep]
        say(f"bench: stage bounds (each stage alone){tag}")
        return stage_bounds(bcfg, policy_dir, bound_s, spd, episode_lengths(window, *span))

    runs: Dict[str, List[dict]] = {}
    windows: Dict[str, List[tuple]] = {}  # mode -> per repeat (spans, (t0, t1))
    bounds_by_repeat: List[dict] = []
    done: List[str] = []

    def save(bounds: Optional[dict] = None, final: bool = False) -> Tuple[dict, Dict[str, int]]:
        result, medians = build_result(head, runs, ref, repeats, bounds_each_repeat, bounds_by_repeat, bounds,
                                       None if final else done)
        write_outputs(result, {m: w[medians[m]][0] for m, w in windows.items()}, out)
        return result, medians

    for rep in range(repeats):
        tag = f" (repeat {rep + 1}/{repeats})" if repeats > 1 else ""
        for mode in modes:
            for suffix, extra in variants:
                cfg = load_config(workload_overrides(workload, mode, overrides + mode_overrides.get(mode, []) + extra))
                say(f"bench: {mode}{suffix}{tag}: {warmup:.0f}s warm-up + {seconds:.0f}s measured")
                sub = (mode + suffix).replace(" +", "_").replace("@", "-") + (f"_r{rep + 1}" if repeats > 1 else "")
                mode_dir = os.path.join(out, "modes", sub)
                metrics, window, span = run_mode(cfg, policy_dir, seconds, warmup, mode_dir)
                runs.setdefault(mode + suffix, []).append(metrics)
                if keep_spans:
                    os.makedirs(mode_dir, exist_ok=True)
                    save_spans(os.path.join(mode_dir, SPANS_FILE), window)
                if not suffix:
                    windows.setdefault(mode, []).append((window, span))
                run_name = f"{mode}{suffix}{tag}"
                say(f"bench: {run_name}: {metrics['env_steps_per_s']:.0f} env steps/s")
                for note in (window_note(run_name, metrics), trainer_start_note(run_name, metrics)):
                    if note:
                        say(f"bench: {note}")
                done.append(run_name)
                save()
        if bounds_each_repeat:
            bounds_by_repeat.append(bounds_for(rep, tag))
            save()
    medians = {name: _median_index([m["env_steps_per_s"] for m in ms]) for name, ms in runs.items()}
    return save(None if bounds_each_repeat else bounds_for(medians[ref]), final=True)[0]
