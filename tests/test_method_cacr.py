"""CACR-specific behaviour: the loss against an independent numpy loop and by hand, forward == the loss of recomputed
projections on real CIFAR-10 images, exact gradients through the cross-process gather, no teacher / no queue, config
checks and the recipes.

The generic test over all methods (training on real images, the loop, the Hub folder) lives in tests/test_methods.py.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import method_tester as mt
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_contrastive import data as data_lib
from hf_contrastive.losses import cacr_loss
from hf_contrastive.models import all_gather_with_grad
from hf_contrastive.models.configuration_cacr import CACRConfig
from hf_contrastive.models.modeling_cacr import CACRForPreTraining
from hf_contrastive.training import parse_args

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH = 16
SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "small_image_stem": False}


# ----------------------------------------------------------------------------- the loss


def reference_cacr(views, tau_pos, tau_neg, alpha=1.0, beta=1.0) -> float:
    """CACR with explicit loops in float64 numpy: official small-scale code's our_loss1 + our_loss2."""
    z = np.asarray(views, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    num_views, batch, _ = z.shape

    attraction = []  # one term per anchor (view v of image i)
    for v in range(num_views):
        for i in range(batch):
            dist = np.array([np.sum((z[v, i] - z[u, i]) ** 2) for u in range(num_views) if u != v])
            weights = np.exp(tau_pos * dist) / np.exp(tau_pos * dist).sum()
            attraction.append(np.sum(weights * dist))

    repulsion = []  # one term per view pair v < u: mean over anchors i of view v, negatives = view u of j != i
    for v in range(num_views):
        for u in range(v + 1, num_views):
            per_anchor = []
            for i in range(batch):
                dist = np.array([np.sum((z[v, i] - z[u, j]) ** 2) for j in range(batch) if j != i])
                weights = np.exp(-tau_neg * dist) / np.exp(-tau_neg * dist).sum()
                per_anchor.append(np.sum(weights * dist))
            repulsion.append(np.mean(per_anchor))
    return alpha * np.mean(attraction) - beta * np.mean(repulsion)


@pytest.mark.parametrize(
    "num_views, batch, dim, tau_pos, tau_neg, alpha, beta",
    [
        (5, 6, 8, 1.0, 0.9, 1.0, 1.0),  # the CIFAR-10 setting: 4 positives per anchor
        (5, 7, 4, 1.0, 2.0, 1.0, 1.0),  # CIFAR-100 / STL-10 temperatures
        (2, 5, 3, 1.0, 0.9, 1.0, 1.0),  # one positive per anchor, one view pair
        (3, 4, 6, 0.0, 0.0, 1.0, 1.0),  # temperatures 0: uniform weights (the paper's ablation)
        (4, 9, 5, 3.0, 0.5, 0.5, 2.0),  # other weights of the two terms
    ],
)
def test_loss_matches_a_numpy_loop(num_views, batch, dim, tau_pos, tau_neg, alpha, beta):
    generator = torch.Generator().manual_seed(num_views * 100 + batch)
    views = torch.randn(num_views, batch, dim, generator=generator) * 3  # raw, not normalised
    expected = reference_cacr(views.numpy(), tau_pos, tau_neg, alpha, beta)
    got = cacr_loss(views, tau_pos, tau_neg, alpha=alpha, beta=beta)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert abs(got.item() - expected) < 1e-5
    # A list of V tensors [B, D] is the same input.
    torch.testing.assert_close(cacr_loss(list(views), tau_pos, tau_neg, alpha=alpha, beta=beta), got)


def test_loss_by_hand():
    # Two views of two images. Attraction (one positive each, weight 1): image 0's views coincide (0), image 1's
    # are (0, 1) and (-1, 0) (distance 2): mean over the 4 anchors = 1. Repulsion (anchor view 0, one negative
    # each, weight 1): (1, 0) vs (-1, 0) = 4, (0, 1) vs (1, 0) = 2: mean 3. Loss = 1 - 3.
    view_0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    view_1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert cacr_loss(torch.stack([view_0, view_1]), 1.0, 0.9).item() == pytest.approx(-2.0)
    # Raw vectors are normalised first.
    assert cacr_loss(torch.stack([5 * view_0, 0.1 * view_1]), 1.0, 0.9).item() == pytest.approx(-2.0)


def test_weights_favour_far_positives_and_close_negatives():
    generator = torch.Generator().manual_seed(3)
    views = torch.randn(4, 6, 5, generator=generator, dtype=torch.float64)
    z = torch.nn.functional.normalize(views, dim=-1)
    pos_dist = ((z[:, None] - z[None]) ** 2).sum(-1)  # [V, V, B]
    pos_dist = pos_dist + torch.eye(4)[:, :, None] * -1  # the anchor itself never wins the max
    neg_dist = ((z[0][:, None] - z[1][None]) ** 2).sum(-1) + torch.eye(6) * 10  # pair (0, 1); same image excluded
    # Very sharp t+: the attraction is the distance to the farthest positive, averaged over anchors.
    attraction = cacr_loss(views, 1e4, 0.0, alpha=1.0, beta=0.0)
    torch.testing.assert_close(attraction, pos_dist.max(dim=1).values.mean(), atol=1e-4, rtol=0)
    # Very sharp t-: the repulsion is the distance to the closest negative (two views: a single pair).
    repulsion = -cacr_loss(views[:2], 0.0, 1e4, alpha=0.0, beta=1.0)
    torch.testing.assert_close(repulsion, neg_dist.min(dim=1).values.mean(), atol=1e-4, rtol=0)


def test_gradients_flow_through_the_weights_unless_detached():
    generator = torch.Generator().manual_seed(4)
    views = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    # float64 stays float64, so finite differences check the analytic gradient (weights included).
    assert torch.autograd.gradcheck(lambda x: cacr_loss(x, 1.0, 0.9), (views,))
    full = torch.autograd.grad(cacr_loss(views, 1.0, 0.9), views)[0]
    detached_loss = cacr_loss(views, 1.0, 0.9, detach_weights=True)
    detached = torch.autograd.grad(detached_loss, views)[0]
    torch.testing.assert_close(detached_loss, cacr_loss(views, 1.0, 0.9))  # same value...
    assert not torch.allclose(full, detached)  # ...another gradient


def test_low_precision_inputs_give_a_float32_loss():
    views = torch.randn(3, 4, 8).to(torch.bfloat16)
    assert cacr_loss(views, 1.0, 0.9).dtype == torch.float32


@pytest.mark.parametrize("shape", [(1, 4, 8), (3, 1, 8), (4, 8)])
def test_loss_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="V >= 2 views and B >= 2 images"):
        cacr_loss(torch.randn(*shape), 1.0, 0.9)


