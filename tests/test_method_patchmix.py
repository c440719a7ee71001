"""PatchMix-specific behaviour: the loss against numpy loops with the official targets, the patch mixing, forward ==
the loss of independently recomputed outputs on real CIFAR-10 images, teacher EMA (no queue), the momentum encoder as
the published one, the official ViT init, config checks, and the native timm export of the ViT encoder.

A tiny ViT (vit_tiny_patch16_224 at 32 px, 8 px patches: a 4 x 4 grid, 2 blocks) keeps the file fast.
"""

from __future__ import annotations

import json
import math

import method_tester as mt
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

import hf_contrastive
from hf_contrastive import cli
from hf_contrastive.data import DATASET_STATS
from hf_contrastive.hub import CardContext, save_hub_folder
from hf_contrastive.losses import patchmix_loss
from hf_contrastive.models.configuration_patchmix import PatchMixConfig
from hf_contrastive.models.modeling_patchmix import (
    PatchMixForPreTraining,
    draw_mix_groups,
    patch_mix,
)

BATCH = 16
PATCH = 8
CELLS = (32 // PATCH) ** 2
TINY = {
    "backbone": "vit_tiny_patch16_224",
    "backbone_kwargs": {"img_size": 32, "patch_size": PATCH, "depth": 2, "drop_path_rate": 0.0},
    "projection_hidden_size": 64,
    "projection_dim": 32,
}


TESTER = mt.MethodTester(PatchMixConfig, PatchMixForPreTraining, small=TINY, student=("student_encoder", "projector", "predictor"),
                         teacher=("encoder", "teacher_projector"))  # the momentum encoder is ``encoder``: the one PatchMix publishes
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


# ---------------------------------------------------------------------------- the loss against numpy


def _np_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_soft_ce(a: np.ndarray, b: np.ndarray, targets: np.ndarray, tau: float) -> float:
    """mean_i sum_j -T_ij log softmax_j(<a_i, b_j> / tau), with explicit loops."""
    a, b = _np_normalize(a), _np_normalize(b)
    total = 0.0
    for i in range(a.shape[0]):
        logits = [float(a[i] @ b[j]) / tau for j in range(b.shape[0])]
        top = max(logits)
        log_norm = top + math.log(sum(math.exp(value - top) for value in logits))
        total += sum(-targets[i, j] * (logits[j] - log_norm) for j in range(b.shape[0]))
    return total / a.shape[0]


def _official_targets(batch: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The official PatchMixer's soft targets (module/mix.py, smoothing 0), written from its index arithmetic:
    mixed image i holds images i..i+m-1 (mod batch) at 1/m each; mixed -> mixed weight (1 - |d|/m) / m for the mixed
    images i + d, d = -(m-1)..(m-1)."""
    mixed_to_original = np.zeros((batch, batch))
    mixed_to_mixed = np.zeros((batch, batch))
    for i in range(batch):
        for offset in range(m):
            mixed_to_original[i, (i + offset) % batch] += 1.0 / m
        for d in range(-(m - 1), m):
            mixed_to_mixed[i, (i + d) % batch] += (1.0 - abs(d) / m) / m
    return mixed_to_original, mixed_to_mixed


@pytest.mark.parametrize("m", [2, 3])
def test_loss_equals_the_official_soft_target_cross_entropies(m):
    rng = np.random.default_rng(m)
    batch, dim, tau = 6, 5, 0.2
    q, k, mq, k_src, mk = (rng.normal(size=(batch, dim)) for _ in range(5))
    to_original, to_mixed = _official_targets(batch, m)
    np.testing.assert_allclose(to_mixed.sum(1), 1.0)
    expected = (_np_soft_ce(q, k, np.eye(batch), tau) + 0.5 * _np_soft_ce(mq, k_src, to_original, tau)
                + 0.5 * _np_soft_ce(mq, mk, to_mixed, tau))
    shares = torch.tensor(to_original, dtype=torch.float32)
    got = patchmix_loss(*(torch.tensor(x, dtype=torch.float32) for x in (q, k, mq, k_src, mk)), shares, shares, tau)
    assert got.dim() == 0 and got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_loss_with_unequal_shares_and_weights_against_numpy_loops():
    rng = np.random.default_rng(7)
    batch, dim, tau = 5, 4, 0.5
    q, k, mq, k_src, mk = (rng.normal(size=(batch, dim)) for _ in range(5))
    query_shares = rng.dirichlet(np.ones(batch), size=batch)
    key_shares = rng.dirichlet(np.ones(batch), size=batch)
    to_mixed = np.zeros((batch, batch))  # chance that a patch of mixed query i and one of mixed key k share a source
    for i in range(batch):
        for kk in range(batch):
            to_mixed[i, kk] = sum(query_shares[i, j] * key_shares[kk, j] for j in range(batch))
    expected = (_np_soft_ce(q, k, np.eye(batch), tau) + 0.3 * _np_soft_ce(mq, k_src, query_shares, tau)
                + 0.7 * _np_soft_ce(mq, mk, to_mixed, tau))
    tensors = [torch.tensor(x, dtype=torch.float32) for x in (q, k, mq, k_src, mk, query_shares, key_shares)]
    got = patchmix_loss(*tensors, tau=tau, mixed_to_original_weight=0.3, mixed_to_mixed_weight=0.7)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_loss_gradients_reach_only_the_queries_and_shapes_are_checked():
    q, k, mq, k_src, mk = (torch.randn(4, 3, requires_grad=True) for _ in range(5))
    shares = torch.eye(4)
    patchmix_loss(q, k, mq, k_src, mk, shares, shares).backward()
    assert q.grad is not None and mq.grad is not None
    assert all(t.grad is None for t in (k, k_src, mk))  # keys are constants, as the official EMA keys
    with pytest.raises(ValueError, match="mixed_key must have the shape of query"):
        patchmix_loss(q, k, mq, k_src, mk[:3], shares, shares)
    with pytest.raises(ValueError, match=r"key_shares must be \[4, 4\]"):
        patchmix_loss(q, k, mq, k_src, mk, shares, shares[:3])


# ---------------------------------------------------------------------------- patch mixing


def test_draw_mix_groups_splits_a_random_permutation_as_the_official_mixer():
    torch.manual_seed(3)
    groups = draw_mix_groups(16, 2)
    torch.manual_seed(3)
    order = torch.randperm(16)  # the global RNG draw it makes
    expected = torch.empty(16, dtype=torch.long)
    expected[order[:8]], expected[order[8:]] = 0, 1
    assert torch.equal(groups, expected)
    assert torch.bincount(draw_mix_groups(16, 3), minlength=3).tolist() == [6, 5, 5]  # 16 % 3 stays with image
    with pytest.raises(ValueError, match=r"num_mix must be in \[1, num_cells=4\]"):
        draw_mix_groups(4, 5)


def test_patch_mix_takes_every_cell_from_the_assigned_image_at_the_same_place():
    torch.manual_seed(0)
    batch, channels, height, width, ph, pw = 3, 2, 4, 9, 2, 3  # a 2 x 3 grid of 2 x 3 cells
    pixels = torch.randn(batch, channels, height, width)
    groups = torch.tensor([0, 1, 2, 1, 0, 1])
    mixed, shares = patch_mix(pixels, groups, (ph, pw))
    for i in range(batch):
        for cell in range(6):
            row, col = divmod(cell, 3)
            source = (i + int(groups[cell])) % batch
            window = (slice(None), slice(row * ph, (row + 1) * ph), slice(col * pw, (col + 1) * pw))
            assert torch.equal(mixed[i][window], pixels[source][window])
    expected = torch.zeros(batch, batch)
    for i in range(batch):
        expected[i, i], expected[i, (i + 1) % batch], expected[i, (i + 2) % batch] = 2 / 6, 3 / 6, 1 / 6
    torch.testing.assert_close(shares, expected)
    with pytest.raises(ValueError, match="cannot be cut"):
        patch_mix(pixels, groups, (3, 3))


# ---------------------------------------------------------------------------- the model on real images


def _mix_by_hand(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Official mixing for m = 2: the first half of the permuted cells from the image itself, the rest from the next
    image of the batch, every cell at its own place."""
    mixed = x.clone()
    grid = x.shape[-1] // PATCH
    for cell in order[CELLS // 2:].tolist():
        row, col = divmod(cell, grid)
        window = (slice(None), slice(row * PATCH, (row + 1) * PATCH), slice(col * PATCH, (col + 1) * PATCH))
        for i in range(x.shape[0]):
            mixed[i][window] = x[(i + 1) % x.shape[0]][window]
    return mixed


def _half_and_half(batch: int) -> torch.Tensor:
    shares = torch.zeros(batch, batch)
    for i in range(batch):
        shares[i, i] = shares[i, (i + 1) % batch] = 0.5
    return shares


@pytest.mark.parametrize("symmetric", [False, True])
def test_forward_is_the_loss_of_recomputed_outputs_on_mixed_real_images(views, symmetric):
    model = TESTER.model(symmetric=symmetric).train()
    torch.manual_seed(11)
    output = model(views=views)
    assert output.queue_keys is None and output.loss.dim() == 0 and torch.isfinite(output.loss)

    torch.manual_seed(11)  # forward's only random draws: one cell permutation per view, view 1 first
    orders = [torch.randperm(CELLS), torch.randperm(CELLS)]
    x1, x2 = views
    mix1, mix2 = _mix_by_hand(x1, orders[0]), _mix_by_hand(x2, orders[1])
    assert not torch.equal(mix1, x1)
    shares = _half_and_half(BATCH)
    with torch.no_grad():  # train-mode BN in the heads, one call per batch, as forward
        q1, mq2, k1, k2, mk1 = (TESTER.student_output(model, x1), TESTER.student_output(model, mix2), TESTER.teacher_output(model, x1), TESTER.teacher_output(model, x2),
                                TESTER.teacher_output(model, mix1))
        expected = patchmix_loss(q1, k2, mq2, k1, mk1, shares, shares, 0.2)
        if symmetric:
            q2, mq1, mk2 = TESTER.student_output(model, x2), TESTER.student_output(model, mix1), TESTER.teacher_output(model, mix2)
            expected = 0.5 * (expected + patchmix_loss(q2, k1, mq1, k2, mk2, shares, shares, 0.2))
    torch.testing.assert_close(output.loss.detach(), expected)


def test_teacher_starts_as_student_is_frozen_and_follows_by_ema(views):
    model = TESTER.model(backbone_kwargs={**TINY["backbone_kwargs"], "drop_path_rate": 0.1}).train()
    assert not any(isinstance(m, hf_contrastive.FeatureQueue) for m in model.modules())  # in-batch keys only
    student = dict(model.student_encoder.named_parameters()) | {
        f"p.{k}": v for k, v in model.projector.named_parameters()
    }
    teacher = dict(model.encoder.named_parameters()) | {
        f"p.{k}": v for k, v in model.teacher_projector.named_parameters()
    }
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[name], teacher[name]) for name in student)
    assert not any(p.requires_grad for p in teacher.values())
    # stochastic depth in the student only, as the official base/momentum encoders
    student_drop = [m.drop_prob for m in model.student_encoder.modules() if isinstance(m, timm.layers.DropPath)]
    teacher_drop = [m.drop_prob for m in model.encoder.modules() if isinstance(m, timm.layers.DropPath)]
    assert student_drop and max(student_drop) > 0 and teacher_drop == [0.0] * len(student_drop)

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(views=views).loss.backward()
    assert all(p.grad is None for p in teacher.values())
    assert all(p.grad is not None for p in model.predictor.parameters())
    old_teacher = {name: p.detach().clone() for name, p in teacher.items()}
    optimizer.step()
    model.momentum_update()
    moved = 0
    for name in student:
        expected = 0.996 * old_teacher[name] + 0.004 * student[name].detach()
        torch.testing.assert_close(teacher[name].detach(), expected)
        moved += not torch.equal(teacher[name], old_teacher[name])
    assert moved > 0


def test_the_published_encoder_is_the_momentum_encoder(tmp_path, views):
    """As the official evaluation (config/knn/knn.py: encoder = 'momentum_encoder'), the Hub folder's encoder, and so
    AutoModel's and the classifier's, is the EMA encoder, not the gradient-trained student."""
    model = TESTER.model().train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(views=views).loss.backward()
    optimizer.step()
    model.momentum_update()
    momentum = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
    student = {k: v.detach().clone() for k, v in model.student_encoder.state_dict().items()}
    assert any(not torch.equal(momentum[k], student[k]) for k in momentum)  # one step apart

    mean, std = DATASET_STATS["cifar10"]
    context = CardContext(dataset_name="cifar10_sample", dataset_stats="cifar10", train_samples=16, epochs=0.0,
                          global_batch_size=16, command="pytest", knn_top1=None, eval_split="test")
    folder = save_hub_folder(model.eval(), hf_contrastive.get_method("patchmix"), tmp_path / "model",
                             image_mean=mean, image_std=std, context=context)
    assert "student encoder (the published encoder is its EMA)" in (folder / "README.md").read_text()

    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, momentum[name]), name
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixel_values=views[0]).pooler_output,
                                   model.encoder(pixel_values=views[0]).pooler_output)
    classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, num_labels=10)
    assert all(torch.equal(t, momentum[k]) for k, t in classifier.encoder.state_dict().items())
    assert all(p.requires_grad for p in classifier.encoder.parameters())  # fine-tuned, not frozen as a teacher

    restored = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True)
    assert all(torch.equal(t, student[k]) for k, t in restored.student_encoder.state_dict().items())
    assert not any(p.requires_grad for p in restored.encoder.parameters())  # still the EMA teacher
    assert all(p.requires_grad for p in restored.student_encoder.parameters())


