"""Two CPU processes (gloo): in-batch negatives from every process with exact gradients through the gather, and
queues that stay identical on every process when filled with gathered keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_contrastive.losses import nnclr_loss, simclr_loss
from hf_contrastive.models import FeatureQueue, all_gather_with_grad

WORLD = 2
LOCAL_BATCH = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * LOCAL_BATCH, 8, generator=generator), torch.randn(WORLD * LOCAL_BATCH, 8, generator=generator)


def _initial_weight() -> torch.Tensor:
    return torch.randn(8, 8, generator=torch.Generator().manual_seed(1))


def _worker(rank: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        x1_all, x2_all = _global_inputs()
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        # A shared "network" (one weight, the same on every rank, as DDP keeps it) applied to the local images.
        weight = _initial_weight().requires_grad_(True)
        loss = simclr_loss(all_gather_with_grad(x1_all[rows] @ weight), all_gather_with_grad(x2_all[rows] @ weight), 0.2)
        loss.backward()
        grads = weight.grad.clone()
        dist.all_reduce(grads)  # DDP averages the gradients of the processes
        grads /= WORLD

        nn_weight = _initial_weight().requires_grad_(True)
        nn_loss = nnclr_loss(all_gather_with_grad(x2_all[rows]), all_gather_with_grad(x1_all[rows] @ nn_weight), 0.2)
        nn_loss.backward()
        nn_grads = nn_weight.grad.clone()
        dist.all_reduce(nn_grads)
        nn_grads /= WORLD

        queue = FeatureQueue(10, 8)
        queue.features.zero_()  # the same start on every rank
        for step in range(2):  # 2 steps x 8 gathered keys through 10 slots: the second step wraps around
            local_keys = torch.full((LOCAL_BATCH, 8), float(2 * step + rank))
            gathered = [torch.empty_like(local_keys) for _ in range(WORLD)]
            dist.all_gather(gathered, local_keys)
            queue.enqueue(torch.cat(gathered))
        results[rank] = {"loss": loss.item(), "grads": grads, "nn_loss": nn_loss.item(), "nn_grads": nn_grads,
                         "queue": queue.features.clone(), "pointer": queue.pointer.item()}
    finally:
        dist.destroy_process_group()


def test_gathered_losses_equal_the_global_batch_loss_with_exact_gradients():
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=WORLD, join=True)

    x1_all, x2_all = _global_inputs()
    weight = _initial_weight().requires_grad_(True)
    expected_loss = simclr_loss(x1_all @ weight, x2_all @ weight, 0.2)
    expected_loss.backward()
    nn_weight = _initial_weight().requires_grad_(True)
    expected_nn_loss = nnclr_loss(x2_all, x1_all @ nn_weight, 0.2)
    expected_nn_loss.backward()

    for rank in range(WORLD):
        got = results[rank]
        # Every process computes the loss of the whole global batch (all 2 x 8 - 2 negatives per row)...
        assert abs(got["loss"] - expected_loss.item()) < 1e-5
        assert abs(got["nn_loss"] - expected_nn_loss.item()) < 1e-5
        # ...and after DDP's averaging the weight gradient is exactly the global-batch gradient.
        torch.testing.assert_close(got["grads"], weight.grad)
        torch.testing.assert_close(got["nn_grads"], nn_weight.grad)
    # Queues filled with gathered keys are identical, in rank order, with the same pointer.
    assert torch.equal(results[0]["queue"], results[1]["queue"])
    # step 0 wrote rank0,rank0,...,rank1 (0s then 1s) to slots 0-7; step 1 wrote 2s then 3s to slots 8, 9, 0-5.
    assert results[0]["queue"][:, 0].tolist() == [2, 2, 3, 3, 3, 3, 1, 1, 2, 2]
    assert results[0]["pointer"] == results[1]["pointer"] == 6


@pytest.mark.parametrize("method", ["mnn", "simclr"])
def test_training_script_with_two_processes(tmp_path, method):
    """The real recipes/train.py under torchrun with 2 CPU processes (gloo): one process group, global batch = 2 x
    per-device batch, queues identical on both ranks at the end (the trainer checks and raises otherwise)."""
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               str(repo / "recipes" / "train.py"), "--method", method, "--dataset_name", str(repo / "data" / "cifar10_sample"),
               "--max_train_samples", "128", "--max_eval_samples", "64", "--per_device_train_batch_size", "16",
               "--max_train_steps", "3", "--dataloader_num_workers", "0", "--report_to", "none",
               "--output_dir", str(tmp_path), "--config_overrides", "projection_hidden_size=128,small_image_stem=false"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "global batch 32" in output and "2 process(es)" in output
    results = json.loads((tmp_path / "all_results.json").read_text())
    assert results["num_processes"] == 2 and results["global_step"] == 3
    assert 0.0 <= results["knn_top1"] <= 1.0


def test_knn_eval_gives_the_same_accuracy_with_two_processes(tmp_path):
    """Uneven splits (101 bank, 63 test images, batches of 16) pad the last batch of one process:
    gather_for_metrics must drop the duplicates so 2 processes score exactly what 1 process scores."""
    import hf_contrastive
    from hf_contrastive.hub import CardContext, save_hub_folder

    repo = Path(__file__).resolve().parents[1]
    torch.manual_seed(0)
    config = hf_contrastive.MNNConfig(small_image_stem=False, queue_size=64, projection_hidden_size=64, projection_dim=32)
    model = hf_contrastive.MNNForPreTraining(config).eval()
    context = CardContext(dataset_name="data/cifar10_sample", dataset_stats="cifar10", train_samples=0, epochs=0.0,
                          global_batch_size=0, command="pytest", knn_top1=None, eval_split="test")
    save_hub_folder(model, hf_contrastive.get_method("mnn"), tmp_path / "model", image_mean=(0.4914, 0.4822, 0.4465),
                    image_std=(0.2023, 0.1994, 0.2010), context=context)
    common = [str(repo / "recipes" / "knn_eval.py"), "--model_name_or_path", str(tmp_path / "model"),
              "--dataset_name", str(repo / "data" / "cifar10_sample"), "--max_train_samples", "101",
              "--max_eval_samples", "63", "--per_device_eval_batch_size", "16", "--dataloader_num_workers", "0",
              "--no_update_model_card"]
    accuracies = {}
    for processes in (1, 2):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                    "--master_port", str(_free_port())]
        output_dir = tmp_path / f"knn_{processes}"
        completed = subprocess.run(launcher + common + ["--output_dir", str(output_dir)], capture_output=True,
                                   text=True, timeout=600)
        assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
        results = json.loads((output_dir / "eval_results.json").read_text())
        accuracies[processes] = results
    assert accuracies[1]["knn_top1"] == accuracies[2]["knn_top1"], accuracies
