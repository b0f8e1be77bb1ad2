#!/bin/bash
# Weight publication on the lent GPU machine (issue 8): `rlvla3 bench-weights` for oft-small
# and oft-1b (bf16) with the trainer and 2 generators on the one GPU (colocated, so the
# channel is gloo: NCCL refuses two members on one GPU). Carry .device/ray and .device/vlapack
# (see tools/bench_vla_gpu.sh for how vlapack is built). Writes OUT/oft-*/weights.{json,md}.
set -uo pipefail
source .device/ray/setup.sh >/dev/null
mkdir -p /tmp/vp && tar xJf .device/vlapack/vla.tar.xz -C /tmp/vp
export PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 RAY_USAGE_STATS_ENABLED=0
OUT=${OUT:-runs/device_weights}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for size in ${SIZES:-small 1b}; do
  timeout ${LIMIT_S:-280} python3 -m rlvla3.cli.main bench-weights --publishes 5 --out "$OUT/oft-$size" \
    preset=tiny-test policy=oft-$size policy.oft.dtype=bfloat16 policy.device=cuda generator.num_generators=2 \
    > "$OUT/oft-$size.log" 2>&1
  echo "oft-$size rc=$?"; grep -v -i "warn" "$OUT/oft-$size.log" | tail -16
done
