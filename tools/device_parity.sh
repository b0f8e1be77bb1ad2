#!/bin/bash
# Quick-start parity on the GPU machine: for each RL seed given as an argument, sync and full
# side by side, the same SFT checkpoint (.device/sft0), policy on the GPU, full with 2 slots x 8
# envs. Needs Ray staged from ../shared/device (stage.sh) and tools/device_pydeps.sh's packages
# in .device/py with the kit's setup.sh beside them. Copies summary.json and eval_final.md of
# every run to $OUT.
source .device/py/setup.sh >/dev/null
export PYTHONPATH=$PWD:$PWD/.device/py:$PYTHONPATH RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 RAY_USAGE_STATS_ENABLED=0
mkdir -p /tmp/p
for s in "$@"; do
  for m in sync full; do
    extra=""; [ $m = full ] && extra="rollout.slots_per_worker=2 rollout.envs_per_slot=8"
    ( timeout 540 python3 -m rlvla3.cli.main train preset=quickstart policy.device=cuda \
        sft.checkpoint=.device/sft0 run.seed=$s run.mode=$m run.output_dir=/tmp/p run.name=$m-s$s \
        run.progress=false $extra > /tmp/p/$m-s$s.log 2>&1; echo "$m-s$s rc=$?" ) &
    sleep 5
  done
done
wait
for f in /tmp/p/*/summary.json; do n=$(basename $(dirname $f)); mkdir -p $OUT/$n; cp $f $OUT/$n/; cp /tmp/p/$n/eval_final.md $OUT/$n/ 2>/dev/null; done
grep -h "final policy" /tmp/p/*.log
python3 - <<'PY'
import json, glob
for f in sorted(glob.glob('/tmp/p/*/summary.json')):
    s = json.load(open(f)); print(f.split('/')[-2], s.get('sft_success_rate'), s.get('final_success_rate'), s.get('env_steps'), s.get('wall_s'))
PY
