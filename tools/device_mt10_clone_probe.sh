#!/bin/bash
# Issue 23 on a warm device machine: a few MT10 clones (demos per task x epochs) at one image size,
# each evaluated on the held-out variations (200 sampled episodes), then the one nearest TARGET
# percent among those that grasp (push or pick-place above 0; REQUIRE_GRASP=0: among all) is copied to /tmp/mt10/sft for
# tools/device_mt10_pair.sh. Per-clone tables and logs go to $OUT/probe/ as each clone finishes.
#
#   after tools/device_mt10_pair.sh's call 1 (staging), in one call, no carry:
#     source /tmp/rlvla3-setup.sh; export PYTHONPATH=/tmp/site:$PWD
#     OUT=$OUT VARIANTS="20x40 30x30 40x20" IMAGE=128 bash tools/device_mt10_clone_probe.sh
# Extra key=value arguments go to every sft and eval command.
set -uo pipefail
IMAGE=${IMAGE:-128}; TARGET=${TARGET:-45}; REQUIRE_GRASP=${REQUIRE_GRASP:-1}; VARIANTS=${VARIANTS:-"20x40 30x30 40x20"}
export PYTHONPATH=/tmp/site:$PWD
P="$OUT/probe"; mkdir -p "$P" /tmp/mt10/clones
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S)" "$line"; done; }
SIZE="env.metaworld.image_size=$IMAGE policy.tiny.image_size=$IMAGE"
for v in $VARIANTS; do
  demos=${v%x*}; epochs=${v#*x}; dir=/tmp/mt10/clones/$IMAGE-$v
  echo "clone $v at ${IMAGE}^2" | stamp | tee -a "$P/log.txt"
  timeout -s INT -k 20 240 python3 -m rlvla3.cli.main sft preset=metaworld-mt10 policy.device=${DEVICE:-cuda} $SIZE \
      sft.demos_per_task="$demos" sft.epochs="$epochs" sft.collect_workers=15 --out "$dir" "$@" \
      2>&1 | grep --line-buffered -i "SFT:" | stamp | tee -a "$P/log.txt"
  timeout -s INT -k 20 240 python3 -m rlvla3.cli.main eval --policy "$dir" --out "$P/$v" preset=metaworld-mt10 \
      policy.device=${DEVICE:-cuda} $SIZE eval.num_workers=8 eval.repeats=2 eval.videos=0 "$@" \
      2>&1 | grep --line-buffered -v -i "warn" | tail -n 3 | stamp | tee -a "$P/log.txt"
  cp "$dir/config.json" "$P/$v/" 2>/dev/null
done
# The pick: nearest TARGET among the clones that grasp (or all, REQUIRE_GRASP=0); every clone's line goes to the log.
pick=$(python3 - "$P" "$TARGET" "$REQUIRE_GRASP" 2>>"$P/log.txt" <<'EOF'
import json, os, sys
root, target, need_grasp = sys.argv[1], float(sys.argv[2]), sys.argv[3] != "0"
best = None
for v in sorted(os.listdir(root)):
    f = os.path.join(root, v, "eval.json")
    if not os.path.isfile(f):
        continue
    d = json.load(open(f))
    per = {k: r["success_rate"] for k, r in d["per_task"].items()}
    grasp = max(r for k, r in per.items() if "push" in k or "pick" in k)
    print(f"{v}: {100 * d['success_rate']:.1f}% held-out, best grasping task {100 * grasp:.0f}%", file=sys.stderr)
    if (grasp > 0 or not need_grasp) and (best is None or abs(100 * d["success_rate"] - target) < best[0]):
        best = (abs(100 * d["success_rate"] - target), v)
print(best[1] if best else "")
EOF
)
echo "picked: ${pick:-none}" | stamp | tee -a "$P/log.txt"
if [ -n "$pick" ]; then rm -rf /tmp/mt10/sft; cp -r /tmp/mt10/clones/$IMAGE-$pick /tmp/mt10/sft; fi
