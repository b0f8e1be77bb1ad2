#!/bin/bash
# Issue 24 item 1 on the GPU machine: LIBERO at a real VLA size, every mode side by side in
# one `rlvla3 bench` invocation (sync in one env per process, sync-best in two, async-train,
# async-rollout, full), 14 env processes, policy and trainer on the one GPU.
#
# Two calls, made at once one after the other (the machine is given back after 30 s idle):
#   1. carry [".device/ray", ".device/vlapack"]   STAGE=1 bash tools/device_libero_headline.sh
#      (PACK_CHECK=1, carrying .device/pyt too: the weight pack's GPU tests and timing first)
#      (.device/vlapack/vla.tar.xz: transformers + peft + rlvla3's pure-Python deps, built as
#      tools/bench_vla_gpu.sh's header says; ray from ../shared/device/build_bundle.sh)
#   2. carry [".device/sim"]                      bash tools/device_libero_headline.sh
#      (the working tree must stay under ~28 MiB beside sim: leave docs/benchmarks out of the
#      index during the call, as tools/device_metaworld_mt10_call.sh says)
# Settings (environment): POLICY=oft-1b|pi0-small|oft-small, SUITE, MODES, WINDOW (measured s), WARMUP,
# REPEATS, BOUND (seconds per stage bound), LIMIT (seconds before the bench is stopped; the
# bench rewrites bench.json and table.md after every mode, so a stopped run keeps them), FULL_SLOTS,
# FULL_MAX_BATCH, FULL_EXTRA, LABELLED, KEEP_SPANS (each explained where it is read below). Arguments after the
# script's name go to every mode, e.g. generator.cuda_graphs=true (the oft forward from CUDA graphs:
# docs/benchmarks/gpu-dec07d-cuda-graphs).
# oft-1b at global batch 392: a 45 s window holds at most one global batch, too few for trained
# samples/s over whole versions; use WINDOW=130 and two modes per call (from the 45 s calls'
# timings: start 25 s, sync-best ~135 s + window, full ~100 s + window, bounds 86 s: ~510 s of 540).
# micro-batch 28: 49 ran out of the H100's memory with oft-1b (docs/benchmarks/gpu-dec05-libero-oft1b).
set -uo pipefail
OUT=${OUT:-runs/libero-headline}
mkdir -p "$OUT"
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S)" "$line"; done; }
if [ "${STAGE:-0}" = 1 ]; then
  bash .device/ray/stage.sh && mkdir -p /tmp/vp && tar xJf .device/vlapack/vla.tar.xz -C /tmp/vp \
    && du -sh /tmp/vp /tmp/rlvla3-stage | stamp | tee -a "$OUT/log.txt" || exit $?
  # PACK_CHECK=1 (carry .device/pyt too): the GPU tests of the weight pack and the CUDA graphs, then the
  # pack's time per tensor against one pinned pass (tools/device_pack_check.py; about 1-2 min for oft-1b)
  if [ "${PACK_CHECK:-0}" = 1 ]; then
    PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD/.device/pyt:$PWD HF_HUB_OFFLINE=1 python3 -m pytest -q -p no:cacheprovider \
      tests/policies/test_host_copy.py tests/policies/test_cuda_graphs.py 2>&1 | tail -n 3 | stamp | tee -a "$OUT/log.txt"
    PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD HF_HUB_OFFLINE=1 timeout 240 python3 tools/device_pack_check.py \
      "${POLICY:-oft-1b}" "$OUT" 2>&1 | grep -v -i warn | tail -n 3 | stamp | tee -a "$OUT/log.txt"
  fi
  exit 0
fi
[ -d /tmp/vp/vla ] || { echo "no /tmp/vp: run the STAGE=1 call first (the machine was given back)" | tee -a "$OUT/log.txt"; exit 2; }
source .device/sim/setup.sh > /tmp/setup.log 2>&1; stamp < /tmp/setup.log | tee -a "$OUT/log.txt"
export PYTHONPATH=/tmp/site:/tmp/vp/vla:/tmp/vp/py:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
POLICY=${POLICY:-oft-1b}; SUITE=${SUITE:-libero_spatial}; MODES=${MODES:-sync,sync-best,async-train,async-rollout,full}
WINDOW=${WINDOW:-50}; WARMUP=${WARMUP:-20}; REPEATS=${REPEATS:-1}; BOUND=${BOUND:-8}; LIMIT=${LIMIT:-540}
# WARMUP 20 s: with oft-1b the trainer's first micro-batch came 10.7 s into a window after 10 s of warm-up
# (gpu-dec07f; bench.json trainer_start_in_window_s), 0.7-2.6 s after 20 s (gpu-dec07g)
case "$POLICY" in
  oft-*) FAMILY="policy=$POLICY policy.oft.dtype=bfloat16" ;;
  pi0-*) FAMILY="policy=$POLICY policy.pi0.dtype=bfloat16" ;;
  *) echo "unknown POLICY $POLICY"; exit 2 ;;
