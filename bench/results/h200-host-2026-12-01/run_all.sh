#!/bin/bash
# run on the device: CPU jobs pinned to 2 cores each, GPU jobs on the rest
R=$OUT/r; mkdir -p $R
export TQDM_DISABLE=1 OMP_NUM_THREADS=2
lscpu > $R/lscpu.txt; nvidia-smi -L > $R/gpu.txt 2>&1
P=python3
(taskset -c 0,1 timeout 370 $P bench/r1zero.py --threads 2 --device cpu --json $R/r1zero_cpu.json > $R/r1zero_cpu.log 2>&1) &
(taskset -c 2,3 timeout 300 $P bench/train_step.py --threads 2 --json $R/train_cpu.json > $R/train_cpu.log 2>&1;
 taskset -c 2,3 timeout 200 $P bench/train_step.py --threads 2 --masks --json $R/train_cpu_masks.json > $R/train_cpu_masks.log 2>&1) &
(taskset -c 4,5 timeout 300 $P bench/rollout.py --threads 2 --no-uncached --json $R/rollout_cpu.json > $R/rollout_cpu.log 2>&1) &
(taskset -c 6,7 timeout 300 $P bench/pretrain_batches.py --threads 2 --json $R/pretrain_cpu.json > $R/pretrain_cpu.log 2>&1) &
(taskset -c 8,9 timeout 300 $P bench/cpu_precision.py --threads 2 --json $R/precision_cpu.json > $R/precision_cpu.log 2>&1) &
(taskset -c 10,11 timeout 300 $P ab.py 2 > $R/ab_cpu.log 2>&1) &
(taskset -c 12-15 timeout 150 $P bench/train_step.py --device cuda --json $R/train_gpu.json > $R/train_gpu.log 2>&1;
 taskset -c 12-15 timeout 100 $P bench/train_step.py --device cuda --bf16 --json $R/train_gpu_bf16.json > $R/train_gpu_bf16.log 2>&1;
 taskset -c 12-15 timeout 150 $P bench/r1zero.py --device cuda --json $R/r1zero_gpu.json > $R/r1zero_gpu.log 2>&1) &
wait
cd $OUT && tar czf results.tgz r && rm -rf r