# ----------------------------------------------------------------------------- distributed: exact gradients

WORLD, LOCAL_BATCH, NUM_VIEWS = 2, 3, 3


def _global_views() -> torch.Tensor:
    return torch.randn(NUM_VIEWS, WORLD * LOCAL_BATCH, 8, generator=torch.Generator().manual_seed(0))


def _initial_weight() -> torch.Tensor:
    return torch.randn(8, 8, generator=torch.Generator().manual_seed(1))


def _worker(rank: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        views = _global_views()[:, rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH]
        weight = _initial_weight().requires_grad_(True)  # a shared "network", the same on every rank as under DDP
        loss = cacr_loss(torch.stack([all_gather_with_grad(view @ weight) for view in views]), 1.0, 0.9)
        loss.backward()
        grads = weight.grad.clone()
        dist.all_reduce(grads)  # DDP averages the gradients of the processes
        results[rank] = {"loss": loss.item(), "grads": grads / WORLD}
    finally:
        dist.destroy_process_group()


def test_gathered_loss_is_the_global_batch_loss_with_exact_gradients():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(port, results), nprocs=WORLD, join=True)
    weight = _initial_weight().requires_grad_(True)
    expected = cacr_loss(torch.stack([view @ weight for view in _global_views()]), 1.0, 0.9)
    expected.backward()
    for rank in range(WORLD):
        # Each anchor's negatives are the other 2 x 3 - 1 images of the global batch, on every process...
        assert abs(results[rank]["loss"] - expected.item()) < 1e-5
        # ...and the averaged gradient is the global-batch gradient.
        torch.testing.assert_close(results[rank]["grads"], weight.grad)


# ----------------------------------------------------------------------------- the model on real images


TESTER = mt.MethodTester(CACRConfig, CACRForPreTraining, small=SMALL)
views = mt.views_fixture(["strong"] * 5)  # five strong views of 16 real CIFAR-10 training images


