#!/usr/bin/env bash
# The R1-Zero default run on three seeds plus every control and variant, in parallel
# (one process each). Usage: bash bench/r1zero_controls.sh DEVICE OUTDIR
# Each run writes OUTDIR/<name>/{history.jsonl,summary.json,report.html}.
set -u
device=${1:-auto}; out=${2:-runs/controls}
mkdir -p "$out"
run() { name=$1; shift; python -m minids r1zero --device "$device" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 & }
export TQDM_DISABLE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run seed0 --seed 0
run seed1 --seed 1
run seed2 --seed 2
run format_only --format-only
run no_chain --no-chain
run grpo_loss --loss-type grpo --scale-rewards group
run kl --beta 0.04
run cap16 --max-completion-length 16
run filler_dr_grpo --variant filler
run filler_grpo --variant filler --loss-type grpo --scale-rewards group
run correction --variant correction
wait
for f in "$out"/*.log; do echo "== $f"; tail -n 9 "$f"; done
