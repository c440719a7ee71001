"""NNCLR-specific behaviour on real CIFAR-10 images: the positive is the nearest queue neighbour of the other view's
projection, the first view's projections are enqueued, the queue is read-only in forward, no teacher, config checks.

The generic test over all methods (training on real images, Hub folder) lives elsewhere.
"""

from __future__ import annotations

import method_tester as mt
import pytest
import torch

from hf_contrastive.losses import nnclr_loss
from hf_contrastive.models import nearest_neighbors
from hf_contrastive.models.configuration_nnclr import NNCLRConfig
from hf_contrastive.models.modeling_nnclr import NNCLRForPreTraining

BATCH = 16
SMALL = {"projection_hidden_size": 64, "prediction_hidden_size": 48, "projection_dim": 32, "queue_size": 64}


TESTER = mt.MethodTester(NNCLRConfig, NNCLRForPreTraining, small=SMALL)
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


@torch.no_grad()
def _projections(model, x):
    z = model.projector(model.encoder(x).pooler_output)
    return z, model.predictor(z)


def test_defaults_and_heads():
    config = NNCLRConfig()
    assert (config.tau, config.queue_size, config.nn_topk) == (0.2, 4096, 1)
    assert (config.projection_hidden_size, config.prediction_hidden_size, config.projection_dim) == (2048, 2048, 128)
    assert config.views == ["strong", "strong"]
    assert (config.projection_layers, config.prediction_to_neighbors) == (3, False)
    model = TESTER.model()
    # The paper's (and the benchmark's) projector: 3 Linear layers, BatchNorm after every one, ReLU but after the last.
    assert [type(layer).__name__ for layer in model.projector] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert [(lin.in_features, lin.out_features, lin.bias) for lin in list(model.projector)[::3]] == [
        (512, 64, None), (64, 64, None), (64, 32, None)]
    assert [type(layer).__name__ for layer in model.predictor] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (model.predictor[0].in_features, model.predictor[0].out_features, model.predictor[-1].out_features) == (32, 48, 32)
    assert model.teacher_pairs() == []
    assert not any(name.startswith("teacher_") for name, _ in model.named_parameters())


@pytest.mark.parametrize("nn_topk, both", [(1, False), (3, False), (3, True)])
def test_loss_uses_nearest_neighbours_of_own_projection_against_other_views_predictions(views, nn_topk, both):
    """``both``: the benchmark's prediction-to-neighbours term is added (prediction_to_neighbors=True)."""
    model = TESTER.model(nn_topk=nn_topk, prediction_to_neighbors=both).train()
    queue_before = model.queue.features.clone()
    pointer_before = model.queue.pointer.clone()
    output = model(views=views)
    assert torch.equal(model.queue.features, queue_before) and torch.equal(model.queue.pointer, pointer_before)

    (z1, p1), (z2, p2) = _projections(model, views[0]), _projections(model, views[1])  # train-mode BN, per view
    n1, n2 = nearest_neighbors(z1, queue_before, nn_topk), nearest_neighbors(z2, queue_before, nn_topk)
    assert n1.shape == (BATCH, nn_topk, 32)
    expected = 0.5 * (nnclr_loss(n1, p2, 0.2, both) + nnclr_loss(n2, p1, 0.2, both))
    torch.testing.assert_close(output.loss.detach(), expected)
    # not the pairing of a view's neighbours with its own predictions, and not the other loss definition
    assert not torch.allclose(output.loss.detach(), 0.5 * (nnclr_loss(n1, p1, 0.2, both) + nnclr_loss(n2, p2, 0.2, both)))
    assert not torch.allclose(output.loss.detach(), 0.5 * (nnclr_loss(n1, p2, 0.2, not both) + nnclr_loss(n2, p1, 0.2, not both)))

    keys = output.queue_keys["queue"]
    assert set(output.queue_keys) == {"queue"} and keys.shape == (BATCH, 32)
    assert keys.dtype == torch.float32 and not keys.requires_grad
    torch.testing.assert_close(keys, z1)  # the first view's projections (not predictions, not the second view)


def test_with_own_projections_in_the_queue_the_positive_is_the_projection_itself(views):
    # Independent of nearest_neighbors: once a batch's projections are enqueued, each projection is its own nearest
    # neighbour, so NNCLR reduces to InfoNCE between z_a and the other view's prediction p_b.
    model = TESTER.model(queue_size=2 * BATCH).eval()  # eval: deterministic BN, same projections in both calls
    (z1, p1), (z2, p2) = _projections(model, views[0]), _projections(model, views[1])
    model.enqueue({"queue": torch.cat([z1, z2])})
    with torch.no_grad():
        loss = model(views=views).loss
    torch.testing.assert_close(loss, 0.5 * (nnclr_loss(z1, p2, 0.2) + nnclr_loss(z2, p1, 0.2)))


def test_gradients_flow_through_predictions_only(views):
    model = TESTER.model().train()
    output = model(views=views)
    output.loss.backward()
    assert model.queue.features.grad is None
    for module in (model.encoder.backbone.conv1, model.projector[0], model.predictor[0]):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    before = [p.detach().clone() for p in model.parameters()]
    model.momentum_update()  # no teacher: a no-op
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


test_config_validation = mt.config_validation_test(
    NNCLRConfig,
    [
        ({"nn_topk": 0}, ValueError, r"nn_topk must be between 1 and queue_size \(4096\)"),
        ({"queue_size": 8, "nn_topk": 9}, ValueError, r"nn_topk must be between 1 and queue_size \(8\)"),
        ({"tau": 0.0}, ValueError, "tau must be > 0"),
        ({"queue_size": 0, "nn_topk": 1}, ValueError, "queue_size must be >= 1"),
        ({"prediction_hidden_size": 0}, ValueError, "must be >= 1"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"nn_topk": 1.5}, TypeError, "nn_topk must be int"),
        ({"projection_layers": 1}, ValueError, "projection_layers must be >= 2"),
    ],
)