def test_defaults_are_the_official_recipe():
    config = CACRConfig()
    assert (config.projection_hidden_size, config.projection_dim) == (2048, 128)
    assert (config.tau_pos, config.tau_neg, config.alpha, config.beta, config.detach_weights) == (1.0, 0.9, 1.0, 1.0, False)
    assert config.views == ["strong"] * 5  # Ny = 4 positives per anchor
    model = CACRForPreTraining(CACRConfig(**SMALL))
    linear, batch_norm = model.projector[0], model.projector[1]
    assert isinstance(batch_norm, torch.nn.BatchNorm1d) and linear.bias is None  # Linear(no bias) -> BN -> ReLU -> Linear
    assert (linear.in_features, linear.out_features, model.projector[-1].out_features) == (512, 64, 32)


def test_forward_is_the_loss_of_recomputed_projections(views):
    model = TESTER.model(tau_neg=2.0, alpha=0.5, beta=1.5).train()
    output = model(views=views)
    # Recompute each view's projection independently (train-mode BN: each view normalised with its own batch
    # statistics, as forward does).
    with torch.no_grad():
        projections = [model.projector(model.encoder(view).pooler_output) for view in views]
    assert output.loss.dtype == torch.float32 and output.loss.dim() == 0
    expected = reference_cacr(torch.stack(projections).numpy(), 1.0, 2.0, alpha=0.5, beta=1.5)
    assert abs(output.loss.item() - expected) < 1e-5
    torch.testing.assert_close(output.loss.detach(), cacr_loss(torch.stack(projections), 1.0, 2.0, alpha=0.5, beta=1.5))
    # Squared distances of unit vectors lie in [0, 4].
    assert -4 * 1.5 <= output.loss.item() <= 4 * 0.5


def test_fewer_views_and_local_views(sample_views):
    three = sample_views(["strong", "weak", "local"])  # the local view is 16 px
    model = TESTER.model(views=["strong", "weak", "local"]).eval()
    with torch.no_grad():
        output = model(views=three)
        projections = torch.stack([model.projector(model.encoder(view).pooler_output) for view in three])
    assert abs(output.loss.item() - reference_cacr(projections.numpy(), 1.0, 0.9)) < 1e-5


def test_no_teacher_no_queue_and_gradients_reach_encoder_and_projector(views):
    mt.check_no_teacher_no_queue_and_gradients_reach_encoder_and_projector(TESTER.model().train(), views)


def test_wrong_number_of_views_is_rejected(views):
    with pytest.raises(ValueError, match="CACR takes 5 views"):
        TESTER.model()(views=views[:2])


test_config_validation = mt.config_validation_test(
    CACRConfig,
    [
        ({"tau_pos": -0.1}, ValueError, "tau_pos must be >= 0"),
        ({"tau_neg": -1.0}, ValueError, "tau_neg must be >= 0"),
        ({"alpha": 0.0}, ValueError, "alpha must be > 0"),
        ({"beta": -1.0}, ValueError, "beta must be > 0"),
        ({"views": ["strong"]}, ValueError, "at least two views"),
        ({"views": ["strong", "eval"]}, ValueError, "views must be presets"),
        ({"projection_dim": 0}, ValueError, "must be >= 1"),
        ({"tau_neg": "0.9"}, TypeError, "tau_neg must be float"),
        ({"detach_weights": 1}, TypeError, "detach_weights must be bool"),
    ],
)


def test_config_has_no_generation_parameter_names():
    assert not {"temperature", "top_k", "top_p"} & set(CACRConfig().to_dict())


@pytest.mark.parametrize(
    "recipe, tau_neg, image_size",
    [("cacr_cifar10.yaml", 0.9, 32), ("cacr_cifar100.yaml", 2.0, 32), ("cacr_stl10.yaml", 2.0, 64),
     ("cacr_cifar10_alexnet.yaml", 0.9, 32)],
)
def test_recipes_build_the_official_setting(recipe, tau_neg, image_size):
    args = parse_args(["--config", str(REPO_ROOT / "recipes" / "configs" / recipe)])
    assert args.method == "cacr" and args.per_device_train_batch_size == 128 and args.weight_decay == 1e-4
    config = CACRConfig(**args.config_overrides)
    assert (config.tau_pos, config.tau_neg, config.alpha, config.beta) == (1.0, tau_neg, 1.0, 1.0)
    assert config.views == ["strong"] * 5 and config.image_size == image_size
    mean, std = data_lib.DATASET_STATS[args.dataset_stats]
    data_lib.build_view_transform("strong", image_size, mean, std, **args.augmentations["strong"])  # valid overrides
    # The official view: ColorJitter(0.4, 0.4, 0.4, 0.4) on every image (hue 0.4, not the protocol's 0.1), no blur.
    jitter = data_lib.build_view_transform("strong", image_size, mean, std, **args.augmentations["strong"]).transforms[2]
    assert jitter.p == 1.0 and jitter.transforms[0].hue == (-0.4, 0.4)


