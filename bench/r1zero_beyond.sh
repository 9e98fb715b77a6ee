#!/usr/bin/env bash
# Experiments beyond copying, every run in parallel (one process each), then pass@k per length.
#   extrap_k5        complete working shown only up to 5 operands; GRPO on 3-8 (gate forced: the base
#                    is not expected to pass it on 6-8)
#   extrap_k5_rare   the same, but 2% of complete documents on 6-8 operands keep their working
#   lenbias_grpo     filler variant on harder problems (to 10 operands, 10% complete working),
#   lenbias_dr_grpo  original GRPO (per-sequence mean, std scaling) vs Dr. GRPO
#   default          the default task (for pass@k and the gold-chain share)
# Usage: bash bench/r1zero_beyond.sh DEVICE OUTDIR "SEEDS"; then
#   python bench/r1zero_passk.py --device DEVICE OUTDIR/extrap_* OUTDIR/default_*
set -u
device=${1:-auto}; out=${2:-runs/beyond}; seeds=${3:-"201 202 203"}
mkdir -p "$out"
export TQDM_DISABLE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { name=$1; shift; python -m minids r1zero --device "$device" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 & }
hard="--variant filler --max-operands 10 --share-direct 0.55 --share-partial 0.35 --share-complete 0.1 --max-completion-length 96"
for s in $seeds; do
  run extrap_k5_s$s --seed $s --complete-max-operands 5 --force --max-pretrain-steps 3000
  run extrap_k5_rare_s$s --seed $s --complete-max-operands 5 --share-complete-long 0.02 --force --max-pretrain-steps 3000
  run lenbias_grpo_s$s --seed $s $hard --loss-type grpo --scale-rewards group
  run lenbias_dr_grpo_s$s --seed $s $hard
  run default_s$s --seed $s
done
wait
