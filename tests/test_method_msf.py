"""MSF-specific behaviour on real CIFAR-10 images: forward's loss equals `msf_loss` of independently recomputed
outputs and the queue's nearest neighbours (strong view -> student, weak view -> teacher, one direction by default),
the weak view's teacher projections are the keys to enqueue and forward leaves the queue alone, teacher
initialisation and EMA, and config validation. (Training, the loop and the Hub folder: tests/test_methods.py.)
"""

from __future__ import annotations

from pathlib import Path

import method_tester as mt
import pytest
import torch

from hf_contrastive.losses import msf_loss
from hf_contrastive.models import MSFConfig, MSFForPreTraining, nearest_neighbors

TESTER = mt.MethodTester(
    MSFConfig, MSFForPreTraining, student=("encoder", "projector", "predictor"),
    # Standard ResNet stem at 32 px (16x cheaper than the small-image stem), small heads and queue: fast on CPU.
    small={"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 48, "nn_topk": 3, "small_image_stem": False},
)
views = mt.views_fixture(MSFConfig().views)  # a strong and a weak view of 16 real CIFAR-10 training images


def test_defaults_are_the_official_code_and_the_cifar10_recipe_is_the_benchmarks_symmetric_run():
    """Official MSF is one direction; the benchmark's runs behind its 89.60 were symmetric, and msf_cifar10.yaml,
    which sits beside that number, is too."""
    import yaml

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes/configs/msf_cifar10.yaml").read_text())
    assert recipe["model"]["symmetric"] is True and recipe["model"]["views"] == ["strong", "weak"]
    config = MSFConfig()
    assert config.views == ["strong", "weak"] and config.symmetric is False
    assert (config.ema_momentum, config.queue_size, config.nn_topk) == (0.99, 4096, 5)
    assert (config.projection_hidden_size, config.projection_dim) == (2048, 128)


def test_forward_is_msf_loss_of_recomputed_outputs_and_queue_neighbours(views):
    model = TESTER.perturbed_model()
    (p_strong, p_weak), (z_strong, z_weak) = TESTER.outputs(model, views)
    # Real teacher projections in the queue (plus random unit vectors), so the neighbours are meaningful.
    model.enqueue({"queue": z_strong + 0.1 * torch.randn_like(z_strong)})
    queue = model.queue.features.clone()
    k = model.config.nn_topk

    outputs = model(views=views)
    expected = msf_loss(p_strong, z_weak, nearest_neighbors(z_weak, queue, k))
    torch.testing.assert_close(outputs.loss.detach(), expected, rtol=1e-5, atol=1e-6)
    # Forward reads the queue but does not write it; the weak view's teacher projections are the keys.
    assert torch.equal(model.queue.features, queue) and model.queue.pointer.item() == 16
    assert set(outputs.queue_keys) == {"queue"}
    keys = outputs.queue_keys["queue"]
    assert keys.shape == (16, 32) and keys.dtype == torch.float32 and not keys.requires_grad
    torch.testing.assert_close(keys, z_weak, rtol=1e-5, atol=1e-6)
    # The direction matters: the other direction gives another value.
    reverse = msf_loss(p_weak, z_strong, nearest_neighbors(z_strong, queue, k))
    assert not torch.allclose(expected, reverse, rtol=1e-4)

    model.config.symmetric = True
    outputs = model(views=views)
    torch.testing.assert_close(outputs.loss.detach(), 0.5 * (expected + reverse), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs.queue_keys["queue"], z_weak, rtol=1e-5, atol=1e-6)  # still the weak view only


def test_shuffled_teacher_returns_keys_in_batch_order(views):
    """With split BatchNorm the teacher sees a shuffled batch; the keys must come back in the original order."""
    model = TESTER.perturbed_model(bn_splits=2).eval()  # eval: split BN is plain BN, so the shuffle must be invisible
    with torch.no_grad():
        outputs = model(views=views)
    torch.testing.assert_close(outputs.queue_keys["queue"], TESTER.teacher_output(model, views[1]), rtol=1e-5, atol=1e-5)


def test_enqueue_writes_the_keys_after_the_step(views):
    model = TESTER.perturbed_model()
    before = model.queue.features.clone()
    outputs = model(views=views)
    model.enqueue(outputs.queue_keys)
    assert torch.equal(model.queue.features[:16], outputs.queue_keys["queue"])
    assert torch.equal(model.queue.features[16:], before[16:])


def test_gradients_reach_the_student_only(views):
    model = TESTER.perturbed_model()
    TESTER.check_gradients_reach_the_student_only(model, views)


def test_teacher_starts_as_the_student_and_follows_it_by_ema(views):
    model = TESTER.model(ema_momentum=0.9)
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.9, shifted="encoder")


def test_forward_rejects_a_wrong_number_of_views(views):
    model = TESTER.model()
    with pytest.raises(ValueError, match="two views"):
        model(views=views + views[:1])


test_config_validation = mt.config_validation_test(
    MSFConfig,
    [
        ({"nn_topk": 0}, ValueError, r"nn_topk must be between 1 and queue_size \(4096\)"),
        ({"queue_size": 4, "nn_topk": 5}, ValueError, r"nn_topk must be between 1 and queue_size \(4\)"),
        ({"queue_size": 0, "nn_topk": 0}, ValueError, "queue_size must be >= 1"),
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"views": ["strong", "weak", "weak"]}, ValueError, "exactly two views"),
        ({"views": ["eval", "weak"]}, ValueError, "views must be presets"),
        ({"queue_size": "4096"}, TypeError, "queue_size must be int"),
    ],
)
