#!/usr/bin/env bash
# The GPU benchmarks (issue 6, section 4) on one CUDA device, in one go (about 5 minutes on one H100):
#
#   bash benchmarks/gpu.sh CIFAR10_FOLDER RESULTS_FOLDER
#
# 1. throughput.py at the GPU training setting: bf16 autocast, channels-last, the recipes' batch 256;
# 2. the same in fp32 with the default layout, to show what the GPU flags buy;
# 3. dataloader.py: CPU view pipeline per worker count, and the --augment_on_device split, against (1)'s MNN rate.
#
# The MNN recipe itself (README, "On a GPU") is run apart: it takes hours for its 200 epochs.
set -euo pipefail
data=${1:?usage: bash benchmarks/gpu.sh CIFAR10_FOLDER RESULTS_FOLDER}
results=${2:?usage: bash benchmarks/gpu.sh CIFAR10_FOLDER RESULTS_FOLDER}
mkdir -p "$results"
cores=$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")
workers=$(printf '%s\n' 0 4 8 $(( cores * 3 / 4 )) "$cores" | sort -nu | tr '\n' ' ')

python3 benchmarks/throughput.py --device cuda --precision bf16 --channels_last --batch 256 --repeats 20 --warmup 5 \
    --output "$results/throughput_gpu.json"
python3 benchmarks/throughput.py --device cuda --batch 256 --repeats 20 --warmup 5 --no_memory \
    --output "$results/throughput_gpu_fp32.json"
python3 benchmarks/dataloader.py --dataset_name "$data" --device cuda --batch 256 --batches 20 --train_steps 0 \
    --workers $workers --throughput "$results/throughput_gpu.json" \
    --output "$results/dataloader_gpu.json"