# ---------------------------------------------------------------------------- defaults, init, config


def test_defaults_are_the_official_cifar_recipe():
    config = PatchMixConfig()
    assert config.backbone == "vit_small_patch16_224" and not config.small_image_stem
    assert config.backbone_kwargs == {"img_size": 32, "patch_size": 2, "num_heads": 12, "drop_path_rate": 0.1}
    assert (config.tau, config.ema_momentum, config.mix_num, config.mix_patch_size) == (0.2, 0.996, 2, None)
    assert (config.projection_hidden_size, config.projection_dim) == (4096, 256)
    assert (config.projection_layers, config.prediction_layers) == (3, 2)
    assert (config.mixed_to_original_weight, config.mixed_to_mixed_weight, config.symmetric) == (0.5, 0.5, False)
    assert config.distributed_batchnorm == "sync" and config.views == ["byol_blur", "byol_solarize"]
    assert PatchMixConfig(backbone="resnet18").backbone_kwargs == {}  # the ViT kwargs only go with the ViT


def test_heads_are_moco_v3_mlps_and_the_vit_gets_the_official_init():
    model = TESTER.model(projection_layers=3, prediction_layers=2)
    assert [type(m).__name__ for m in model.projector] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert [type(m).__name__ for m in model.predictor] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert all(m.bias is None for m in model.projector if isinstance(m, torch.nn.Linear))
    assert not model.projector[-1].affine and not model.predictor[-1].affine
    assert model.mix_patch_size == (PATCH, PATCH)

    vit = model.encoder.backbone
    qkv = vit.blocks[0].attn.qkv  # [3 * 192, 192]: each of q, k, v xavier-uniform on 192 x 192
    assert qkv.weight.abs().max() <= math.sqrt(6 / (192 + 192)) and qkv.weight.std() > 0.8 * math.sqrt(2 / 384)
    assert qkv.bias.abs().max() == 0 and vit.blocks[0].mlp.fc1.bias.abs().max() == 0
    fc1 = vit.blocks[0].mlp.fc1.weight  # [768, 192]
    assert fc1.std().item() == pytest.approx(math.sqrt(2 / (192 + 768)), rel=0.05)
    proj = vit.patch_embed.proj.weight  # fan-in 3 x 8 x 8, fan-out 192
    assert proj.abs().max() <= math.sqrt(6 / (192 + 192)) and proj.std() > 0.8 * math.sqrt(2 / 384)
    assert vit.cls_token.abs().max() < 1e-4

    generic = TESTER.model(moco_vit_init=False).encoder.backbone.blocks[0].attn.qkv
    assert generic.bias.abs().max() > 0  # the package's generic init (torch default Linear)


