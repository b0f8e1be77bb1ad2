#!/bin/bash
# Issue 23 on the GPU machine: MT10 SFT once, then sync and full RL runs from that checkpoint,
# one run per call (a call lasts at most 10 min). Runs are written under $OUT (they come back
# even if a run is cut), the SFT checkpoint also to /tmp/mt10 (it lasts while the machine is warm).
#
# Staging (make each call at once after the previous: the machine is given back after 30 s idle):
#   1. carry [".device/mw", ".device/pydeps"]  bash .device/mw/stage.sh
#      (tools/device_metaworld_part.sh builds .device/mw, tools/device_pydeps.sh .device/pydeps;
#      stage.sh keeps every carried part for the next call)
#   2. carry [".device/ray"]                   bash .device/ray/stage.sh
#   3. carry [".device/sim"]                   source .device/sim/setup.sh && cp .device/sim/setup.sh /tmp/rlvla3-setup.sh
#                                              && PHASE=sft bash tools/device_metaworld_mt10.sh
#   4. later calls:                            source /tmp/rlvla3-setup.sh && PHASE=rl MODE=sync SEED=0 bash tools/device_metaworld_mt10.sh
#      (NAME=... names a run other than MODE-sSEED, e.g. a variant with extra key=value arguments)
# One call instead of the staging above: tools/device_mjsim_part.sh builds a 5 MB MuJoCo-only part, and
# tools/device_metaworld_mt10_call.sh runs SFT + sync + full in one call carrying mw, pydeps, ray, mjsim.
# Extra key=value arguments go to every rlvla3 command (e.g. run.total_env_steps=300000).
set -uo pipefail
PHASE=${PHASE:-sft}; MODE=${MODE:-sync}; SEED=${SEED:-0}; LIMIT=${LIMIT:-560}
# Runs live in /tmp (a call returns at most 8 files, 2 folders down): each call packs what it
# measured into $OUT/<name>.tar.gz at its end (checkpoints left out) beside log.txt.
OUT=${OUT:-runs}; RUNS=/tmp/mt10/runs; SFT=/tmp/mt10/sft
export PYTHONPATH=/tmp/site:$PWD
mkdir -p "$OUT" "$RUNS"
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S)" "$line"; done; }
echo "phase $PHASE mode $MODE seed $SEED; $(nvidia-smi --query-gpu=name --format=csv,noheader); $(nproc) cores" | stamp | tee -a "$OUT/log.txt"
if [ "$PHASE" = sft ]; then
  timeout -s INT -k 20 "$LIMIT" python3 -m rlvla3.cli.main sft preset=metaworld-mt10 policy.device=cuda --out "$SFT" "$@" \
      2>&1 | grep --line-buffered -v -i "warn" | stamp | tee -a "$OUT/log.txt"
  rc=${PIPESTATUS[0]}
else
  [ -d "$SFT" ] || { echo "no SFT checkpoint at $SFT: the machine was given back; run PHASE=sft first" | tee -a "$OUT/log.txt"; exit 2; }
  name="${NAME:-$MODE-s$SEED}"
  timeout -s INT -k 20 "$LIMIT" python3 -m rlvla3.cli.main train preset=metaworld-mt10 policy.device=cuda \
      sft.checkpoint="$SFT" run.mode="$MODE" run.seed="$SEED" run.output_dir="$RUNS" run.name="$name" \
      run.progress=false "$@" 2>&1 | grep --line-buffered -v -i "warn" | stamp | tee -a "$OUT/log.txt" | tail -n 30
  rc=${PIPESTATUS[0]}
  tar czf "$OUT/$name.tar.gz" -C "$RUNS" --exclude=checkpoints --exclude='*.npy' "$name"
fi
echo "exit code $rc" | stamp | tee -a "$OUT/log.txt"
