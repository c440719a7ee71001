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


@pytest.mark.parametrize("lam", [0.0, 0.37, 1.0])
def test_mnn_loss_normalize_then_mix_matches_numpy(lam):
    """The official model's norm_nn branch: lam * norm(n) + (1 - lam) * norm(z), not normalised again, so the
    neighbour term is 2 - 2 <norm(p), mixed> with a mixed vector shorter than 1."""
    rng = np.random.default_rng(3)
    p, z, n = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)) * 3, rng.normal(size=(5, 4, 6)) * 0.5
    total = 0.0
    for i in range(5):
        pi = _unit(p[i])
        term = 2 - 2 * pi @ _unit(z[i])
        for j in range(4):
            mixed = lam * _unit(n[i, j]) + (1 - lam) * _unit(z[i])
            term += (2 - 2 * pi @ mixed) / 4
        total += term
    got = mnn_loss(*(torch.tensor(a) for a in (p, z, n)), lam, mixing="normalize_then_mix").item()
    assert got == pytest.approx(total / 5, rel=1e-6)
    if 0 < lam < 1:  # the two forms differ strictly inside (0, 1)
        assert abs(got - _numpy_mnn_loss(p, z, n, lam)) > 1e-3


def test_mnn_loss_normalize_then_mix_by_hand():
    # p along x, z along x, neighbour along y, lam 0.5: mixed = (0.5, 0.5), <p, mixed> = 0.5, term = 1.
    p, z, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[4.0, 0.0]]), torch.tensor([[[0.0, 2.0]]])
    assert mnn_loss(p, z, n, 0.5, mixing="normalize_then_mix").item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="mixing must be one of"):
        mnn_loss(p, z, n, 0.5, mixing="norm_nn")


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


# ----------------------------------------------------------------------------- baselines, against numpy loops

from hf_contrastive.losses import (  # noqa: E402
    byol_loss,
    cross_view_infonce_loss,
    moco_loss,
    msf_loss,
    nnclr_loss,
    relational_loss,
    simclr_loss,
)


def _rows_unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max()
    return shifted - np.log(np.exp(shifted).sum())


def _t(*arrays):
    return [torch.tensor(a) for a in arrays]


def test_simclr_loss_matches_numpy():
    rng = np.random.default_rng(10)
    z1, z2 = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    z = _rows_unit(np.concatenate([z1, z2]))
    total = 0.0
    for i in range(10):
        positive = (i + 5) % 10
        logits = np.array([z[i] @ z[j] / 0.2 for j in range(10) if j != i])
        others = [j for j in range(10) if j != i]
        total -= _log_softmax(logits)[others.index(positive)]
    assert simclr_loss(*_t(z1, z2), 0.2).item() == pytest.approx(total / 10, rel=1e-5)


def test_simclr_loss_by_hand_two_images():
    # B=1: the only other row is the positive, so the loss is 0 whatever the vectors.
    assert simclr_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_cross_view_infonce_loss_matches_numpy():
    """The MNN benchmark's SimCLR: each view against the other view of every image only, both directions."""
    rng = np.random.default_rng(16)
    z1, z2 = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    a, b = _rows_unit(z1), _rows_unit(z2)
    forward = -sum(_log_softmax(np.array([a[i] @ b[j] / 0.2 for j in range(5)]))[i] for i in range(5)) / 5
    backward = -sum(_log_softmax(np.array([b[i] @ a[j] / 0.2 for j in range(5)]))[i] for i in range(5)) / 5
    got = cross_view_infonce_loss(*_t(z1, z2), 0.2).item()
    assert got == pytest.approx((forward + backward) / 2, rel=1e-6)
    assert abs(got - simclr_loss(*_t(z1, z2), 0.2).item()) > 1e-3  # no same-view negatives: not NT-Xent


def test_moco_loss_matches_numpy():
    rng = np.random.default_rng(11)
    q, k, queue = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)), rng.normal(size=(9, 6))
    qn, kn, Qn = _rows_unit(q), _rows_unit(k), _rows_unit(queue)
    total = 0.0
    for i in range(4):
        logits = np.concatenate([[qn[i] @ kn[i]], Qn @ qn[i]]) / 0.2
        total -= _log_softmax(logits)[0]
    assert moco_loss(*_t(q, k, queue), 0.2).item() == pytest.approx(total / 4, rel=1e-5)


def test_byol_loss_by_hand():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    # row 0: 2 - 2 cos(45 deg) ; row 1: opposite -> 4
    expected = ((2 - 2 / math.sqrt(2)) + 4) / 2
    assert byol_loss(p, z).item() == pytest.approx(expected, abs=1e-6)


