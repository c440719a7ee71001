"""MSVQ-specific behaviour (methods.md section 2), on real CIFAR-10 images from the packaged sample
(hf_contrastive/sample_data/cifar10_sample).

Checked: the config's defaults and range errors; the head layout (no BN, biases); both teachers start as the student,
are frozen and follow it by EMA with their own momenta; forward enqueues teacher 1(x2) into queue_1 and teacher 2(x4)
into queue_2, leaves both queues untouched, and its loss equals methods.md's formula written out independently (float64)
on recomputed student/teacher outputs; gradients reach the student only.

The backbone uses the standard ResNet stem at 32 px (16x cheaper than the small-image stem) to stay fast.
"""

from __future__ import annotations

from pathlib import Path

import method_tester as mt
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hf_contrastive.data import (
    DATASET_STATS,
    build_view_transform,
    decode_image,
    load_image_dataset,
)
from hf_contrastive.models.configuration_msvq import MSVQConfig
from hf_contrastive.models.modeling_msvq import MSVQForPreTraining

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "hf_contrastive" / "sample_data" / "cifar10_sample"
MEAN, STD = DATASET_STATS["cifar10"]
BATCH = 16
SMALL = dict(projection_hidden_size=64, projection_dim=32, queue_size=64, small_image_stem=False)


@pytest.fixture(scope="module")
def images():
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"{SAMPLE_DIR} missing; regenerate it with data/make_cifar10_sample.py")
    splits = load_image_dataset(str(SAMPLE_DIR), max_train_samples=BATCH)
    column = splits.image_column
    return [decode_image(row, index=i, column=column) for i, row in enumerate(splits.train[column])]


def make_views(config: MSVQConfig, images, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    transforms = [build_view_transform(kind, config.image_size, MEAN, STD) for kind in config.views]
    return [torch.stack([transform(image) for image in images]) for transform in transforms]


def make_model(**overrides) -> MSVQForPreTraining:
    torch.manual_seed(0)
    model = MSVQForPreTraining(MSVQConfig(**{**SMALL, **overrides}))
    model.train()
    return model


def distinguish_teachers(model: MSVQForPreTraining) -> None:
    """Move the two teachers apart from the student and from each other, so a test can tell which network ran."""
    with torch.no_grad():
        for index, teacher in enumerate((model.teacher_projector_1, model.teacher_projector_2), start=1):
            for parameter in teacher.parameters():
                parameter.add_(0.05 * index * torch.randn_like(parameter))


def fill_queues(model: MSVQForPreTraining) -> None:
    """Raw (not unit-norm) random queues, so the loss must normalise them."""
    with torch.no_grad():
        for queue in (model.queue_1, model.queue_2):
            queue.features.copy_(3.0 * torch.randn_like(queue.features))


def projections(encoder: nn.Module, head: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return head(encoder(pixels).pooler_output)


# ----------------------------------------------------------------------------- config


def test_config_defaults_are_the_cifar10_recipe():
    config = MSVQConfig()
    assert (config.projection_hidden_size, config.projection_dim) == (2048, 128)
    assert (config.ema_momentum, config.ema_momentum_2) == (0.99, 0.95)
    assert config.queue_size == 4096
    assert (config.tau_student, config.tau_teacher) == (0.1, 0.04)
    assert config.views == ["strong", "weak", "weak", "weak"]
    assert config.model_type == "msvq"


test_config_rejects_bad_values = mt.config_validation_test(
    MSVQConfig,
    [
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"ema_momentum_2": -0.1}, ValueError, r"ema_momentum_2 must be in \[0, 1\)"),
        ({"tau_student": 0.0}, ValueError, "tau_student must be > 0"),
        ({"tau_teacher": -0.04}, ValueError, "tau_teacher must be > 0"),
        ({"queue_size": 0}, ValueError, "queue_size must be >= 1"),
        ({"views": ["strong", "weak"]}, ValueError, "exactly four views"),
        ({"views": ["strong", "weak", "weak", "eval"]}, ValueError, "presets from"),
        ({"tau_teacher": "0.04"}, TypeError, "tau_teacher must be float"),
    ],
)


def test_config_round_trips(tmp_path):
    config = MSVQConfig(ema_momentum_2=0.93, tau_teacher=0.03, queue_size=16384)
    config.save_pretrained(tmp_path)
    loaded = MSVQConfig.from_pretrained(tmp_path)
    assert (loaded.ema_momentum_2, loaded.tau_teacher, loaded.queue_size) == (0.93, 0.03, 16384)


# ----------------------------------------------------------------------------- structure, teachers, EMA


def test_head_is_linear_relu_linear_with_biases_and_no_batchnorm():
    model = make_model()
    layers = list(model.projector)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(layer.bias is not None for layer in layers if isinstance(layer, nn.Linear))
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (512, 64, 32)


def test_teachers_start_as_the_student_and_are_frozen():
    model = make_model()
    student = nn.ModuleList([model.encoder, model.projector]).state_dict()
    for encoder, head in ((model.teacher_encoder_1, model.teacher_projector_1),
                          (model.teacher_encoder_2, model.teacher_projector_2)):
        teacher = nn.ModuleList([encoder, head]).state_dict()
        assert teacher.keys() == student.keys()
        for key in student:
            torch.testing.assert_close(teacher[key], student[key], atol=0, rtol=0)
        assert not any(p.requires_grad for p in [*encoder.parameters(), *head.parameters()])
    assert all(p.requires_grad for p in [*model.encoder.parameters(), *model.projector.parameters()])
    momenta = [momentum for _, _, momentum in model.teacher_pairs()]
    assert momenta == [0.99, 0.95]


