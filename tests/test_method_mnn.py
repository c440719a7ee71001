"""MNN-specific behaviour on real CIFAR-10 images: one full training step (both directions, neighbours from the
pre-step queue, one lambda per direction, the weak view's keys enqueued, the EMA teacher) against a float64 numpy
re-computation written from the official code's equations (pc-cp/MNN ``network/MNN.py``), for both neighbour mixings.

The generic tests over all methods (training on real images, Hub folder) live in tests/test_methods.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_contrastive.models import MNNConfig, MNNForPreTraining


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _numpy_direction(p: np.ndarray, z: np.ndarray, queue: np.ndarray, lam: float, k: int, mixing: str) -> float:
    """One direction of the official loss: top-k cosine neighbours of z in the queue, mixed with z, BYOL distances."""
    neighbours = queue[np.argsort(-(_unit(z) @ _unit(queue).T), axis=1)[:, :k]]  # [B, k, D], raw rows
    if mixing == "mix_then_normalize":
        mixed = _unit(lam * neighbours + (1 - lam) * z[:, None])
    else:  # the official norm_nn branch: normalised vectors mixed, not normalised again
        mixed = lam * _unit(neighbours) + (1 - lam) * _unit(z)[:, None]
    p = _unit(p)
    positive = 2 - 2 * (p * _unit(z)).sum(1)
    neighbour_term = (2 - 2 * np.einsum("bd,bkd->bk", p, mixed)).mean(1)
    return float((positive + neighbour_term).mean())


@pytest.fixture(scope="module")
def views(sample_views) -> list[torch.Tensor]:
    """A strong and a weak view of 16 real CIFAR-10 training images, in float64."""
    return [v.double() for v in sample_views(["strong", "weak"])]


def _model(**extra) -> MNNForPreTraining:
    """Small heads and queue, standard stem (fast), float64; the teacher perturbed so the directions differ."""
    torch.manual_seed(0)
    config = MNNConfig(projection_hidden_size=64, projection_dim=32, queue_size=48, nn_topk=3,
                       small_image_stem=False, **extra)
    model = MNNForPreTraining(config).double().train()
    with torch.no_grad():
        for parameter in [*model.teacher_encoder.parameters(), *model.teacher_projector.parameters()]:
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("mixing", ["mix_then_normalize", "normalize_then_mix"])
def test_one_training_step_equals_the_official_equations_in_float64(views, mixing):
    model = _model(neighbor_mixing=mixing)
    strong, weak = views
    with torch.no_grad():  # the networks' outputs (train-mode BN, one view per call as forward's stacked views)
        def student(x):
            return model.predictor(model.projector(model.encoder(x).pooler_output)).numpy()

        def teacher(x):
            return model.teacher_projector(model.teacher_encoder(x).pooler_output).numpy()

        p_strong, p_weak, z_strong, z_weak = student(strong), student(weak), teacher(strong), teacher(weak)
        model.enqueue({"queue": torch.from_numpy(z_strong) + 0.1 * torch.randn(16, 32, dtype=torch.float64)})
    queue = model.queue.features.numpy().copy()
    teacher_before = [t.detach().clone() for t in model.teacher_encoder.parameters()]

    torch.manual_seed(7)
    output = model(views=views)
    torch.manual_seed(7)
    lam_a, lam_b = torch.rand(2, dtype=torch.float32).double().tolist()  # the model's two draws, one per direction
    k = model.config.nn_topk
    expected = 0.5 * (_numpy_direction(p_strong, z_weak, queue, lam_a, k, mixing)
                      + _numpy_direction(p_weak, z_strong, queue, lam_b, k, mixing))
    assert output.loss.item() == pytest.approx(expected, rel=1e-6, abs=1e-9)
    other = "normalize_then_mix" if mixing == "mix_then_normalize" else "mix_then_normalize"
    assert abs(output.loss.item() - 0.5 * (_numpy_direction(p_strong, z_weak, queue, lam_a, k, other)
                                           + _numpy_direction(p_weak, z_strong, queue, lam_b, k, other))) > 1e-4

    # The rest of the step: forward left the queue alone; the weak view's teacher projections are enqueued;
    # after the optimiser step the teacher moves by EMA with m = 0.99.
    np.testing.assert_array_equal(model.queue.features.numpy(), queue)
    keys = output.queue_keys["queue"]
    np.testing.assert_allclose(keys.numpy(), z_weak, rtol=1e-6, atol=1e-7)  # keys are handed over in float32
    output.loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4).step()
    model.momentum_update()
    model.enqueue(output.queue_keys)
    for before, after, student_now in zip(teacher_before, model.teacher_encoder.parameters(),
                                          model.encoder.parameters(), strict=True):
        torch.testing.assert_close(after, 0.99 * before + 0.01 * student_now.detach(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.queue.features.numpy()[16:32], z_weak.astype(np.float32), rtol=1e-6, atol=1e-7)


def test_neighbor_mixing_is_checked_and_the_default_is_what_main_py_runs():
    assert MNNConfig().neighbor_mixing == "mix_then_normalize"
    with pytest.raises(ValueError, match="neighbor_mixing must be one of"):
        MNNConfig(neighbor_mixing="norm_nn")
