"""MoCo v2-specific behaviour on real CIFAR-10 images: symmetric loss against the queue snapshot, keys of both views
from the EMA teacher (with shuffle-BN), teacher initialisation and EMA, config checks.

The generic test over all methods (training on real images, Hub folder) lives elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import method_tester as mt
import pytest
import torch

from hf_contrastive.losses import moco_loss
from hf_contrastive.models.configuration_mocov2 import MoCoV2Config
from hf_contrastive.models.modeling_mocov2 import MoCoV2ForPreTraining

TESTER = mt.MethodTester(MoCoV2Config, MoCoV2ForPreTraining,
                      small={"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64})
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


def test_defaults_are_the_benchmark_recipe_and_head_has_no_batch_norm():
    config = MoCoV2Config()
    assert (config.tau, config.ema_momentum, config.queue_size) == (0.2, 0.99, 4096)
    assert (config.projection_hidden_size, config.projection_dim, config.views) == (2048, 128, ["strong", "strong"])
    assert config.enqueue_both_views is True  # MoCo's CIFAR demo; the benchmark's recipe sets False
    model = TESTER.model()
    # MoCo v2 MLP: Linear (bias) -> ReLU -> Linear, no BatchNorm
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "ReLU", "Linear"]
    assert model.projector[0].bias is not None
    assert model.queue.features.shape == (64, 32)


def test_teacher_starts_as_student_frozen_and_follows_by_ema(views):
    model = TESTER.model().train()
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.99)


def test_loss_is_symmetric_moco_against_the_queue_snapshot_and_keys_are_both_views(views):
    model = TESTER.model().train()
    # forward reads the queue but never writes it (the loop enqueues after the step)
    output, queue_before = mt.forward_reading_the_queue(model, views)
    # train-mode BN with bn_splits=1: per-view batch statistics, as forward
    (q1, q2), (k1, k2) = TESTER.outputs(model, views)
    expected = 0.5 * (moco_loss(q1, k2, queue_before, 0.2) + moco_loss(q2, k1, queue_before, 0.2))
    torch.testing.assert_close(output.loss.detach(), expected)
    # not the asymmetric loss, and not the pairing of a view with its own key
    assert not torch.allclose(output.loss.detach(), moco_loss(q1, k2, queue_before, 0.2))
    assert not torch.allclose(output.loss.detach(), 0.5 * (moco_loss(q1, k1, queue_before, 0.2)
                                                           + moco_loss(q2, k2, queue_before, 0.2)))

    # teacher keys, first view first; enqueued after the step
    mt.check_keys_and_enqueue(model, output, torch.cat([k1, k2]), shape=(2 * mt.BATCH, 32))


def test_the_benchmark_enqueues_the_second_views_keys_only_and_its_recipe_says_so(views):
    """pc-cp/Benchmark-Methods-For-MNN enqueues in its update=True direction, whose keys are the second view's: B keys
    per step. The loss is unchanged; mocov2_cifar10.yaml, which sits beside the benchmark's numbers, does this."""
    import yaml

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes/configs/mocov2_cifar10.yaml").read_text())
    assert recipe["model"]["enqueue_both_views"] is False
    model = TESTER.model(enqueue_both_views=False).train()
    assert model.queue_keys_per_sample == 1 and TESTER.model().queue_keys_per_sample == 2
    queue_before = model.queue.features.clone()
    output = model(views=views)
    (q1, q2), (k1, k2) = TESTER.outputs(model, views)
    expected = 0.5 * (moco_loss(q1, k2, queue_before, 0.2) + moco_loss(q2, k1, queue_before, 0.2))
    torch.testing.assert_close(output.loss.detach(), expected)
    torch.testing.assert_close(output.queue_keys["queue"], k2)
    model.enqueue(output.queue_keys)
    assert model.queue.pointer.item() == mt.BATCH


def test_teacher_keys_use_shuffle_bn_when_batch_norm_is_split(views):
    model = TESTER.model(bn_splits=2).train()
    mt.check_teacher_keys_use_shuffle_bn(model, views, lambda x: TESTER.teacher_output(model, x))


def test_queue_too_small_for_both_views_keys_is_reported(views):
    model = TESTER.model(queue_size=mt.BATCH)  # holds one batch, but each step enqueues 2 x batch
    output = model(views=views)
    with pytest.raises(ValueError, match="must not exceed queue_size"):
        model.enqueue(output.queue_keys)


test_config_validation = mt.config_validation_test(
    MoCoV2Config,
    [
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"ema_momentum": -0.1}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"queue_size": 1}, ValueError, "queue_size must be >= 2"),
        ({"views": ["strong", "strong", "weak"]}, ValueError, "exactly two views"),
        ({"queue_size": 4096.0}, TypeError, "queue_size must be int"),
    ],
)
