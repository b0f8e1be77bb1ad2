#!/bin/bash
# Placement presets on the lent single-GPU machine (issue 8): short CUDA runs through the
# placement group (auto; colocated with 2 generators), a layout larger than the machine
# (must fail at once, naming both GPU counts), then a short full-vs-sync bench on the GPU.
# Carry .device/ray and .device/py (see ../shared/device/README.md).
source .device/py/setup.sh >/dev/null
export PYTHONPATH=$PWD:$PWD/.device/py:$PYTHONPATH RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 RAY_USAGE_STATS_ENABLED=0
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run() { local name=$1; shift
  timeout 300 python3 -m rlvla3.cli.main train preset=tiny-test policy.device=cuda run.output_dir=/tmp/pc \
    run.name=$name "$@" > /tmp/pc-$name.log 2>&1
  echo "$name rc=$? $(grep -h '^placement:' /tmp/pc-$name.log | head -1)"; tail -3 /tmp/pc-$name.log; }
run auto-full run.mode=full
run colocated-full run.mode=full placement.preset=colocated placement.gpus=1 generator.num_generators=2
run colocated-sync run.mode=sync placement.preset=colocated placement.gpus=1 generator.num_generators=2
run too-big run.mode=full placement.preset=disaggregated placement.gpus=2
timeout 400 python3 -m rlvla3.cli.main bench --workload tabletop --modes sync,full --seconds 20 --warmup 8 \
  --bound-seconds 6 --out /tmp/pcb policy.device=cuda rollout.slots_per_worker=2 rollout.envs_per_slot=8 \
  > /tmp/pc-bench.log 2>&1; echo "bench rc=$?"; grep -v "^bench:" /tmp/pc-bench.log | tail -25
cp /tmp/pcb/bench.json /tmp/pcb/table.md $OUT/ 2>/dev/null; mkdir -p $OUT/logs; cp /tmp/pc-*.log $OUT/logs/ 2>/dev/null
