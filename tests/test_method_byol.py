"""BYOL-specific behaviour on real CIFAR-10 images: the symmetric loss of forward equals `byol_loss` of independently
recomputed student predictions and teacher projections, nothing is enqueued, gradients reach only the student,
teacher initialisation and EMA, and config validation. (Training, the loop and the Hub folder: tests/test_methods.py.)
"""

from __future__ import annotations

import pytest
import torch

from hf_contrastive.losses import byol_loss
from hf_contrastive.models import BYOLConfig, BYOLForPreTraining


def small_config(**extra) -> BYOLConfig:
    # Standard ResNet stem at 32 px (16x cheaper than the small-image stem) and small heads, to stay fast on CPU.
    return BYOLConfig(**{"projection_hidden_size": 64, "projection_dim": 32, "small_image_stem": False, **extra})


@pytest.fixture(scope="module")
def views(sample_views) -> list[torch.Tensor]:
    """Two strong views of 16 real CIFAR-10 training images."""
    return sample_views(BYOLConfig().views)


def perturbed_model(**extra) -> BYOLForPreTraining:
    """A model whose teacher differs from its student (as after some training), so directions are distinguishable."""
    torch.manual_seed(0)
    model = BYOLForPreTraining(small_config(**extra)).train()
    with torch.no_grad():
        for parameter in [*model.teacher_encoder.parameters(), *model.teacher_projector.parameters()]:
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def student(model, x):
    return model.predictor(model.projector(model.encoder(x).pooler_output))


@torch.no_grad()
def teacher(model, x):
    return model.teacher_projector(model.teacher_encoder(x).pooler_output)


def test_default_views_and_symmetry():
    config = BYOLConfig()
    assert config.views == ["strong", "strong"] and config.symmetric is True
    assert config.ema_momentum == 0.99 and (config.projection_hidden_size, config.projection_dim) == (2048, 128)


def test_forward_is_symmetric_byol_loss_of_recomputed_outputs(views):
    model = perturbed_model()
    first, second = views
    outputs = model(views=views)
    assert outputs.queue_keys is None
    with torch.no_grad():
        p1, p2 = student(model, first), student(model, second)
        z1, z2 = teacher(model, first), teacher(model, second)
    expected = 0.5 * (byol_loss(p1, z2) + byol_loss(p2, z1))
    torch.testing.assert_close(outputs.loss.detach(), expected, rtol=1e-5, atol=1e-6)
    # The pairing matters: predicting the same view's projection gives another value.
    assert not torch.allclose(expected, 0.5 * (byol_loss(p1, z1) + byol_loss(p2, z2)), rtol=1e-4)

    model.config.symmetric = False
    one_way = model(views=views).loss.detach()
    torch.testing.assert_close(one_way, byol_loss(p1, z2), rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_student_only(views):
    model = perturbed_model()
    model(views=views).loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            assert not parameter.requires_grad and parameter.grad is None, name
    for module in (model.encoder, model.projector, model.predictor):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_teacher_starts_as_the_student_and_follows_it_by_ema():
    torch.manual_seed(0)
    model = BYOLForPreTraining(small_config(ema_momentum=0.9))
    pairs = ((model.encoder, model.teacher_encoder), (model.projector, model.teacher_projector))
    for student_module, teacher_module in pairs:
        for (name, s), t in zip(student_module.state_dict().items(), teacher_module.state_dict().values(), strict=True):
            assert torch.equal(s, t), name
    assert not hasattr(model, "teacher_predictor")  # the predictor has no EMA copy
    with torch.no_grad():
        for parameter in model.projector.parameters():
            parameter.add_(1.0)
    before = [p.clone() for p in model.teacher_projector.parameters()]
    model.momentum_update()
    for old, new, s in zip(before, model.teacher_projector.parameters(), model.projector.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * s)


def test_forward_rejects_a_wrong_number_of_views(views):
    model = BYOLForPreTraining(small_config())
    with pytest.raises(ValueError, match="two views"):
        model(views=views[:1])


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"ema_momentum": -0.1}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"views": ["strong", "eval"]}, ValueError, "views must be presets"),
        ({"projection_dim": 0}, ValueError, "projection_dim must be >= 1"),
        ({"symmetric": "yes"}, TypeError, "symmetric must be bool"),
    ],
)
def test_config_validation(fields, error, message):
    with pytest.raises(error, match=message):
        BYOLConfig(**fields)
