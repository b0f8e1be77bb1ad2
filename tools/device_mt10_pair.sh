#!/bin/bash
# Issue 23 on a warm device machine: `sync`, then `full`, from one SFT clone carried in, for one
# seed at one env-step budget (each run's RL clock also capped, so that the pair fits one 10-min
# call). Runs and the log go under $OUT as tools/device_metaworld_mt10.sh writes them.
#
#   call 1: carry [".device/mw", ".device/pydeps", ".device/ray", ".device/mjsim"]
#           source .device/mw/setup.sh && cp .device/mw/setup.sh /tmp/rlvla3-setup.sh && cp -r .device/pydeps/. /tmp/site/
#           (pydeps is a plain folder, not an archive: setup.sh does not unpack it; with the slim mjsim
#           part instead of the kit's sim part, gymnasium comes only from it)
#   call 2: carry [".device/clone"] (a copy of the SFT output folder: config.json, model.safetensors)
#           source /tmp/rlvla3-setup.sh; export PYTHONPATH=/tmp/site:$PWD; OUT=$OUT bash tools/device_mt10_pair.sh 0 [key=value ...]
#   calls 3, 4: the same with seeds 1 and 2 (no carry: the clone stays in /tmp while the machine is warm)
# Extra key=value arguments go to both runs (after this script's own, so they win).
set -uo pipefail
SEED=${1:?usage: device_mt10_pair.sh SEED [key=value ...]}; shift
mkdir -p /tmp/mt10
if [ -d .device/clone ] && [ ! -d /tmp/mt10/sft ]; then cp -r .device/clone /tmp/mt10/sft; fi
[ -f /tmp/mt10/sft/model.safetensors ] || { echo "no SFT clone at /tmp/mt10/sft: carry .device/clone"; exit 2; }
SETTINGS="env.metaworld.image_size=${IMAGE:-64} policy.tiny.image_size=${IMAGE:-64}
  run.total_env_steps=${STEPS:-500000} run.max_rl_minutes=${RL_MINUTES:-4}
  eval.num_workers=4 eval.repeats=1 eval.every_steps=50 eval.videos=0 eval.reuse_sft=true"
for MODE in ${MODES:-sync full}; do
  LIMIT=${LIMIT:-290} PHASE=rl MODE=$MODE SEED=$SEED bash tools/device_metaworld_mt10.sh $SETTINGS "$@"
done
