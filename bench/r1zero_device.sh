#!/usr/bin/env bash
# One device call: the robust-pretraining sweep and the beyond-copying runs side by side, then
# pass@k on the runs that need it; everything (no checkpoints) tarred into $OUT/r1zero.tgz.
# RUNS_S bounds the runs phase, TOTAL_S the whole (runs still going are left unfinished).
# Usage (on the GPU machine): bash bench/r1zero_device.sh cuda
set -u
device=${1:-cuda}; work=${WORK:-/tmp/r1zero}
mkdir -p "$work"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
bash bench/r1zero_robust.sh "$device" "$work/robust" "${ROBUST_SEEDS:-101 102 103}" &
bash bench/r1zero_beyond.sh "$device" "$work/beyond" "${BEYOND_SEEDS:-201 202 203}" &
while [ -n "$(jobs -r)" ] && [ "$(elapsed)" -lt "${RUNS_S:-400}" ]; do sleep 5; done
echo "runs phase: $(elapsed) s"
for d in "$work"/beyond/extrap_* "$work"/beyond/default_*; do
  [ -f "$d/summary.json" ] || continue
  python bench/r1zero_passk.py --device "$device" --threads 1 --problems 16 --samples 64 "$d" > "$d.passk.log" 2>&1 &
done
while [ -n "$(jobs -r)" ] && [ "$(elapsed)" -lt "${TOTAL_S:-560}" ]; do sleep 5; done
echo "total: $(elapsed) s"
nvidia-smi --query-gpu=name --format=csv,noheader
cd "$work" && tar czf "${OUT:-.}/r1zero.tgz" --exclude='*.pt' --exclude='report.html' robust beyond
