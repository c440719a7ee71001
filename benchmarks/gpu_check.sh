#!/usr/bin/env bash
# The fast-path check (issue 35) on one CUDA device, in one call of under 9 minutes on an H100/H200:
#
#   bash benchmarks/gpu_check.sh CIFAR10_FOLDER RESULTS_FOLDER
#
# 1. overhead.py --device cuda --precision bf16: every CIFAR-10 recipe's real step (the recipe's image size, batch,
#    bn_splits, views and queue) against its per-view limit, in images/s, and whether one step runs under
#    torch.cuda.set_sync_debug_mode("error") (column "sync-free");
# 2. the same with --compile (inductor) for four methods (compiling takes about a minute per method);
# 3. MNN's recipe for two epochs: bf16, channels-last, --data_on_device, --torch_compile; recipe_run.py turns its
#    log and kNN history into results/recipe_<name>.json.
# Every JSON lands in RESULTS_FOLDER (point it at $OUT with the device tool). Nothing is downloaded: carry the
# CIFAR-10 parquet folder in an ignored folder (benchmarks/README.md, "On a GPU").
#
# GPU_CHECK_DRY_RUN=1 runs the same commands on the CPU with tiny settings (tests/test_benchmark_overhead.py);
# PYTHON names the interpreter (default: python3).
set -euo pipefail
python=${PYTHON:-python3}
data=${1:?usage: bash benchmarks/gpu_check.sh CIFAR10_FOLDER RESULTS_FOLDER}
results=${2:?usage: bash benchmarks/gpu_check.sh CIFAR10_FOLDER RESULTS_FOLDER}
mkdir -p "$results"
here=$(cd "$(dirname "$0")" && pwd)

if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    device=cpu precision=fp32 timed=(--timed_repeats 1 --timed_warmup 0 --timed_batch_size 16)
    methods=(mnn) compiled_methods=() train=(--max_train_steps 3 --per_device_train_batch_size 16
        --dataloader_num_workers 0 --max_train_samples 64 --max_eval_samples 32 --knn_k 5 --image_size 16 --logging_steps 1)
    launch=(--mixed_precision no)
else
    device=cuda precision=bf16 timed=(--timed_repeats 20 --timed_warmup 5)
    methods=() compiled_methods=(mnn byol simclr msf)
    train=(--num_train_epochs 2 --channels_last --torch_compile --dataloader_num_workers 12)
    launch=(--mixed_precision bf16 --dynamo_backend no)  # --torch_compile compiles; accelerate's flag would again
fi
label=$("$python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")

"$python" "$here/overhead.py" ${methods[@]+--methods "${methods[@]}"} --no_counts --device "$device" \
    --precision "$precision" "${timed[@]}" --label "$label $precision" --output "$results/overhead_gpu.json"
if (( ${#compiled_methods[@]} )); then
    "$python" "$here/overhead.py" --methods "${compiled_methods[@]}" --no_counts --device "$device" \
        --precision "$precision" --compile "${timed[@]}" --label "$label $precision compiled" \
        --output "$results/overhead_gpu_compiled.json"
fi

start=$(date +%s)
"$python" -m accelerate.commands.launch --num_processes 1 --num_machines 1 "${launch[@]}" recipes/train.py \
    --config recipes/configs/mnn_cifar10.yaml --dataset_name "$data" --output_dir "$results/mnn_two_epochs" \
    --data_on_device --knn_every_n_epochs 1 --checkpoints_total_limit 1 "${train[@]}" \
    2>&1 | tee "$results/mnn_two_epochs.log"
"$python" "$here/recipe_run.py" --log "$results/mnn_two_epochs.log" \
    --state "$results/mnn_two_epochs/all_results.json" --name "mnn_two_epochs_${device}" \
    --command "bash benchmarks/gpu_check.sh (MNN recipe, two epochs, $(( $(date +%s) - start )) s)" \
    --device_name "$label" --versions "torch=$("$python" -c 'import torch; print(torch.__version__)')" \
    --results_dir "$results"
