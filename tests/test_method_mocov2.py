"""MoCo v2-specific behaviour on real CIFAR-10 images: symmetric loss against the queue snapshot, keys of both views
from the EMA teacher (with shuffle-BN), teacher initialisation and EMA, config checks.

The generic test over all methods (training on real images, Hub folder) lives elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_contrastive.losses import moco_loss
from hf_contrastive.models.configuration_mocov2 import MoCoV2Config
from hf_contrastive.models.modeling_mocov2 import MoCoV2ForPreTraining

BATCH = 16
SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64}


@pytest.fixture(scope="module")
def views(sample_views) -> list[torch.Tensor]:
    """Two strong views of 16 real CIFAR-10 training images."""
    return sample_views(["strong", "strong"])


def _model(**overrides) -> MoCoV2ForPreTraining:
    torch.manual_seed(0)
    return MoCoV2ForPreTraining(MoCoV2Config(**{**SMALL, **overrides}))


def _student(model, x):
    return model.projector(model.encoder(x).pooler_output)


def _teacher(model, x):
    return model.teacher_projector(model.teacher_encoder(x).pooler_output)


def test_defaults_are_the_benchmark_recipe_and_head_has_no_batch_norm():
    config = MoCoV2Config()
    assert (config.tau, config.ema_momentum, config.queue_size) == (0.2, 0.99, 4096)
    assert (config.projection_hidden_size, config.projection_dim, config.views) == (2048, 128, ["strong", "strong"])
    assert config.enqueue_both_views is True  # MoCo's CIFAR demo; the benchmark's recipe sets False
    model = _model()
    # MoCo v2 MLP: Linear (bias) -> ReLU -> Linear, no BatchNorm
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "ReLU", "Linear"]
    assert model.projector[0].bias is not None
    assert model.queue.features.shape == (64, 32)


def test_teacher_starts_as_student_frozen_and_follows_by_ema(views):
    model = _model().train()
    student = dict(model.encoder.named_parameters()) | {f"p.{k}": v for k, v in model.projector.named_parameters()}
    teacher = dict(model.teacher_encoder.named_parameters()) | {
        f"p.{k}": v for k, v in model.teacher_projector.named_parameters()
    }
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[name], teacher[name]) for name in student)
    assert not any(p.requires_grad for p in teacher.values())

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    output = model(views=views)
    output.loss.backward()
    assert all(p.grad is None for p in teacher.values())
    old_teacher = {name: p.detach().clone() for name, p in teacher.items()}
    optimizer.step()
    model.momentum_update()
    moved = 0
    for name in student:
        expected = 0.99 * old_teacher[name] + 0.01 * student[name].detach()
        torch.testing.assert_close(teacher[name].detach(), expected)
        moved += not torch.equal(teacher[name], old_teacher[name])
    assert moved > 0


def test_loss_is_symmetric_moco_against_the_queue_snapshot_and_keys_are_both_views(views):
    model = _model().train()
    queue_before = model.queue.features.clone()
    pointer_before = model.queue.pointer.clone()
    output = model(views=views)
    # forward reads the queue but never writes it (the loop enqueues after the step)
    assert torch.equal(model.queue.features, queue_before) and torch.equal(model.queue.pointer, pointer_before)

    with torch.no_grad():  # train-mode BN with bn_splits=1: per-view batch statistics, as forward
        q1, q2 = _student(model, views[0]), _student(model, views[1])
        k1, k2 = _teacher(model, views[0]), _teacher(model, views[1])
    expected = 0.5 * (moco_loss(q1, k2, queue_before, 0.2) + moco_loss(q2, k1, queue_before, 0.2))
    torch.testing.assert_close(output.loss.detach(), expected)
    # not the asymmetric loss, and not the pairing of a view with its own key
    assert not torch.allclose(output.loss.detach(), moco_loss(q1, k2, queue_before, 0.2))
    assert not torch.allclose(output.loss.detach(), 0.5 * (moco_loss(q1, k1, queue_before, 0.2)
                                                           + moco_loss(q2, k2, queue_before, 0.2)))

    keys = output.queue_keys["queue"]
    assert set(output.queue_keys) == {"queue"} and keys.shape == (2 * BATCH, 32)
    assert keys.dtype == torch.float32 and not keys.requires_grad
    torch.testing.assert_close(keys, torch.cat([k1, k2]))  # teacher keys, first view first

    model.enqueue(output.queue_keys)
    assert model.queue.pointer.item() == 2 * BATCH
    torch.testing.assert_close(model.queue.features[: 2 * BATCH], keys)
    torch.testing.assert_close(model.queue.features[2 * BATCH :], queue_before[2 * BATCH :])


def test_the_benchmark_enqueues_the_second_views_keys_only_and_its_recipe_says_so(views):
    """pc-cp/Benchmark-Methods-For-MNN enqueues in its update=True direction, whose keys are the second view's: B keys
    per step. The loss is unchanged; mocov2_cifar10.yaml, which sits beside the benchmark's numbers, does this."""
    import yaml

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes/configs/mocov2_cifar10.yaml").read_text())
    assert recipe["model"]["enqueue_both_views"] is False
    model = _model(enqueue_both_views=False).train()
    assert model.queue_keys_per_sample == 1 and _model().queue_keys_per_sample == 2
    queue_before = model.queue.features.clone()
    output = model(views=views)
    with torch.no_grad():
        q1, q2 = _student(model, views[0]), _student(model, views[1])
        k1, k2 = _teacher(model, views[0]), _teacher(model, views[1])
    expected = 0.5 * (moco_loss(q1, k2, queue_before, 0.2) + moco_loss(q2, k1, queue_before, 0.2))
    torch.testing.assert_close(output.loss.detach(), expected)
    torch.testing.assert_close(output.queue_keys["queue"], k2)
    model.enqueue(output.queue_keys)
    assert model.queue.pointer.item() == BATCH


def test_teacher_keys_use_shuffle_bn_when_batch_norm_is_split(views):
    model = _model(bn_splits=2).train()
    torch.manual_seed(123)
    output = model(views=views)
    # The student forwards draw no random numbers, so the two teacher permutations are the first two draws.
    torch.manual_seed(123)
    orders = [torch.randperm(BATCH), torch.randperm(BATCH)]
    with torch.no_grad():
        expected = [_teacher(model, x[order])[torch.argsort(order)] for x, order in zip(views, orders, strict=True)]
        unshuffled = _teacher(model, views[0])
    torch.testing.assert_close(output.queue_keys["queue"], torch.cat(expected))
    # with split BN the batch order matters, so the shuffle is really applied
    assert not torch.allclose(output.queue_keys["queue"][:BATCH], unshuffled)


def test_queue_too_small_for_both_views_keys_is_reported(views):
    model = _model(queue_size=BATCH)  # holds one batch, but each step enqueues 2 x batch
    output = model(views=views)
    with pytest.raises(ValueError, match="must not exceed queue_size"):
        model.enqueue(output.queue_keys)


@pytest.mark.parametrize(
    "fields, error, message",
    [
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"ema_momentum": -0.1}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"queue_size": 1}, ValueError, "queue_size must be >= 2"),
        ({"views": ["strong", "strong", "weak"]}, ValueError, "exactly two views"),
        ({"queue_size": 4096.0}, TypeError, "queue_size must be int"),
    ],
)
def test_config_validation(fields, error, message):
    with pytest.raises(error, match=message):
        MoCoV2Config(**fields)
