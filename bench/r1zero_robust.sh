#!/usr/bin/env bash
# Robust pretraining: the default recipe on a family of task variants x fresh seeds, every run in
# parallel (one process each). Each run pretrains 3000 steps, then, while the base fails the gate,
# pretrains 1500 more at a time up to 9000 (`--max-pretrain-steps`), then GRPO 100 steps.
# "Before" = the gate and skill onset within the first 3000 steps (pretrain_history.jsonl, the
# default schedule alone); "after" = with the extra chunks. Summarise with
#   python bench/r1zero_robust_table.py OUTDIR
# Usage: bash bench/r1zero_robust.sh DEVICE OUTDIR "SEEDS"
set -u
device=${1:-auto}; out=${2:-runs/robust}; seeds=${3:-"101 102 103 104"}
mkdir -p "$out"
export TQDM_DISABLE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { name=$1; shift; python -m minids r1zero --device "$device" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 & }
for s in $seeds; do
  run default_s$s --seed $s
  run mod5_s$s --seed $s --modulus 5
  run mod7_s$s --seed $s --modulus 7
  run mod12_s$s --seed $s --modulus 12
  run ops12_s$s --seed $s --max-operands 12 --max-completion-length 96
  run complete05_s$s --seed $s --share-direct 0.6 --share-partial 0.35 --share-complete 0.05
  run mixed_s$s --seed $s --modulus 7 --max-operands 10 --share-direct 0.55 --share-partial 0.35 \
      --share-complete 0.1 --max-completion-length 96
done
wait
