#!/usr/bin/env bash
# Reproduce a method's published CIFAR-10 result on one CUDA device (issue 39), in one prepared command:
#
#   bash benchmarks/reproduce.sh METHOD CIFAR10_FOLDER RESULTS_FOLDER
#
# 1. The method's full recipe (recipes/configs/METHOD_cifar10.yaml: 200 epochs for the MNN line) with the fast path:
#    bf16, channels-last, --data_on_device, --torch_compile; a kNN point every 10 epochs; a checkpoint every
#    epoch. RESULTS_FOLDER/METHOD/run holds the run.
# 2. The linear probe of the method's reference (`MethodSpec.linear_protocol`: the MNN repo's for MNN and the
#    baselines, MSVQ's, PatchMix's) on the final encoder; its best and last epoch go into the Hub folder's card
#    (model-index) next to the training kNN.
# 3. benchmarks/recipe_run.py writes RESULTS_FOLDER/recipe_METHOD_reproduce.json (device name, versions, command,
#    per-epoch kNN, linear best and last, wall time of all calls) and its kNN plot; make_tables.py shows it.
#
# Resumable: a call cut off (the device tool's time limit, SIGTERM, Ctrl-C) leaves the last finished epoch's
# checkpoint (and the step it was in: the trainer saves on SIGTERM); calling the same command again resumes from it,
# skips what is finished (training when all_results.json exists, the probe when its eval_results.json does) and adds
# the call's time to the wall time. Nothing is downloaded: carry the CIFAR-10 parquet folder in an ignored folder
# (benchmarks/README.md, "On a GPU").
#
# REPRODUCE_DRY_RUN=1 runs the same commands on the CPU with tiny settings (tests/test_benchmark_reproduce.py);
# PYTHON names the interpreter (default: python3).
set -euo pipefail
usage="usage: bash benchmarks/reproduce.sh METHOD CIFAR10_FOLDER RESULTS_FOLDER"
python=${PYTHON:-python3}
method=${1:?$usage}
data=${2:?$usage}
results=${3:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
recipe="$here/../recipes/configs/${method}_cifar10.yaml"
[[ -f "$recipe" ]] || { echo "reproduce.sh: no CIFAR-10 recipe for '$method' ($recipe)." >&2; exit 2; }
run="$results/$method/run"
linear="$results/$method/linear_eval"
mkdir -p "$results/$method"

# Wall time over every call: each call adds its own seconds when it ends, also when it is stopped.
start=$(date +%s)
wall_file="$results/$method/wall_seconds"
add_wall_time() { echo $(( $(cat "$wall_file" 2>/dev/null || echo 0) + $(date +%s) - start )) > "$wall_file"; }
trap add_wall_time EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

if [[ "${REPRODUCE_DRY_RUN:-0}" == 1 ]]; then
    launch=(--mixed_precision no)
    train=(--data_on_device --max_train_steps 2 --per_device_train_batch_size 16 --dataloader_num_workers 0 --max_train_samples 64
        --max_eval_samples 32 --knn_k 5 --image_size 16 --logging_steps 1)
    probe=(--num_train_epochs 1 --per_device_train_batch_size 32 --max_train_samples 64 --max_eval_samples 32
        --dataloader_num_workers 0 --per_device_eval_batch_size 32)
else
    launch=(--mixed_precision bf16 --dynamo_backend no)  # --torch_compile compiles; accelerate's flag would again
    train=(--channels_last --torch_compile --data_on_device --dataloader_num_workers 12)
    probe=(--dataloader_num_workers 12)
fi

if [[ ! -f "$run/all_results.json" ]]; then
    log="$results/$method/train_$(date +%Y%m%d_%H%M%S).log"
    "$python" -m accelerate.commands.launch --num_processes 1 --num_machines 1 "${launch[@]}" \
        "$here/../recipes/train.py" --config "$recipe" --dataset_name "$data" --output_dir "$run" \
        --resume_from_checkpoint auto --knn_every_n_epochs 10 --checkpoints_total_limit 2 "${train[@]}" \
        2>&1 | tee "$log"
    ln -sf "$(basename "$log")" "$results/$method/train_last.log"
fi

if [[ ! -f "$linear/eval_results.json" ]]; then
    protocol=$("$python" -c "import hf_contrastive, sys; print(hf_contrastive.get_method(sys.argv[1]).linear_protocol)" "$method")
    "$python" "$here/../recipes/linear_eval.py" --model_name_or_path "$run/model" --dataset_name "$data" \
        --protocol "$protocol" --output_dir "$linear" "${probe[@]}" 2>&1 | tee "$results/$method/linear_eval.log"
fi

add_wall_time
trap - EXIT
start=$(date +%s)
device=$("$python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")
versions=$("$python" -c "
import accelerate, timm, torch, transformers
print(' '.join(f'{m.__name__}={m.__version__}' for m in (torch, transformers, timm, accelerate)))")
"$python" "$here/recipe_run.py" --log "$results/$method/train_last.log" --state "$run/all_results.json" \
    --name "${method}_reproduce" --device_name "$device" --versions $versions \
    --command "bash benchmarks/reproduce.sh $method CIFAR10_FOLDER RESULTS_FOLDER" \
    --linear_results "$linear/eval_results.json" --wall_seconds "$(cat "$wall_file")" --results_dir "$results"
echo "Results: $results/recipe_${method}_reproduce.json; Hub folder with the card: $run/model"