def _numpy_nnclr_paper_term(neighbors: np.ndarray, predictions: np.ndarray, tau: float) -> float:
    """NNCLR's neighbours-to-predictions InfoNCE as loops: each neighbour rank against every prediction."""
    nn_, p = _rows_unit(neighbors), _rows_unit(predictions)
    batch, k = neighbors.shape[:2]
    total = 0.0
    for j in range(k):
        for i in range(batch):
            total -= _log_softmax(np.array([nn_[i, j] @ p[m] / tau for m in range(batch)]))[i]
    return total / (batch * k)


@pytest.mark.parametrize("k", [1, 3])
def test_nnclr_loss_matches_numpy(k):
    rng = np.random.default_rng(12)
    neighbors, predictions = rng.normal(size=(5, k, 6)), rng.normal(size=(5, 6))
    expected = _numpy_nnclr_paper_term(neighbors, predictions, 0.2)
    got = nnclr_loss(torch.tensor(neighbors[:, 0] if k == 1 else neighbors), torch.tensor(predictions), 0.2)
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_nnclr_loss_with_prediction_to_neighbours_matches_numpy(k):
    """The MNN benchmark's NNCLR: the paper's term averaged with each prediction against all B k neighbours, its own
    k neighbours as positives with their log-probabilities summed (not averaged)."""
    rng = np.random.default_rng(17)
    neighbors, predictions = rng.normal(size=(4, k, 6)), rng.normal(size=(4, 6))
    nn_, p = _rows_unit(neighbors), _rows_unit(predictions)
    paper = _numpy_nnclr_paper_term(neighbors, predictions, 0.2)
    flat = nn_.reshape(4 * k, 6)  # row b * k + l: neighbour l of sample b
    reverse = 0.0
    for i in range(4):
        log_probs = _log_softmax(np.array([p[i] @ flat[r] / 0.2 for r in range(4 * k)]))
        reverse -= sum(log_probs[i * k + j] for j in range(k))
    reverse /= 4
    got = nnclr_loss(torch.tensor(neighbors), torch.tensor(predictions), 0.2, prediction_to_neighbors=True).item()
    assert got == pytest.approx((paper + reverse) / 2, rel=1e-6)
    assert nnclr_loss(torch.tensor(neighbors), torch.tensor(predictions), 0.2).item() == pytest.approx(paper, rel=1e-6)


def test_msf_loss_matches_numpy():
    rng = np.random.default_rng(13)
    p, z, n = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)), rng.normal(size=(4, 5, 6))
    total = 0.0
    for i in range(4):
        pi = _unit(p[i])
        distances = [2 - 2 * pi @ _unit(z[i])] + [2 - 2 * pi @ _unit(n[i, j]) for j in range(5)]
        total += sum(distances) / 6
    assert msf_loss(*_t(p, z, n)).item() == pytest.approx(total / 4, rel=1e-5)


def test_relational_loss_matches_numpy():
    rng = np.random.default_rng(14)
    s, t, queue = rng.normal(size=(3, 6)), rng.normal(size=(3, 6)), rng.normal(size=(7, 6))
    sn, tn, Qn = _rows_unit(s), _rows_unit(t), _rows_unit(queue)
    total = 0.0
    for i in range(3):
        target = np.exp(_log_softmax(Qn @ tn[i] / 0.04))
        total -= (target * _log_softmax(Qn @ sn[i] / 0.1)).sum()
    assert relational_loss(*_t(s, t, queue), 0.1, 0.04).item() == pytest.approx(total / 3, rel=1e-5)


def test_relational_loss_is_minimal_when_student_equals_teacher_temperatures():
    # Cross entropy >= entropy of the target, with equality when the distributions match.
    rng = np.random.default_rng(15)
    t, queue = torch.tensor(rng.normal(size=(3, 6))), torch.tensor(rng.normal(size=(7, 6)))
    matched = relational_loss(t, t, queue, 0.1, 0.1)
    assert relational_loss(t + 0.3 * torch.randn(3, 6, dtype=torch.float64), t, queue, 0.1, 0.1) > matched


@pytest.mark.parametrize(
    "call",
    [
        lambda: simclr_loss(torch.randn(4, 8), torch.randn(3, 8), 0.2),
        lambda: moco_loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(10, 7), 0.2),
        lambda: byol_loss(torch.randn(4, 8), torch.randn(4, 9)),
        lambda: nnclr_loss(torch.randn(3, 8), torch.randn(4, 8), 0.2),
        lambda: msf_loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)),
        lambda: relational_loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(10, 7), 0.1, 0.04),
    ],
)
def test_baseline_losses_reject_bad_shapes(call):
    with pytest.raises(ValueError, match="must"):
        call()


def test_contrastive_losses_backpropagate():
    z1, z2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    simclr_loss(z1, z2, 0.2).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
