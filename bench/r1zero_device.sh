#!/usr/bin/env bash
# One device call: the robust-pretraining sweep and the beyond-copying runs side by side, then
# pass@k on the runs that need it; everything tarred into $OUT/r1zero.tgz.
# Usage (on the GPU machine): bash bench/r1zero_device.sh cuda
set -u
device=${1:-cuda}; work=${WORK:-/tmp/r1zero}; budget=${BUDGET:-420}
mkdir -p "$work"
t0=$(date +%s)
bash bench/r1zero_robust.sh "$device" "$work/robust" "${ROBUST_SEEDS:-101 102 103}" &
bash bench/r1zero_beyond.sh "$device" "$work/beyond" "${BEYOND_SEEDS:-201 202 203}" &
wait
echo "runs: $(( $(date +%s) - t0 )) s"
done_runs=$(for d in "$work"/beyond/extrap_* "$work"/beyond/default_*; do [ -f "$d/rl.pt" ] && [ -f "$d/summary.json" ] && echo "$d"; done)
for d in $done_runs; do
  timeout "$budget" python bench/r1zero_passk.py --device "$device" --threads 1 --problems 16 --samples 64 "$d" \
    > "$d.passk.log" 2>&1 &
done
wait
echo "total: $(( $(date +%s) - t0 )) s"
cd "$work" && tar czf "${OUT:-.}/r1zero.tgz" --exclude='*.pt' --exclude='report.html' robust beyond
