#!/bin/bash
# Is a GPU clone reproducible with run.deterministic=true? The same small SFT recipe (MT1 push at
# 128², the MT10 preset's policy) run several times on one machine: each run's final loss and the
# sha256 of its weights go to $OUT/repro.txt as each run ends.
#
#   carry [".device/mw", ".device/pydeps", ".device/ray", ".device/mjsim"]
#   source .device/mw/setup.sh >/dev/null && mkdir -p /tmp/site && cp -r .device/pydeps/. /tmp/site/
#   OUT=$OUT bash tools/device_sft_repro.sh true true false false
#
# Each argument is one run's run.deterministic. DEMOS, EPOCHS: the recipe (default 40 x 6).
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD
R="$OUT/repro.txt"; : > "$R"
k=0
for det in "$@"; do
  k=$((k + 1)); dir=/tmp/sft-repro/$k
  line=$(timeout -s INT -k 10 120 python3 -m rlvla3.cli.main sft preset=metaworld-mt10 policy.device=${DEVICE:-cuda} \
      env.metaworld.benchmark=MT1 env.metaworld.task=push-v3 env.metaworld.image_size=128 policy.tiny.image_size=128 \
      sft.demos_per_task=${DEMOS:-40} sft.epochs=${EPOCHS:-6} sft.collect_workers=8 run.deterministic=$det --out "$dir" \
      2>&1 | grep "final loss")
  sum=$(sha256sum "$dir/model.safetensors" 2>/dev/null | cut -c1-16)
  echo "run $k deterministic=$det: ${line:-no final line} weights ${sum:-none}" | tee -a "$R"
done
