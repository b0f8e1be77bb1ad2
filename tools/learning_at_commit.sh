#!/bin/bash
# Held-out success of one training run at a given commit, for locating a learning regression
# (docs/benchmarks/cpu-dec05-learning): the commit is checked out in a worktree of its own
# (created on first use, with a copy of this checkout's .venv pointed at it), so the main
# checkout is untouched. Prints the evaluations as (thousand env steps, success %).
#
#   tools/learning_at_commit.sh COMMIT NAME [key=value ...]
#   e.g. STEPS=150000 tools/learning_at_commit.sh 57e4d52 full-57e4d52 run.mode=full sft.checkpoint=/tmp/sft
#
# STEPS (default 150000) is run.total_env_steps; evaluations every 50 optimizer steps; runs go
# to ${RUNS:-/tmp/learning-at-commit}/NAME, the log of every run to its runs.log.
set -euo pipefail
C=$1; N=$2; shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd); WT=${WT:-/tmp/rlvla3-at-commit}; RUNS=${RUNS:-/tmp/learning-at-commit}
mkdir -p "$RUNS"
if [ ! -d "$WT" ]; then
  git -C "$ROOT" worktree add -q --detach "$WT" "$C"
  cp -a "$ROOT/.venv" "$WT/.venv"
  sed -i "s|$ROOT/rlvla3|$WT/rlvla3|" "$WT"/.venv/lib/python3*/site-packages/__editable___rlvla3_*_finder.py
  grep -rl "$ROOT/.venv" "$WT/.venv/bin" | xargs sed -i "s|$ROOT/.venv|$WT/.venv|g"
fi
git -C "$WT" checkout -q --detach "$C"
echo "$(date +%T) start $N @ $C $*" >> "$RUNS/runs.log"
(cd "$WT" && timeout 1800 .venv/bin/rlvla3 train run.output_dir="$RUNS" run.name="$N" run.progress=false \
   run.total_env_steps="${STEPS:-150000}" eval.every_steps=50 "$@" > "$RUNS/$N.log" 2>&1) || true
curve=$("$WT/.venv/bin/python" -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print([(r['env_steps'] // 1000, round(100 * r['eval/success_rate'])) for r in rows if 'eval/success_rate' in r])
" "$RUNS/$N/metrics.jsonl" 2>/dev/null || echo "no evaluations (see $RUNS/$N.log)")
echo "$(date +%T) end $N @ $C: $curve" | tee -a "$RUNS/runs.log"
