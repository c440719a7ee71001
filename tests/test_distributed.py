"""Two CPU processes (gloo): in-batch negatives from every process with exact gradients through the gather, and
queues that stay identical on every process when filled with gathered keys."""

from __future__ import annotations

import copy
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
import torch.nn.functional as F

from hf_contrastive.distributed import GlobalBatchNorm
from hf_contrastive.losses import nnclr_loss, simclr_loss
from hf_contrastive.models import FeatureQueue, all_gather_with_grad
from hf_contrastive.models.modeling_contrastive import SplitBatchNorm2d

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


def _batchnorm_problem(shape: tuple[int, ...]):
    """A global batch, an upstream parameter (so gradients must flow through the statistics) and loss weights."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=generator) * 2 + 1
    theta = torch.rand(shape[1], generator=generator) + 0.5
    weights = torch.randn(*shape, generator=generator)
    return x, theta, weights


def _global_batchnorm_worker(rank: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        for shape in ((8, 3, 4, 4), (8, 5)):
            x, theta, weights = _batchnorm_problem(shape)
            rows = slice(rank * 4, (rank + 1) * 4)
            theta = theta.requires_grad_(True)
            norm = GlobalBatchNorm(shape[1])
            with torch.no_grad():
                norm.weight.copy_(torch.linspace(0.5, 1.5, shape[1])), norm.bias.copy_(torch.linspace(-0.5, 0.5, shape[1]))
            scale = theta.view(1, -1, *[1] * (len(shape) - 2))
            out = norm(x[rows] * scale)
            (out * weights[rows]).mean().backward()  # this process's loss; DDP averages the gradients below
            grads = [tensor.grad.clone() for tensor in (theta, norm.weight, norm.bias)]
            for grad in grads:
                dist.all_reduce(grad)
                grad /= WORLD
            results[(rank, len(shape))] = {"out": out.detach(), "grads": grads, "running_mean": norm.running_mean.clone(),
                                           "running_var": norm.running_var.clone()}
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_equals_batchnorm_over_the_global_batch():
    """2 processes x 4 rows through GlobalBatchNorm == BatchNorm over the 8 rows in one process: outputs, running
    statistics, and the DDP-averaged gradients of an upstream parameter and of the affine weights."""
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_global_batchnorm_worker, args=(_free_port(), results), nprocs=WORLD, join=True)
    for shape in ((8, 3, 4, 4), (8, 5)):
        x, theta, weights = _batchnorm_problem(shape)
        theta = theta.requires_grad_(True)
        norm = torch.nn.BatchNorm2d(shape[1]) if len(shape) == 4 else torch.nn.BatchNorm1d(shape[1])
        with torch.no_grad():
            norm.weight.copy_(torch.linspace(0.5, 1.5, shape[1])), norm.bias.copy_(torch.linspace(-0.5, 0.5, shape[1]))
        out = norm(x * theta.view(1, -1, *[1] * (len(shape) - 2)))
        # The objective DDP optimises: the mean of the two processes' losses, each on its own 4 rows.
        ((out[:4] * weights[:4]).mean() + (out[4:] * weights[4:]).mean()).div(2).backward()
        for rank in range(WORLD):
            got = results[(rank, len(shape))]
            torch.testing.assert_close(got["out"], out.detach()[rank * 4:(rank + 1) * 4], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got["running_mean"], norm.running_mean)
            torch.testing.assert_close(got["running_var"], norm.running_var)
            for grad, expected in zip(got["grads"], (theta.grad, norm.weight.grad, norm.bias.grad), strict=True):
                torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_split_batchnorm_normalises_each_split_as_numpy_does(layout, sample_views):
    """SplitBatchNorm2d (MoCo's one-GPU stand-in for per-GPU BN, in every CIFAR recipe) on 16 real views in 4
    splits, also in channels-last layout (--channels_last): split s holds rows s, s+4, s+8, s+12 (the reference
    code's view); each is normalised with its own biased statistics, and the running statistics move towards the
    mean over splits of the unbiased ones. Computed in numpy here."""
    import numpy as np

    (x,) = sample_views(["weak"], count=16)
    splits, momentum, eps = 4, 0.1, 1e-5
    norm = SplitBatchNorm2d(3, splits, momentum=momentum, eps=eps).train()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0])), norm.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    out = norm(x.contiguous(memory_format=layout))

    data = x.double().numpy()
    expected = np.empty_like(data)
    means, unbiased_vars = [], []
    for s in range(splits):
        rows = data[s::splits]
        mean, var = rows.mean(axis=(0, 2, 3)), rows.var(axis=(0, 2, 3))
        normalised = (rows - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps)
        expected[s::splits] = normalised * np.array([0.5, 1.0, 2.0])[None, :, None, None] + np.array(
            [-1.0, 0.0, 1.0])[None, :, None, None]
        count = rows.shape[0] * rows.shape[2] * rows.shape[3]
        means.append(mean), unbiased_vars.append(var * count / (count - 1))
    np.testing.assert_allclose(out.detach().double().numpy(), expected, atol=1e-4)
    assert out.is_contiguous(memory_format=layout)  # the layout survives the split
    state = norm.state_dict()  # running statistics are written from the splits' when read
    np.testing.assert_allclose(state["running_mean"].double().numpy(), momentum * np.mean(means, axis=0), atol=1e-6)
    np.testing.assert_allclose(state["running_var"].double().numpy(),
                               (1 - momentum) + momentum * np.mean(unbiased_vars, axis=0), atol=1e-6)
    assert set(state) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}  # plain BN names


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_split_batchnorm_gradients_and_running_stats_over_steps(layout, sample_views):
    """Three training calls on different real batches, each split normalised by a plain BatchNorm call of its own
    (the independent reference): the same outputs and input/weight/bias gradients, and running statistics that
    follow the reference code's update (average over splits after every call), computed in numpy, as read through
    state_dict, in eval mode and after a save/load round trip."""
    import numpy as np

    splits, momentum, eps = 4, 0.1, 1e-5
    norm = SplitBatchNorm2d(3, splits, momentum=momentum, eps=eps).train()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0])), norm.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    running_mean, running_var = np.zeros(3), np.ones(3)
    for batch in sample_views(["strong", "weak", "strong"], count=16):
        x = batch.clone().contiguous(memory_format=layout).requires_grad_(True)
        upstream = torch.randn_like(x)
        (norm(x) * upstream).sum().backward()

        reference_x = batch.clone().requires_grad_(True)
        weight = norm.weight.detach().clone().requires_grad_(True)
        bias = norm.bias.detach().clone().requires_grad_(True)
        reference = torch.empty_like(batch)
        for s in range(splits):
            reference[s::splits] = F.batch_norm(reference_x[s::splits], None, None, weight, bias, True, 0.0, eps)
        (reference * upstream).sum().backward()
        torch.testing.assert_close(x.grad, reference_x.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(norm.weight.grad, weight.grad, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(norm.bias.grad, bias.grad, atol=1e-3, rtol=1e-4)
        norm.zero_grad()

        data = batch.double().numpy()
        rows = [data[s::splits] for s in range(splits)]
        count = rows[0].shape[0] * rows[0].shape[2] * rows[0].shape[3]
        running_mean = (1 - momentum) * running_mean + momentum * np.mean([r.mean(axis=(0, 2, 3)) for r in rows], 0)
        running_var = (1 - momentum) * running_var + momentum * np.mean(
            [r.var(axis=(0, 2, 3)) * count / (count - 1) for r in rows], 0)

    state = norm.state_dict()
    np.testing.assert_allclose(state["running_mean"].double().numpy(), running_mean, atol=1e-6)
    np.testing.assert_allclose(state["running_var"].double().numpy(), running_var, atol=1e-6)
    assert int(state["num_batches_tracked"]) == 3

    x = sample_views(["weak"], count=8)[0]
    plain = torch.nn.BatchNorm2d(3, eps=eps)
    plain.load_state_dict(state)
    torch.testing.assert_close(norm.eval()(x), plain.eval()(x))  # eval mode: a plain BatchNorm2d on those stats

    loaded = SplitBatchNorm2d(3, splits, momentum=momentum, eps=eps)
    loaded.load_state_dict(state)  # every split restarts from the loaded statistics
    torch.testing.assert_close(loaded.split_running_mean, state["running_mean"].repeat(splits))
    torch.testing.assert_close(loaded.split_running_var, state["running_var"].repeat(splits))


def _method_model(method: str, sync: bool, stack_views: bool = True):
    import hf_contrastive
    from hf_contrastive.distributed import use_global_batchnorm

    torch.manual_seed(0)
    spec = hf_contrastive.get_method(method)
    fields = spec.config_class().to_dict()
    small = {"projection_hidden_size": 64, "prediction_hidden_size": 64, "projection_dim": 32, "queue_size": 256,
             "small_image_stem": False, "stack_views": stack_views}
    model = spec.pretraining_class(spec.config_class(**{k: v for k, v in small.items() if k in fields})).double().train()
    return use_global_batchnorm(model, torch.device("cpu")) if sync else model


def _ddp_gradient_worker(rank: int, port: int, views_by_method: dict, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        for method, views in views_by_method.items():
            model = _method_model(method, sync=True)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            half = views[0].shape[0] // WORLD
            torch.manual_seed(1)  # the same draws in the model (MNN's lambda) on every process and in the reference
            output = ddp(views=[view[rank * half:(rank + 1) * half] for view in views])
            output.loss.backward()  # DDP averages the gradients over the processes
            loss = output.loss.detach().clone()
            dist.all_reduce(loss)
            results[method, rank] = {
                "loss": loss.item() / WORLD,
                "grads": {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None},
                "running_var": model.encoder.backbone.bn1.running_var.clone()}
    finally:
        dist.destroy_process_group()


# Methods whose loss draws random numbers per sample of the per-device batch (MoCHi/SSCL mixing indices, PatchMix's
# patch assignment and partner image) cannot match a 1-process run draw for draw; the others must match exactly.
PER_SAMPLE_RANDOM = {"mochi", "sscl", "patchmix"}
DDP_METHODS = [m for m in __import__("hf_contrastive").available_methods() if m not in PER_SAMPLE_RANDOM]


def _method_views(method: str, sample_views) -> list[torch.Tensor]:
    import hf_contrastive

    return [view.double() for view in sample_views(hf_contrastive.get_method(method).config_class().views)]


@pytest.fixture(scope="module")
def ddp_method_results(sample_views) -> dict:
    """Every method of DDP_METHODS through 2 DDP processes, in one launch (starting the processes costs more than
    a method's step): ``{(method, rank): loss, gradients, running variance}``."""
    views_by_method = {method: _method_views(method, sample_views) for method in DDP_METHODS}
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_gradient_worker, args=(_free_port(), views_by_method, results), nprocs=WORLD, join=True)
    return dict(results)


@pytest.mark.parametrize("method", DDP_METHODS)
def test_ddp_with_global_batchnorm_gives_the_global_batch_gradient(method, sample_views, ddp_method_results):
    """Every method on real CIFAR-10 views: 2 DDP processes x 8 images with distributed_batchnorm=sync give the
    loss, every parameter gradient and the BN running statistics of one process with plain BatchNorm on all 16
    (in-batch negatives through the autograd gather, queue lookups, local-mean losses averaged by DDP).
    In float64, because this network's float32 gradients at init are ill-conditioned (measured: plain BatchNorm,
    one process, float32 against float64 differs by up to 26% in layer4 weight gradients), which would hide errors."""
    views = _method_views(method, sample_views)
    # One call per view: the BN running statistics then get one update per view, as in the processes (GlobalBatchNorm
    # never stacks views).
    reference = _method_model(method, sync=False, stack_views=False)
    torch.manual_seed(1)
    loss = reference(views=views).loss
    loss.backward()
    for rank in range(WORLD):
        got = ddp_method_results[method, rank]
        assert got["loss"] == pytest.approx(loss.item(), abs=1e-10)
        torch.testing.assert_close(got["running_var"], reference.encoder.backbone.bn1.running_var, rtol=1e-9, atol=1e-9)
        for name, parameter in reference.named_parameters():
            if parameter.grad is not None:
                torch.testing.assert_close(got["grads"][name], parameter.grad, rtol=1e-7, atol=1e-9, msg=name)


def _train(output_dir: Path, processes: int, per_device_batch: int, method: str,
           flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[1]
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(_free_port())]
    command = launcher + [
        str(repo / "recipes" / "train.py"), "--method", method,
        "--dataset_name", str(repo / "hf_contrastive" / "sample_data" / "cifar10_sample"),
        "--max_train_samples", "128", "--max_eval_samples", "64", "--per_device_train_batch_size", str(per_device_batch),
        "--max_train_steps", "3", "--dataloader_num_workers", "0", "--report_to", "none", "--output_dir", str(output_dir),
        "--config_overrides", "projection_hidden_size=128,small_image_stem=false,distributed_batchnorm=sync", *flags,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    return completed


@pytest.mark.parametrize("method, flags", [("mnn", ()), ("simclr", ("--data_on_device",))])
def test_two_processes_train_what_one_process_trains_with_the_global_batch(tmp_path, method, flags):
    """The real recipes/train.py under torchrun with 2 CPU processes (gloo) x 16 images against 1 process x 32, with
    BatchNorm over the global batch (distributed_batchnorm=sync): same samples and augmentations per step (the
    sampler shards the 1-process batch; views are a function of (seed, epoch, index)), same schedule, same MNN lambda
    draws, so loss, weights, teachers and queues after 3 steps must agree. Exactly in float64 (the test above); here,
    in float32, up to rounding amplified by this network's ill-conditioned gradients at init (float32 vs float64
    gradients differ by up to 26% in layer4), hence the bounds: measured differences are 5e-4 on the loss and 3e-4
    on any tensor entry; a wrong schedule, sample split or normalisation gives differences of 1e-2 and more.
    SimCLR runs with --data_on_device: each process holds the split on its device and makes its rows' views there,
    with the parameters drawn for the global batch, so its two processes also see what one process sees."""
    from safetensors.torch import load_file

    two = _train(tmp_path / "two", 2, 16, method, flags)
    output = two.stdout + two.stderr
    assert "global batch 32" in output and "2 process(es)" in output
    _train(tmp_path / "one", 1, 32, method, flags)
    results = {name: json.loads((tmp_path / name / "all_results.json").read_text()) for name in ("one", "two")}
    assert results["two"]["num_processes"] == 2 and results["two"]["global_step"] == results["one"]["global_step"] == 3
    assert results["two"]["epochs"] == results["one"]["epochs"]  # steps per epoch counted on the sharded loader
    assert abs(results["two"]["final_loss"] - results["one"]["final_loss"]) < 2e-3
    weights = {name: load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in ("one", "two")}
    assert weights["one"].keys() == weights["two"].keys()
    worst = max((weights["one"][key].double() - weights["two"][key].double()).abs().max().item()
                for key in weights["one"] if weights["one"][key].is_floating_point())
    assert worst < 2e-3, worst


def test_knn_eval_gives_the_same_accuracy_with_two_processes(tmp_path):
    """Uneven splits (101 bank, 63 test images, batches of 16) pad the last batch of one process:
    gather_for_metrics must drop the duplicates so 2 processes score exactly what 1 process scores."""
    import hf_contrastive
    from hf_contrastive.hub import CardContext, save_hub_folder

    repo = Path(__file__).resolve().parents[1]
    torch.manual_seed(0)
    config = hf_contrastive.MNNConfig(small_image_stem=False, queue_size=64, projection_hidden_size=64, projection_dim=32)
    model = hf_contrastive.MNNForPreTraining(config).eval()
    context = CardContext(dataset_name="hf_contrastive/sample_data/cifar10_sample", dataset_stats="cifar10",
                          train_samples=0, epochs=0.0, global_batch_size=0, command="pytest", knn_top1=None, eval_split="test")
    save_hub_folder(model, hf_contrastive.get_method("mnn"), tmp_path / "model", image_mean=(0.4914, 0.4822, 0.4465),
                    image_std=(0.2023, 0.1994, 0.2010), context=context)
    common = [str(repo / "recipes" / "knn_eval.py"), "--model_name_or_path", str(tmp_path / "model"),
              "--dataset_name", str(repo / "hf_contrastive" / "sample_data" / "cifar10_sample"),
              "--max_train_samples", "101",
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


@pytest.mark.parametrize("splits", [1, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "channels_last"])
def test_split_batchnorm_on_stacked_views_normalises_each_view_and_split_on_its_own(splits, layout, sample_views):
    """Two real views stacked as ContrastiveModel.encode_views stacks them (row i * 2 + v), with view_groups = 2:
    every (split, view) group normalised by a plain BatchNorm call of its own (outputs and input/weight/bias
    gradients), and one running-statistics update with the mean over views and splits of the group statistics
    (numpy), in both memory layouts."""
    import numpy as np

    momentum, eps = 0.1, 1e-5
    norm = SplitBatchNorm2d(3, splits, momentum=momentum, eps=eps).train()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0])), norm.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    views = sample_views(["strong", "weak"], count=16)
    stacked = torch.stack(views, dim=1).flatten(0, 1)
    x = stacked.clone().contiguous(memory_format=layout).requires_grad_(True)
    upstream = torch.randn_like(x)
    norm.view_groups = 2
    out = norm(x)
    norm.view_groups = 1
    (out * upstream).sum().backward()
    assert out.is_contiguous(memory_format=layout)

    reference_x = stacked.clone().requires_grad_(True)
    weight = norm.weight.detach().clone().requires_grad_(True)
    bias = norm.bias.detach().clone().requires_grad_(True)
    reference = torch.empty_like(stacked)
    for v in range(2):
        for s in range(splits):
            rows = slice(s * 2 + v, None, 2 * splits)  # image i = n * splits + s of view v sits at row i * 2 + v
            reference[rows] = F.batch_norm(reference_x[rows], None, None, weight, bias, True, 0.0, eps)
    (reference * upstream).sum().backward()
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, reference_x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.weight.grad, weight.grad, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(norm.bias.grad, bias.grad, atol=1e-3, rtol=1e-4)

    groups = [view.double().numpy()[s::splits] for view in views for s in range(splits)]
    count = groups[0].shape[0] * groups[0].shape[2] * groups[0].shape[3]
    mean = momentum * np.mean([g.mean(axis=(0, 2, 3)) for g in groups], 0)
    var = (1 - momentum) + momentum * np.mean([g.var(axis=(0, 2, 3)) * count / (count - 1) for g in groups], 0)
    state = norm.state_dict()
    np.testing.assert_allclose(state["running_mean"].double().numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(state["running_var"].double().numpy(), var, atol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "channels_last"])
def test_split_norms_prepared_together_equal_each_norm_on_its_own(layout, sample_views):
    """ContrastiveModel makes every split norm's repeated weight and bias, expanded statistics and counter for a
    call together (`prepare_split_calls`: one gather for the weights and biases); a backbone called directly makes them
    norm by norm. On a ResNet-18 with 4 splits, two real views stacked and then one view alone, over two steps: the
    same features, input and parameter gradients, per-split running statistics and counters."""
    from hf_contrastive import MNNConfig
    from hf_contrastive.models import ContrastiveModel

    torch.manual_seed(0)
    config = MNNConfig(bn_splits=4, small_image_stem=False)
    prepared, direct = ContrastiveModel(config).double().train(), ContrastiveModel(config).double().train()
    direct.load_state_dict(prepared.state_dict())
    direct_norms = [m for m in direct.backbone.modules() if isinstance(m, SplitBatchNorm2d)]
    was_prepared = []  # what the norms saw in their calls: prepared (model) or not (backbone alone)
    for norm in (next(m for m in prepared.modules() if isinstance(m, SplitBatchNorm2d)), direct_norms[0]):
        norm.register_forward_pre_hook(lambda norm, args: was_prepared.append(norm.prepared_call is not None))
    views = [v.double() for v in sample_views(["strong", "weak"], count=16)]
    for step, batches in enumerate(([views[0], views[1]], [views[1]])):
        for model in (prepared, direct):
            model.zero_grad()
        stacked = torch.stack(batches, dim=1).flatten(0, 1).contiguous(memory_format=layout)
        x_prepared, x_direct = stacked.clone().requires_grad_(True), stacked.clone().requires_grad_(True)
        for norm in [*direct_norms, *(m for m in prepared.backbone.modules() if isinstance(m, SplitBatchNorm2d))]:
            norm.view_groups = len(batches)
        features = prepared(x_prepared).pooler_output
        reference = direct.backbone.forward_head(direct.backbone.forward_features(x_direct), pre_logits=True)
        for norm in [*direct_norms, *(m for m in prepared.backbone.modules() if isinstance(m, SplitBatchNorm2d))]:
            norm.view_groups = 1
        upstream = torch.randn_like(features)
        (features * upstream).sum().backward()
        (reference * upstream).sum().backward()
        torch.testing.assert_close(features, reference, rtol=1e-10, atol=1e-12, msg=f"step {step}")
        torch.testing.assert_close(x_prepared.grad, x_direct.grad, rtol=1e-9, atol=1e-11)
        for (name, parameter), other in zip(prepared.named_parameters(), direct.parameters(), strict=True):
            torch.testing.assert_close(parameter.grad, other.grad, rtol=1e-9, atol=1e-11, msg=name)
        for (name, buffer), other in zip(prepared.named_buffers(), direct.buffers(), strict=True):
            torch.testing.assert_close(buffer, other, rtol=1e-12, atol=1e-14, msg=name)
    assert was_prepared == [True, False, True, False]
    assert all(norm.prepared_call is None for norm in prepared.modules() if isinstance(norm, SplitBatchNorm2d))
    assert int(direct_norms[0].num_batches_tracked) == 2


def test_cached_norm_and_teacher_lists_follow_module_swaps(sample_views):
    """A training step reuses its backbone's list of norms and its teachers' module lists instead of walking the
    modules again; a module swapped in after a step (here GlobalBatchNorm for every norm, as multi-process CPU
    training does, and a new teacher head) is seen by the next step: the views go through one call each, as any
    non-split norm needs, and the EMA moves the new head; after a conversion that gives the model new parameter
    tensors, the EMA moves those."""
    from hf_contrastive import BYOLConfig, BYOLForPreTraining
    from hf_contrastive.distributed import use_global_batchnorm

    torch.manual_seed(0)
    model = BYOLForPreTraining(BYOLConfig(bn_splits=2, small_image_stem=False)).train()
    views = sample_views(["strong", "weak"], count=8)
    model(views=views)
    model.momentum_update()
    assert all(isinstance(norm, SplitBatchNorm2d) for norm in model.encoder.batch_norms())

    use_global_batchnorm(model.encoder, torch.device("cpu"))
    new_head = copy.deepcopy(model.teacher_projector)
    model.teacher_projector = new_head
    with torch.no_grad():
        for parameter in model.projector.parameters():  # the student moves away from the teacher
            parameter.add_(1.0)
    assert model.encoder.batch_norms() and all(
        isinstance(norm, GlobalBatchNorm) for norm in model.encoder.batch_norms())
    calls = []
    handle = model.encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    model.encoder.encode_views(views)
    handle.remove()
    assert calls == [8, 8]  # one call per view: GlobalBatchNorm would mix the stacked views' statistics
    before = [p.clone() for p in new_head.parameters()]
    model.momentum_update()
    assert model.teacher_pairs()[0][0][1] is new_head
    assert any(not torch.equal(p, old) for p, old in zip(new_head.parameters(), before, strict=True))

    # Parameters replaced by a conversion (here torch's option to give .double() new Parameter objects) are the ones
    # the next EMA moves.
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        model.double()
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(False)
    with torch.no_grad():
        for parameter in model.projector.parameters():
            parameter.add_(1.0)
    before = [p.clone() for p in model.teacher_projector.parameters()]
    model.momentum_update()
    assert all(p.dtype == torch.float64 for p in model.teacher_projector.parameters())
    assert any(not torch.equal(p, old) for p, old in zip(model.teacher_projector.parameters(), before, strict=True))


def test_listed_split_norm_tensors_follow_a_conversion(sample_views):
    """A training call reads its split norms' weights, counters and statistics from lists made once
    (`ContrastiveModel.split_norms`). Casting the backbone alone (not through the model) gives the norms new buffers:
    the next call updates those, in the new dtype, and counts on the new counters."""
    from hf_contrastive import MNNConfig
    from hf_contrastive.models import ContrastiveModel

    torch.manual_seed(0)
    model = ContrastiveModel(MNNConfig(bn_splits=2, small_image_stem=False)).train()
    view = sample_views(["strong"], count=8)[0]
    model(view)
    model.backbone.double()
    norm = model.split_norms().norms[0]
    before = norm.split_running_mean.clone()
    assert before.dtype == torch.float64
    model(view.double())
    assert int(norm.num_batches_tracked) == 2
    assert not torch.equal(norm.split_running_mean, before)
    assert all(t.dtype == torch.float64 for t in model.split_norms().affine)


def test_split_with_one_value_per_channel_says_what_to_change():
    """A split of one image at a 1x1 map has no variance to normalise with: a clear error, not NaN statistics."""
    norm = SplitBatchNorm2d(4, num_splits=2).train()
    with pytest.raises(ValueError, match="fewer bn_splits"):
        norm(torch.randn(2, 4, 1, 1))
    assert norm(torch.randn(4, 4, 1, 1)).shape == (4, 4, 1, 1)