def test_momentum_update_moves_each_teacher_with_its_own_momentum():
    model = make_model(ema_momentum=0.9, ema_momentum_2=0.5)
    distinguish_teachers(model)
    with torch.no_grad():
        for parameter in model.projector.parameters():
            parameter.add_(torch.randn_like(parameter))
    student = [p.detach().clone() for p in model.projector.parameters()]
    before_1 = [p.detach().clone() for p in model.teacher_projector_1.parameters()]
    before_2 = [p.detach().clone() for p in model.teacher_projector_2.parameters()]
    model.momentum_update()
    for s, t0, t in zip(student, before_1, model.teacher_projector_1.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s)
    for s, t0, t in zip(student, before_2, model.teacher_projector_2.parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * t0 + 0.5 * s)


def test_teachers_stay_frozen_after_from_pretrained(tmp_path):
    make_model().save_pretrained(tmp_path)
    loaded = MSVQForPreTraining.from_pretrained(tmp_path)
    frozen = {name for name, p in loaded.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in loaded.named_parameters() if name.startswith("teacher_")}
    assert any(name.startswith("teacher_encoder_2.") for name in frozen)


# ----------------------------------------------------------------------------- forward


def test_forward_matches_the_formula_enqueues_the_right_keys_and_leaves_queues_alone(images):
    model = make_model()
    distinguish_teachers(model)
    fill_queues(model)
    config = model.config
    x1, x2, x3, x4 = make_views(config, images)
    queues_before = [(q.features.clone(), q.pointer.clone()) for q in (model.queue_1, model.queue_2)]

    output = model(views=[x1, x2, x3, x4])

    # Recomputed independently (train mode, batch-statistics BN: the same batch gives the same outputs).
    s1 = model.projector(model.encoder(x1).pooler_output)
    t2 = projections(model.teacher_encoder_1, model.teacher_projector_1, x2)
    t3 = projections(model.teacher_encoder_1, model.teacher_projector_1, x3)
    t4 = projections(model.teacher_encoder_2, model.teacher_projector_2, x4)

    # queue_keys: teacher 1 on x2 -> queue_1, teacher 2 on x4 -> queue_2; raw, detached, [B, D].
    assert set(output.queue_keys) == {"queue_1", "queue_2"}
    for name, expected in (("queue_1", t2), ("queue_2", t4)):
        keys = output.queue_keys[name]
        assert keys.shape == (BATCH, config.projection_dim) and keys.dtype == torch.float32
        assert not keys.requires_grad
        torch.testing.assert_close(keys, expected, rtol=1e-4, atol=1e-5)
    # ...and not the other teacher or the other weak views.
    assert not torch.allclose(output.queue_keys["queue_1"], t3, atol=1e-3)
    assert not torch.allclose(output.queue_keys["queue_2"], projections(
        model.teacher_encoder_1, model.teacher_projector_1, x4), atol=1e-3)

    # Forward left both queues untouched.
    for queue, (features, pointer) in zip((model.queue_1, model.queue_2), queues_before, strict=True):
        torch.testing.assert_close(queue.features, features, atol=0, rtol=0)
        assert queue.pointer.item() == pointer.item() == 0

    # methods.md section 2, written out in float64.
    def ce(teacher, student, queue):
        unit = lambda x: F.normalize(x.double(), dim=1)  # noqa: E731
        target = torch.softmax(unit(teacher) @ unit(queue).T / config.tau_teacher, dim=1)
        log_prediction = torch.log_softmax(unit(student) @ unit(queue).T / config.tau_student, dim=1)
        return -(target * log_prediction).sum(dim=1).mean()

    q1, q2 = queues_before[0][0], queues_before[1][0]
    expected = (ce(t2, s1, q1) + ce(t3, s1, q1) + ce(t4, s1, q2)) / 3
    assert output.loss.dtype == torch.float32 and output.loss.dim() == 0
    torch.testing.assert_close(output.loss.double(), expected.detach(), rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_student_only_and_enqueue_fills_both_queues(images):
    model = make_model()
    fill_queues(model)
    output = model(views=make_views(model.config, images))
    output.loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    model.enqueue(output.queue_keys)
    for name in ("queue_1", "queue_2"):
        queue = getattr(model, name)
        assert queue.pointer.item() == BATCH
        torch.testing.assert_close(queue.features[:BATCH], output.queue_keys[name], atol=0, rtol=0)


def test_forward_rejects_the_wrong_number_of_views(images):
    model = make_model()
    views = make_views(model.config, images[:4])
    with pytest.raises(ValueError, match="four views"):
        model(views=views[:2])


def test_loss_falls_once_the_queues_hold_real_keys(images):
    """The raw relational loss is cross-entropy = target entropy + KL: while the random initial queues are replaced
    by real keys its level follows the target entropy, so it falls only once the queues are warm (here: filled with
    the teachers' keys of the batch before training, as after the first K / B steps of a real run)."""
    model = make_model(queue_size=32)
    views = make_views(model.config, images[:8])
    with torch.no_grad():
        for _ in range(model.config.queue_size // 8):
            model.enqueue(model(views=views).queue_keys)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        output = model(views=views)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        model.momentum_update()
        model.enqueue(output.queue_keys)
        losses.append(output.loss.item())
    assert losses[-1] < losses[0] and sum(losses[-2:]) < sum(losses[:2]), losses