def _official_small_alexnet_fc7(encoder, x: torch.Tensor) -> torch.Tensor:
    """The official SmallAlexNet's forward up to fc7 (layer_index=-2), written with torch.nn.functional from its
    description (eval mode: BatchNorm with running statistics) and our module's weights."""
    import torch.nn.functional as F

    def bn(module, h):
        return F.batch_norm(h, module.running_mean, module.running_var, module.weight, module.bias, False, 0.0, module.eps)

    blocks = encoder.backbone.features
    for index, block in enumerate(blocks):
        x = F.relu(bn(block[1], F.conv2d(x, block[0].weight, padding=1)))
        if index in (0, 1, 4):  # max-pool after conv blocks 1, 2 and 5
            x = F.max_pool2d(x, 3, 2)
    x = x.flatten(1)
    for fc in (encoder.backbone.fc6, encoder.backbone.fc7):
        x = F.relu(bn(fc[1], F.linear(x, fc[0].weight)))
    return x


@pytest.mark.parametrize("image_size, flat", [(32, 192 * 3 * 3), (64, 192 * 7 * 7)])
def test_small_alexnet_is_the_official_encoder(image_size, flat, sample_views):
    """JegZheng/CACR-SSL small_scale_experiments/*/encoder.py: 96-192-384-384-192 3x3 convs without bias, BN, ReLU,
    max-pool 3/2 after blocks 1, 2, 5; fc6 and fc7 Linear(no bias, 4096) + BN1d + ReLU; weights N(0, 0.02). Our
    pooled output is fc7's, what the official linear evaluation reads; the projector is fc8, Linear(4096, 128)."""
    torch.manual_seed(0)
    model = CACRForPreTraining(CACRConfig(backbone="small_alexnet", small_image_stem=False, image_size=image_size,
                                          projection_layers=1, projection_dim=128))
    backbone = model.encoder.backbone
    convs = [block[0] for block in backbone.features]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == [
        (3, 96, (3, 3), None), (96, 192, (3, 3), None), (192, 384, (3, 3), None), (384, 384, (3, 3), None),
        (384, 192, (3, 3), None)]
    assert backbone.fc6[0].in_features == flat and backbone.fc7[0].out_features == 4096 == model.config.hidden_size
    assert abs(backbone.fc7[0].weight.std().item() - 0.02) < 0.001 and abs(convs[3].weight.std().item() - 0.02) < 0.001
    assert [type(m).__name__ for m in model.projector] == ["Linear"]
    assert (model.projector[0].in_features, model.projector[0].out_features) == (4096, 128)
    assert model.projector[0].bias is not None
    (x,) = sample_views(["weak"], count=4, image_size=image_size)
    with torch.no_grad():
        model.train()(views=[x] * 5)  # a training step moves the BatchNorm running statistics off identity
        model.eval()
        torch.testing.assert_close(model.encoder(x).pooler_output, _official_small_alexnet_fc7(model.encoder, x))
    with pytest.raises(ValueError, match="small_image_stem: false"):
        CACRForPreTraining(CACRConfig(backbone="small_alexnet", small_image_stem=True))


def test_alexnet_recipe_trains_and_its_folder_loads_with_automodel(tmp_path):
    from transformers import AutoModel

    from hf_contrastive.export import can_export_timm
    from hf_contrastive.training import train

    train(parse_args([
        "--config", str(REPO_ROOT / "recipes" / "configs" / "cacr_cifar10_alexnet.yaml"),
        "--dataset_name", str(REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"),
        "--max_train_samples", "32", "--max_eval_samples", "32", "--per_device_train_batch_size", "16",
        "--max_train_steps", "2", "--dataloader_num_workers", "0", "--report_to", "none", "--knn_k", "5",
        "--output_dir", str(tmp_path),
    ]))
    encoder = AutoModel.from_pretrained(tmp_path / "model")
    assert encoder.config.backbone == "small_alexnet"
    with torch.no_grad():
        assert encoder.eval()(torch.zeros(2, 3, 32, 32)).pooler_output.shape == (2, 4096)
    exportable, why = can_export_timm(encoder.config)
    assert not exportable and "--format transformers" in why