def test_loading_keeps_the_weights_and_the_mixing_patch_size_is_resolved(tmp_path):
    model = TESTER.model()
    model.save_pretrained(tmp_path)
    loaded = PatchMixForPreTraining.from_pretrained(tmp_path)  # the ViT init must not overwrite loaded weights
    for (name, tensor), other in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(tensor, other), name
    assert TESTER.model(mix_patch_size=4).mix_patch_size == (4, 4)
    with pytest.raises(ValueError, match="set mix_patch_size"):
        PatchMixForPreTraining(PatchMixConfig(backbone="resnet18", projection_hidden_size=64, projection_dim=32))
    with pytest.raises(ValueError, match="not divisible by the mixing patch size"):
        TESTER.model(mix_patch_size=5)
    with pytest.raises(ValueError, match="exceeds the 16 patches"):
        TESTER.model(mix_num=17)


test_config_validation = mt.config_validation_test(
    PatchMixConfig,
    [
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"mix_num": 0}, ValueError, r"mix_num must be >= 1"),
        ({"mix_patch_size": 0}, ValueError, "mix_patch_size must be >= 1 or None"),
        ({"mixed_to_mixed_weight": -1.0}, ValueError, "must be >= 0"),
        ({"projection_layers": 0}, ValueError, "projection_layers must be >= 1"),
        ({"projection_dim": 0}, ValueError, "projection_dim must be >= 1"),
        ({"bn_splits": 2, "distributed_batchnorm": "local"}, ValueError, "bn_splits must be 1"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"mix_num": 2.0}, TypeError, "mix_num must be int"),
        ({"symmetric": "yes"}, TypeError, "symmetric must be bool"),
    ],
)


