"""ReSSL-specific behaviour on real CIFAR-10 images: the head (no BatchNorm, biases, no predictor), forward's loss
equals `relational_loss` of independently recomputed outputs against the pre-step queue (strong view -> student,
weak view -> teacher, one direction by default), the weak view's teacher projections are the keys to enqueue and
forward leaves the queue alone, teacher initialisation and EMA, and config validation.
(Training, the loop and the Hub folder: tests/test_methods.py.)
"""

from __future__ import annotations

import method_tester as mt
import pytest
import torch
from torch import nn

from hf_contrastive.losses import relational_loss
from hf_contrastive.models import ReSSLConfig, ReSSLForPreTraining

TESTER = mt.MethodTester(
    ReSSLConfig, ReSSLForPreTraining,
    # Standard ResNet stem at 32 px (16x cheaper than the small-image stem), small head and queue: fast on CPU.
    small={"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 48, "small_image_stem": False},
)
views = mt.views_fixture(ReSSLConfig().views)  # a strong and a weak view of 16 real CIFAR-10 training images


def test_defaults_follow_the_benchmark():
    config = ReSSLConfig()
    assert config.views == ["strong", "weak"] and config.symmetric is False
    assert (config.tau_student, config.tau_teacher, config.ema_momentum, config.queue_size) == (0.1, 0.04, 0.99, 4096)
    assert (config.projection_hidden_size, config.projection_dim) == (2048, 128)


def test_head_is_linear_relu_linear_with_biases_and_no_predictor():
    model = TESTER.model()
    layers = list(model.projector)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(layer.bias is not None for layer in layers if isinstance(layer, nn.Linear))
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (512, 64, 32)
    assert not hasattr(model, "predictor")
    heads = [*model.projector.modules(), *model.teacher_projector.modules()]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in heads)


def test_forward_is_relational_loss_of_recomputed_outputs_against_the_queue(views):
    model = TESTER.perturbed_model()
    (q_strong, q_weak), (t_strong, t_weak) = TESTER.outputs(model, views)
    # Real teacher projections in the queue (plus random unit vectors), so the distributions are meaningful.
    model.enqueue({"queue": t_strong + 0.1 * torch.randn_like(t_strong)})
    queue = model.queue.features.clone()

    outputs = model(views=views)
    expected = relational_loss(q_strong, t_weak, queue, 0.1, 0.04)
    torch.testing.assert_close(outputs.loss.detach(), expected, rtol=1e-5, atol=1e-6)
    # Forward reads the queue but does not write it; the weak view's teacher projections are the keys.
    assert torch.equal(model.queue.features, queue) and model.queue.pointer.item() == 16
    assert set(outputs.queue_keys) == {"queue"}
    keys = outputs.queue_keys["queue"]
    assert keys.shape == (16, 32) and keys.dtype == torch.float32 and not keys.requires_grad
    torch.testing.assert_close(keys, t_weak, rtol=1e-5, atol=1e-6)
    # The temperatures are tau_student for the student and tau_teacher for the teacher, not swapped.
    assert not torch.allclose(expected, relational_loss(q_strong, t_weak, queue, 0.04, 0.1), rtol=1e-4)
    reverse = relational_loss(q_weak, t_strong, queue, 0.1, 0.04)
    assert not torch.allclose(expected, reverse, rtol=1e-4)

    model.config.symmetric = True
    outputs = model(views=views)
    torch.testing.assert_close(outputs.loss.detach(), 0.5 * (expected + reverse), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs.queue_keys["queue"], t_weak, rtol=1e-5, atol=1e-6)  # still the weak view only


def test_shuffled_teacher_returns_keys_in_batch_order(views):
    """With split BatchNorm the teacher sees a shuffled batch; the keys must come back in the original order."""
    model = TESTER.perturbed_model(bn_splits=2).eval()  # eval: split BN is plain BN, so the shuffle must be invisible
    with torch.no_grad():
        outputs = model(views=views)
    torch.testing.assert_close(outputs.queue_keys["queue"], TESTER.teacher_output(model, views[1]), rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_student_only(views):
    model = TESTER.perturbed_model()
    TESTER.check_gradients_reach_the_student_only(model, views)


def test_teacher_starts_as_the_student_and_follows_it_by_ema(views):
    model = TESTER.model(ema_momentum=0.9)
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.9, shifted="projector")


def test_forward_rejects_a_wrong_number_of_views(views):
    model = TESTER.model()
    with pytest.raises(ValueError, match="two views"):
        model(views=views[:1])


test_config_validation = mt.config_validation_test(
    ReSSLConfig,
    [
        ({"tau_student": 0.0}, ValueError, "tau_student must be > 0"),
        ({"tau_teacher": -0.04}, ValueError, "tau_teacher must be > 0"),
        ({"queue_size": 0}, ValueError, "queue_size must be >= 1"),
        ({"ema_momentum": 1.5}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"views": ["strong", "eval"]}, ValueError, "views must be presets"),
        ({"tau_teacher": "0.04"}, TypeError, "tau_teacher must be float"),
    ],
)
