#!/usr/bin/env bash
# The GPU figures in one call on a lent NVIDIA machine (docs/benchmarks.md, "GPU"): offline
# `pysource` data, the `cuda-large` profile, a 60 s budget. Stages, most important first, each
# with its own time limit, so that a call cut short still brings back what it finished:
#
#   1. a `cuda-large` workspace through the real engine: `autoresearch run --max-experiments 1`
#      (the baseline twice, one experiment of the built-in agent): rows, the evaluator's metric;
#   2. side by side on the same workspace and data: the original train.py (REFERENCE, with its
#      attention shim) and ours, each by hand, twice (the second compile warm): tokens/s, MFU,
#      peak memory, first-step time, val_bpb;
#   3. the reference shape through the hand-over and the evaluator (bench/reference_shape.py,
#      trained on the GPU: hand-over size and export time, the evaluator's load and scoring).
#
#   bash bench/gpu_part2.sh [REFERENCE_DIR]      # writes everything under $OUT (default /tmp/gpu-part2)
#
# One device command may run 10 minutes: STAGES picks the stages of one call (default "1 2 3";
# e.g. STAGES=1 first, then STAGES="2 3" on the same warm machine: the workspace and the
# prepared data stay under $OUT, and init/prepare are skipped when the workspace is there).
#
# On a machine without a GPU it still runs (the `cpu` profile, a 5 s budget: PROFILE=cpu
# BUDGET=5 REF_BATCH=1 bash bench/gpu_part2.sh), which is how it is checked before a device is lent.
set -u
REF=${1:-../shared/reference}
OUT=${OUT:-/tmp/gpu-part2}
PROFILE=${PROFILE:-cuda-large}
BUDGET=${BUDGET:-60}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export AUTORESEARCH_CACHE_DIR="$OUT/cache" PYTHONUNBUFFERED=1
WS="$OUT/ws"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/stages.log"; }

stamp "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU)"
stamp "torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')"

STAGES=${STAGES:-1 2 3}
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }

if [ ! -d "$WS/.git" ]; then
  stamp "init and prepare ($PROFILE, pysource, budget $BUDGET s)"
  $PY -m autoresearch init "$WS" --profile "$PROFILE" --dataset pysource --budget "$BUDGET" > "$OUT/init.log" 2>&1 \
    || { stamp "init failed"; tail -5 "$OUT/init.log"; exit 1; }
  (cd "$WS" && timeout 600 $PY -m autoresearch prepare > "$OUT/prepare.log" 2>&1) \
    || { stamp "prepare failed"; tail -5 "$OUT/prepare.log"; exit 1; }
fi

if has 1; then
stamp "1. the engine: baseline twice and one experiment"
(cd "$WS" && timeout 540 $PY -m autoresearch run --max-experiments 1 --tag gpu > "$OUT/run.log" 2>&1)
stamp "   exit $?; $(tail -1 "$OUT/run.log")"
(cd "$WS" && $PY -m autoresearch status --json > "$OUT/status.json" 2>&1; cp results.tsv "$OUT/" 2>/dev/null)
fi

if has 2; then
stamp "2. side by side: the original and ours, by hand, each twice (the second warm)"
git -C "$WS" switch -q main 2>/dev/null
for n in 1 2; do
  if [ -f "$REF/original-train.py" ] && [ "$PROFILE" != cpu ]; then
    (cd "$WS" && PYTHONPATH="$REF/fa3_shim" ATTN=flex timeout 600 $PY "$REF/original-train.py" > "$OUT/original-$n.log" 2>&1)
    stamp "   original run $n: exit $?; $(grep -E '^(val_bpb|mfu_percent|peak_vram_mb|num_steps):' "$OUT/original-$n.log" | tr '\n' ' ')"
  fi
  (cd "$WS" && timeout 600 $PY train.py > "$OUT/ours-$n.log" 2>&1)
  stamp "   ours run $n: exit $?; $(grep -E '^(val_bpb|mfu_percent|peak_vram_mb|num_steps|startup_seconds):' "$OUT/ours-$n.log" | tr '\n' ' ')"
done
fi

if has 3; then
stamp "3. the reference shape through the hand-over and the evaluator"
timeout 600 $PY bench/reference_shape.py --batch "${REF_BATCH:-8}" --steps 2 > "$OUT/reference_shape.txt" 2>&1
stamp "   exit $?"; cat "$OUT/reference_shape.txt" | tee -a "$OUT/stages.log"
fi
stamp "done: stages $STAGES"
