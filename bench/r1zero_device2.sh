#!/usr/bin/env bash
# Second device call: the length-extrapolation runs again (the same seeds and settings as
# bench/r1zero_beyond.sh, so the same runs) for pass@k with the guess-free "gold" count, and
# pass@k of the shipped default checkpoints. Usage: bash bench/r1zero_device2.sh cuda
set -u
device=${1:-cuda}; work=${WORK:-/tmp/r1zero2}; mkdir -p "$work/beyond"
t0=$(date +%s); elapsed() { echo $(( $(date +%s) - t0 )); }
export TQDM_DISABLE=1 OMP_NUM_THREADS=1
python bench/r1zero_passk.py --device "$device" --threads 1 --shipped "$work/shipped_passk.json" --problems 32 \
  --samples 64 > "$work/shipped_passk.log" 2>&1 &
for s in 201 202 203; do
  for v in "extrap_k5" "extrap_k5_rare"; do
    extra=""; [ "$v" = extrap_k5_rare ] && extra="--share-complete-long 0.02"
    ( python -m minids r1zero --device "$device" --out "$work/beyond/${v}_s$s" --seed $s --complete-max-operands 5 \
        $extra --force --max-pretrain-steps 3000 > "$work/beyond/${v}_s$s.log" 2>&1 &&
      python bench/r1zero_passk.py --device "$device" --threads 1 --problems 16 --samples 64 "$work/beyond/${v}_s$s" \
        > "$work/beyond/${v}_s$s.passk.log" 2>&1 ) &
  done
done
while [ -n "$(jobs -r)" ] && [ "$(elapsed)" -lt "${TOTAL_S:-230}" ]; do sleep 3; done
echo "total: $(elapsed) s"
cd "$work" && tar czf "${OUT:-.}/r1zero2.tgz" --exclude='*.pt' --exclude='report.html' .
