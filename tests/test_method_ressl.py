"""ReSSL-specific behaviour on real CIFAR-10 images: the head (no BatchNorm, biases, no predictor), forward's loss
equals `relational_loss` of independently recomputed outputs against the pre-step queue (strong view -> student,
weak view -> teacher, one direction by default), the weak view's teacher projections are the keys to enqueue and
forward leaves the queue alone, teacher initialisation and EMA, and config validation.
(Training, the loop and the Hub folder: tests/test_methods.py.)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_contrastive.losses import relational_loss
from hf_contrastive.models import ReSSLConfig, ReSSLForPreTraining


def small_config(**extra) -> ReSSLConfig:
    # Standard ResNet stem at 32 px (16x cheaper than the small-image stem), small head and queue: fast on CPU.
    return ReSSLConfig(
        **{"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 48, "small_image_stem": False, **extra}
    )


@pytest.fixture(scope="module")
def views(sample_views) -> list[torch.Tensor]:
    """A strong and a weak view of 16 real CIFAR-10 training images."""
    return sample_views(ReSSLConfig().views)


def perturbed_model(**extra) -> ReSSLForPreTraining:
    """A model whose teacher differs from its student (as after some training), so directions are distinguishable."""
    torch.manual_seed(0)
    model = ReSSLForPreTraining(small_config(**extra)).train()
    with torch.no_grad():
        for parameter in [*model.teacher_encoder.parameters(), *model.teacher_projector.parameters()]:
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def student(model, x):
    return model.projector(model.encoder(x).pooler_output)


@torch.no_grad()
def teacher(model, x):
    return model.teacher_projector(model.teacher_encoder(x).pooler_output)


def test_defaults_follow_the_benchmark():
    config = ReSSLConfig()
    assert config.views == ["strong", "weak"] and config.symmetric is False
    assert (config.tau_student, config.tau_teacher, config.ema_momentum, config.queue_size) == (0.1, 0.04, 0.99, 4096)
    assert (config.projection_hidden_size, config.projection_dim) == (2048, 128)


def test_head_is_linear_relu_linear_with_biases_and_no_predictor():
    model = ReSSLForPreTraining(small_config())
    layers = list(model.projector)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(layer.bias is not None for layer in layers if isinstance(layer, nn.Linear))
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (512, 64, 32)
    assert not hasattr(model, "predictor")
    heads = [*model.projector.modules(), *model.teacher_projector.modules()]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in heads)


def test_forward_is_relational_loss_of_recomputed_outputs_against_the_queue(views):
    model = perturbed_model()
    strong, weak = views
    with torch.no_grad():
        q_strong, q_weak = student(model, strong), student(model, weak)
        t_strong, t_weak = teacher(model, strong), teacher(model, weak)
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
    model = perturbed_model(bn_splits=2).eval()  # eval: split BN is plain BN, so the shuffle must be invisible
    with torch.no_grad():
        outputs = model(views=views)
    torch.testing.assert_close(outputs.queue_keys["queue"], teacher(model, views[1]), rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_student_only(views):
    model = perturbed_model()
    model(views=views).loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            assert not parameter.requires_grad and parameter.grad is None, name
    for module in (model.encoder, model.projector):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_teacher_starts_as_the_student_and_follows_it_by_ema():
    torch.manual_seed(0)
    model = ReSSLForPreTraining(small_config(ema_momentum=0.9))
    pairs = ((model.encoder, model.teacher_encoder), (model.projector, model.teacher_projector))
    for student_module, teacher_module in pairs:
        for (name, s), t in zip(student_module.state_dict().items(), teacher_module.state_dict().values(), strict=True):
            assert torch.equal(s, t), name
    with torch.no_grad():
        for parameter in model.projector.parameters():
            parameter.add_(1.0)
    before = [p.clone() for p in model.teacher_projector.parameters()]
    model.momentum_update()
    for old, new, s in zip(before, model.teacher_projector.parameters(), model.projector.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * s)


def test_forward_rejects_a_wrong_number_of_views(views):
    model = ReSSLForPreTraining(small_config())
    with pytest.raises(ValueError, match="two views"):
        model(views=views[:1])


@pytest.mark.parametrize(
    ("fields", "error", "message"),
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
def test_config_validation(fields, error, message):
    with pytest.raises(error, match=message):
        ReSSLConfig(**fields)
