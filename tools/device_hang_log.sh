#!/bin/bash
# Issue 22: N consecutive `full` runs on one LIBERO suite on the GPU machine, each a fresh
# session (Ray cluster, env workers, generator and their request sockets), through
# `rlvla3 bench --repeats N` (the command that hung 4 times in 5 before the socket fix).
# Each line of the log is time-stamped; bench.json/table.md are written after every repeat.
# Device side, after `source .device/sim/setup.sh` (LIBERO, MuJoCo, Ray; see ../shared/device)
# with the pure-Python dependencies unpacked into /tmp/site (tools/device_pydeps.sh):
#   SUITE=libero_goal WORKERS=12 N=10 OUT=$OUT/libero_goal bash tools/device_hang_log.sh [key=value ...]
set -uo pipefail
SUITE=${SUITE:-libero_goal}; WORKERS=${WORKERS:-12}; N=${N:-10}; OUT=${OUT:-runs/hang_log/$SUITE}
LIMIT=${LIMIT:-540}  # seconds; SIGINT first, so bench stops between writes
export PYTHONPATH=/tmp/site:$PWD
mkdir -p "$OUT"
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S)" "$line"; done; }
echo "suite $SUITE, $WORKERS env workers x 1 slot, $N repeats of full; $(nvidia-smi --query-gpu=name --format=csv,noheader); $(nproc) cores" | stamp | tee "$OUT/log.txt"
timeout -s INT -k 20 "$LIMIT" python3 -m rlvla3.cli.main bench --workload libero --modes full --repeats "$N" \
    --seconds 10 --warmup 5 --bound-seconds 3 --out "$OUT" \
    env.libero.suite="$SUITE" policy.device=cuda rollout.num_env_workers="$WORKERS" rollout.slots_per_worker=1 \
    'policy.tiny.channels=[64,128,128]' policy.tiny.hidden=512 algo.global_batch=384 algo.micro_batch=96 \
    generator.max_batch=16 run.progress=false "$@" 2>&1 | grep --line-buffered -v -i "warn" | stamp >> "$OUT/log.txt"
rc=${PIPESTATUS[0]}
echo "exit code $rc" | stamp | tee -a "$OUT/log.txt"
grep -E "bench: |no answer|supervisor|Error" "$OUT/log.txt" | tail -40
