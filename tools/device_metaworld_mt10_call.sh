# One device call (carry [".device/mw", ".device/pydeps", ".device/ray", ".device/mjsim"]; see
# tools/device_mjsim_part.sh): MT10 SFT, then sync and full (the defaults) for 2.5 min of RL each
# (issue 23); about 470 s on the H200. Run from the repo root: bash tools/device_metaworld_mt10_call.sh
# The carry (40 MB) and the working tree must fit in 64 MiB together: docs/benchmarks (31 MB of
# tracked files) does not fit beside it, so leave it out of the index during the call
# (git rm -r -q --cached docs/benchmarks; add it to .git/info/exclude; git reset -q docs/benchmarks after).
source .device/mw/setup.sh >/dev/null && cp .device/mw/setup.sh /tmp/rlvla3-setup.sh
mkdir -p $OUT
LIMIT=130 PHASE=sft bash tools/device_metaworld_mt10.sh sft.epochs=40 sft.collect_workers=15
RL="run.max_rl_minutes=2.5 eval.num_workers=4 eval.repeats=1 eval.every_steps=50"
LIMIT=215 PHASE=rl MODE=sync SEED=0 bash tools/device_metaworld_mt10.sh $RL
LIMIT=215 PHASE=rl MODE=full SEED=0 bash tools/device_metaworld_mt10.sh $RL
ls -la $OUT
