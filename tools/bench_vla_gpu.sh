#!/bin/bash
# The VLA policy benchmark on the GPU machine (see docs/benchmarks/gpu-vla/README.md).
# Carry .device/vlapack (built by: bash tools/device_vladeps.sh .device/vla && bash tools/device_pydeps.sh
# .device/py && tar cJf .device/vlapack/vla.tar.xz -C .device vla py; 16 MB). Writes one JSON + MD per config to OUT.
set -uo pipefail
OUT=${OUT:-runs/bench_vla}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-4}
mkdir -p /tmp/vp && tar xJf .device/vlapack/vla.tar.xz -C /tmp/vp
export PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"
LIBERO="env.type=libero env.libero.image_size=128 sft.enabled=false policy.device=cuda"
ONLY=${ONLY:-}  # space-separated labels to run (default: all)
bench() {  # label, then overrides
    local label=$1; shift
    [[ -z "$ONLY" || " $ONLY " == *" $label "* ]] || return 0
    echo "== $label"
    python3 -m rlvla3.cli.main bench-policy --out "$OUT" --label "$label" --seconds "$SECONDS_PER_POINT" "$@" $LIBERO \
        2>&1 | grep -v -i warn | tail -20
}
bench oft-small-bf16 --batches 1,8,32,64,128,256 --micro-batches 8,32 policy=oft-small policy.oft.chunk_size=8 policy.oft.dtype=bfloat16
bench oft-1b-bf16 --batches 1,8,32,64,128,256 --micro-batches 8,32 policy=oft-1b policy.oft.chunk_size=8 policy.oft.dtype=bfloat16
bench pi0-small-bf16 --batches 1,8,32,64,128 --micro-batches 8,32 policy=pi0-small policy.pi0.chunk_size=8 policy.pi0.dtype=bfloat16
bench pi0-full-bf16-lora --batches 1,8,32,64 --micro-batches 8,16 policy=pi0-full policy.pi0.chunk_size=8 policy.pi0.dtype=bfloat16 policy.pi0.lora.enabled=true policy.pi0.lora.r=32 policy.pi0.lora.alpha=64
bench oft-7b-bf16-lora --batches 1,8,32 --micro-batches 8 policy=oft-7b policy.oft.chunk_size=8 policy.oft.dtype=bfloat16 policy.oft.lora.enabled=true policy.oft.lora.r=32 policy.oft.lora.alpha=64 policy.oft.gradient_checkpointing=true
bench oft-small-bf16-compile --batches 1,8,32,64,128,256 --micro-batches 8,32 policy=oft-small policy.oft.chunk_size=8 policy.oft.dtype=bfloat16 policy.oft.compile=true