# ---------------------------------------------------------------------------- native timm export


def test_vit_encoder_exports_natively_with_timm(tmp_path, sample_images):
    mean, std = DATASET_STATS["cifar10"]
    model = TESTER.model().eval()
    context = CardContext(dataset_name="cifar10_sample", dataset_stats="cifar10", train_samples=16, epochs=0.0,
                          global_batch_size=16, command="pytest", knn_top1=None, eval_split="test")
    folder = save_hub_folder(model, hf_contrastive.get_method("patchmix"), tmp_path / "model", image_mean=mean,
                             image_std=std, context=context)
    out = tmp_path / "timm"
    assert cli.main(["export", str(folder), str(out), "--format", "timm"]) == 0

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["num_features"] == 192
    model_args = config["model_args"]
    assert model_args["img_size"] in (32, [32, 32]) and model_args["patch_size"] in (PATCH, [PATCH, PATCH])
    assert model_args["depth"] == 2
    from hf_contrastive.data import build_view_transform

    pixels = torch.stack([build_view_transform("eval", 32, mean, std)(image) for image in sample_images(4)])
    with torch.no_grad():
        ours = model.encoder(pixel_values=pixels).pooler_output
        rebuilt = timm.create_model(config["architecture"], num_classes=0, **model_args).eval()
        rebuilt.load_state_dict(load_file(out / "model.safetensors"))
        torch.testing.assert_close(rebuilt(pixels), ours, atol=1e-5, rtol=0)
        native = AutoModel.from_pretrained(out, trust_remote_code=False).eval()
        assert type(native).__name__ == "TimmWrapperModel"
        torch.testing.assert_close(native(pixel_values=pixels).pooler_output, ours, atol=1e-5, rtol=0)