esac
echo "$POLICY on $SUITE, modes $MODES, ${WINDOW}s + ${WARMUP}s warm-up, $REPEATS repeat(s); $(nvidia-smi --query-gpu=name --format=csv,noheader); $(nproc) cores" \
  | stamp | tee -a "$OUT/log.txt"
# sync-best: sync in its best layout on this machine (two envs per process: gpu-libero-oft/2slots)
EXTRA_ARGS=()  # --mode-override and --keep-spans arguments for bench
[[ ",$MODES," == *",sync-best,"* ]] && EXTRA_ARGS=(--mode-override "sync-best:rollout.slots_per_worker=2 generator.max_batch=32")
# FULL_SLOTS=N (FULL_2SLOTS=1 is N=2): full with N envs per process (a process steps one env while
# another waits for its action; the generator sees N times the requests per forward:
# gpu-dec05b-libero-ablation). gpu-dec06-libero-oft1b-staged: at N=2 each process was busy 0.65 of a core.
FULL_SLOTS=${FULL_SLOTS:-$([ "${FULL_2SLOTS:-0}" = 1 ] && echo 2 || echo 1)}
# FULL_MAX_BATCH: the generator's max batch in full (16 x N by default). N=3 ran out of the H100's
# memory with 48 and with 32 beside oft-1b's trainer at micro-batch 28 (42 EGL contexts:
# docs/benchmarks/gpu-dec06b-libero-oft1b-wait/)
FULL_MAX_BATCH=${FULL_MAX_BATCH:-$((16 * FULL_SLOTS))}
# FULL_EXTRA: more overrides for full alone (e.g. generator.max_wait_ms=100: larger batches, so the
# generator leaves the trainer more of the shared GPU)
FULL_OVR=()
[ "$FULL_SLOTS" -gt 1 ] && FULL_OVR+=(rollout.slots_per_worker=$FULL_SLOTS generator.max_batch=$FULL_MAX_BATCH)
FULL_OVR+=(${FULL_EXTRA:-})
[ ${#FULL_OVR[@]} -gt 0 ] && [[ ",$MODES," == *",full,"* ]] && EXTRA_ARGS+=(--mode-override "full:${FULL_OVR[*]}")
# LABELLED: more runs of full in one call, each full's layout plus its own overrides, ';'-separated
# LABEL:KEY=VALUE ... entries appended to MODES as full@LABEL, e.g.
#   LABELLED="wait30:generator.max_wait_ms=30;wait60:generator.max_wait_ms=60"
#   LABELLED="host:generator.in_trainer_process=true" (the generator in the trainer's process: docs/vla.md)
IFS=';' read -ra LABELS <<< "${LABELLED:-}"
for entry in "${LABELS[@]}"; do
  [ -z "$entry" ] && continue
  MODES="$MODES,full@${entry%%:*}"
  EXTRA_ARGS+=(--mode-override "full@${entry%%:*}:${FULL_OVR[*]} ${entry#*:}")
done
# KEEP_SPANS=1: each window's spans in modes.tar.gz, to re-measure later (estimated at under 1 MB
# a mode for oft-1b at 130 s: about 12,000 spans; not yet measured)
[ "${KEEP_SPANS:-0}" = 1 ] && EXTRA_ARGS+=(--keep-spans)
# Each GPU's utilisation and memory every 5 s (dmon.txt), and 90 s in which process holds which GPU
# (gpu_apps.csv): on a two-GPU machine, where the trainer, the generator and the EGL renders went
nvidia-smi -L | stamp | tee -a "$OUT/log.txt"
nvidia-smi dmon -s um -d 5 -o T > "$OUT/dmon.txt" 2>&1 & dmon=$!
(sleep 90; nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_bus_id --format=csv > "$OUT/gpu_apps.csv" 2>&1) &
timeout -s INT -k 30 "$LIMIT" python3 -m rlvla3.cli.main bench --workload libero --modes "$MODES" \
    --seconds "$WINDOW" --warmup "$WARMUP" --bound-seconds "$BOUND" --repeats "$REPEATS" --out "$OUT" \
    "${EXTRA_ARGS[@]}" \
    env.libero.suite="$SUITE" $FAMILY policy.device=cuda rollout.num_env_workers=14 rollout.slots_per_worker=1 \
    algo.global_batch=392 algo.micro_batch=28 generator.max_batch=16 "$@" \
    2>&1 | grep --line-buffered -v -i -E "warn|Applying task order|token auth" | stamp | tee -a "$OUT/log.txt" | tail -n 40
rc=${PIPESTATUS[0]}
kill "$dmon" 2>/dev/null
[ -d "$OUT/modes" ] && tar czf "$OUT/modes.tar.gz" -C "$OUT" modes && rm -rf "$OUT/modes"
echo "exit code $rc" | stamp | tee -a "$OUT/log.txt"
