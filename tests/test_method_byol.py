"""BYOL-specific behaviour on real CIFAR-10 images: the symmetric loss of forward equals `byol_loss` of independently
recomputed student predictions and teacher projections, nothing is enqueued, gradients reach only the student,
teacher initialisation and EMA, and config validation. (Training, the loop and the Hub folder: tests/test_methods.py.)
"""

from __future__ import annotations

import method_tester as mt
import pytest
import torch

from hf_contrastive.losses import byol_loss
from hf_contrastive.models import BYOLConfig, BYOLForPreTraining

TESTER = mt.MethodTester(BYOLConfig, BYOLForPreTraining, student=("encoder", "projector", "predictor"),
                      # Standard ResNet stem at 32 px (16x cheaper than the small-image stem), small heads: fast on CPU.
                      small={"projection_hidden_size": 64, "projection_dim": 32, "small_image_stem": False})
views = mt.views_fixture(BYOLConfig().views)  # two strong views of 16 real CIFAR-10 training images


def test_default_views_and_symmetry():
    config = BYOLConfig()
    assert config.views == ["strong", "strong"] and config.symmetric is True
    assert config.ema_momentum == 0.99 and (config.projection_hidden_size, config.projection_dim) == (2048, 128)


def test_forward_is_symmetric_byol_loss_of_recomputed_outputs(views):
    model = TESTER.perturbed_model()
    outputs = model(views=views)
    assert outputs.queue_keys is None
    (p1, p2), (z1, z2) = TESTER.outputs(model, views)
    expected = 0.5 * (byol_loss(p1, z2) + byol_loss(p2, z1))
    torch.testing.assert_close(outputs.loss.detach(), expected, rtol=1e-5, atol=1e-6)
    # The pairing matters: predicting the same view's projection gives another value.
    assert not torch.allclose(expected, 0.5 * (byol_loss(p1, z1) + byol_loss(p2, z2)), rtol=1e-4)

    model.config.symmetric = False
    one_way = model(views=views).loss.detach()
    torch.testing.assert_close(one_way, byol_loss(p1, z2), rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_student_only(views):
    model = TESTER.perturbed_model()
    TESTER.check_gradients_reach_the_student_only(model, views)


def test_teacher_starts_as_the_student_and_follows_it_by_ema(views):
    model = TESTER.model(ema_momentum=0.9)
    assert not hasattr(model, "teacher_predictor")  # the predictor has no EMA copy
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.9, shifted="projector")


def test_forward_rejects_a_wrong_number_of_views(views):
    model = TESTER.model()
    with pytest.raises(ValueError, match="two views"):
        model(views=views[:1])


test_config_validation = mt.config_validation_test(
    BYOLConfig,
    [
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"ema_momentum": -0.1}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"views": ["strong", "eval"]}, ValueError, "views must be presets"),
        ({"projection_dim": 0}, ValueError, "projection_dim must be >= 1"),
        ({"symmetric": "yes"}, TypeError, "symmetric must be bool"),
    ],
)
