"""Losses against values computed independently: by hand for a tiny case, and with numpy loops for random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_contrastive.losses import mnn_loss, normalized_distance


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _numpy_mnn_loss(p: np.ndarray, z: np.ndarray, n: np.ndarray, lam: float) -> float:
    """methods.md section 1, written as explicit loops in float64."""
    batch, k, _ = n.shape
    total = 0.0
    for i in range(batch):
        pi = _unit(p[i])
        term = 2 - 2 * pi @ _unit(z[i])
        for j in range(k):
            mixed = _unit(lam * n[i, j] + (1 - lam) * z[i])
            term += (2 - 2 * pi @ mixed) / k
        total += term
    return total / batch


def test_normalized_distance_by_hand():
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 5.0], [-2.0, -2.0]])
    # orthogonal -> 2, opposite -> 4
    assert torch.allclose(normalized_distance(a, b), torch.tensor([2.0, 4.0]))
    assert torch.allclose(normalized_distance(a, a), torch.zeros(2), atol=1e-6)


def test_mnn_loss_by_hand():
    # B=1, D=2, k=1. p along x; z along x (distance 0); neighbour along y.
    # lam=0.5: mixed = norm(0.5*(0,2) + 0.5*(4,0)) = norm(2,1) = (2,1)/sqrt(5)
    # loss = 0 + 2 - 2 * 2/sqrt(5)
    p = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[4.0, 0.0]])
    n = torch.tensor([[[0.0, 2.0]]])
    expected = 2 - 4 / math.sqrt(5)
    assert mnn_loss(p, z, n, 0.5).item() == pytest.approx(expected, abs=1e-6)
    # lam=0 mixes nothing in: the neighbour term equals the positive term (0 here).
    assert mnn_loss(p, z, n, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    # lam=1: pure neighbour, orthogonal to p -> distance 2.
    assert mnn_loss(p, z, n, torch.tensor(1.0)).item() == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.37, 0.9])
def test_mnn_loss_matches_numpy(lam):
    rng = np.random.default_rng(0)
    p, z, n = rng.normal(size=(6, 8)), rng.normal(size=(6, 8)) * 3, rng.normal(size=(6, 5, 8)) * 0.5
    got = mnn_loss(torch.tensor(p), torch.tensor(z), torch.tensor(n), lam).item()
    assert got == pytest.approx(_numpy_mnn_loss(p, z, n, lam), rel=1e-5)


def test_mnn_loss_mixes_raw_vectors_before_normalising():
    # The scale of the raw vectors matters: a long neighbour dominates the mix. A version that normalised
    # before mixing would give a different value.
    p = np.array([[1.0, 0.0]])
    z = np.array([[1.0, 0.0]])
    n = np.array([[[0.0, 10.0]]])
    got = mnn_loss(torch.tensor(p), torch.tensor(z), torch.tensor(n), 0.5).item()
    normalised_first = 2 - 2 * _unit(0.5 * _unit(n[0, 0]) + 0.5 * _unit(z[0]))[0]
    assert got == pytest.approx(_numpy_mnn_loss(p, z, n, 0.5), abs=1e-6)
    assert abs(got - normalised_first) > 0.1


def test_mnn_loss_gradient_flows_to_predictions_only():
    p = torch.randn(4, 16, requires_grad=True)
    z = torch.randn(4, 16, requires_grad=True)
    mnn_loss(p, z.detach(), torch.randn(4, 3, 16), 0.5).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    assert z.grad is None


def test_mnn_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"neighbors must be \[B, k, D\]"):
        mnn_loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8), 0.5)
    with pytest.raises(ValueError, match="predictions and targets"):
        mnn_loss(torch.randn(4, 8), torch.randn(3, 8), torch.randn(4, 2, 8), 0.5)


def test_mnn_loss_bfloat16_inputs_computed_in_float32():
    rng = np.random.default_rng(1)
    p, z, n = rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), rng.normal(size=(4, 2, 8))
    as_bf16 = [torch.tensor(x, dtype=torch.bfloat16) for x in (p, z, n)]
    loss = mnn_loss(*as_bf16, 0.3)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_numpy_mnn_loss(p, z, n, 0.3), rel=2e-2)
