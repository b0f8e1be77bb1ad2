#!/bin/bash
# generator.cuda_graphs on the GPU machine (issue 24, item 2): the real-capture test, then
# `rlvla3 bench-policy`'s act time per batch size, eager and from CUDA graphs on the same policy
# (oft-1b, oft-small and pi0-small, bfloat16 autocast, LIBERO-shaped inputs), one JSON + MD per policy in $OUT.
#
#   carry [".device/vlapack", ".device/pyt"]   OUT=$OUT bash tools/device_graphs_check.sh   (about 4 min)
#
# .device/vlapack: built as tools/bench_vla_gpu.sh's header says. .device/pyt: pytest and its plugins
# copied from a local venv with the test extra (the device's python has no pytest; 4 MB):
#   SP=$(python -c 'import pytest, os; print(os.path.dirname(os.path.dirname(pytest.__file__)))')
#   mkdir -p .device/pyt && cp -r $SP/{pytest,_pytest,pluggy,iniconfig,py.py,pytest_timeout.py} \
#     $SP/{pytest,pluggy,iniconfig,pytest_timeout}-*.dist-info .device/pyt/
set -uo pipefail
mkdir -p /tmp/vp "$OUT"
[ -d /tmp/vp/vla ] || tar xJf .device/vlapack/vla.tar.xz -C /tmp/vp
export PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD/.device/pyt:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/policies/test_cuda_graphs.py 2>&1 | tail -n 5 | tee "$OUT/pytest.txt"
for p in ${POLICIES:-oft-1b oft-small pi0-small}; do
  fam=${p%%-*}  # oft | pi0
  timeout 240 python3 -m rlvla3.cli.main bench-policy --out "$OUT" --label "$p-graphs" --seconds "${SECONDS_PER_POINT:-3}" \
      --batches "${BATCHES:-1,2,4,8,16,32}" --micro-batches "" policy=$p policy.$fam.chunk_size=8 policy.$fam.dtype=bfloat16 \
      env.type=libero env.libero.image_size=128 sft.enabled=false policy.device=cuda generator.cuda_graphs=true \
      2>&1 | grep -v -i warn | tail -n 20 | tee -a "$OUT/log.txt"
done
