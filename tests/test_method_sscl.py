"""SSCL-specific behaviour (reconstruction; methods.md section 4), on real CIFAR-10 images.

Checked: sscl_loss by hand (debiasing with and without its floor, hardness weights) and against numpy loops (hardest-N
mixing, weights exp(beta <q, n>), Chuang et al.'s denominator), its stability at small temperatures, its gradients
(synthetic negatives constant; weights with or without gradient), and that it is MoCo's loss with every ingredient
off; sscl_floor_mask against numpy, and that rows at the floor send no gradient to the negatives; forward equals the symmetric loss of recomputed outputs with the draws it takes from torch's global RNG; keys of
both views are enqueued, forward leaves the queue alone, the teacher is frozen and follows by EMA; config errors.

The generic test over all methods (training on real images, the loop, Hub folder) lives in tests/test_methods.py.
The backbone uses the standard ResNet stem at 32 px (16x cheaper than the small-image stem) to stay fast.
"""

from __future__ import annotations

import math

import method_tester as mt
import numpy as np
import pytest
import torch

from hf_contrastive.losses import moco_loss, sscl_floor_mask, sscl_loss
from hf_contrastive.methods.sscl import SPEC
from hf_contrastive.models.configuration_sscl import SSCLConfig
from hf_contrastive.models.modeling_sscl import SSCLForPreTraining

BATCH = 16
SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64, "num_hard_negatives": 16,
         "num_synthetic_negatives": 8, "small_image_stem": False}


# ----------------------------------------------------------------------------- the loss


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _numpy_negatives(q, queue, num_hard, mix_indices, mix_alpha) -> list[list[np.ndarray]]:
    """Per query: the normalised queue, then its synthetic mixtures of two of its num_hard hardest entries."""
    queue_n = [_unit(n) for n in queue]
    negatives = []
    for i in range(q.shape[0]):
        hardest = np.argsort(-(np.stack(queue_n) @ _unit(q[i])), kind="stable")[:num_hard]
        mixed = [
            _unit(mix_alpha[i, c] * queue_n[hardest[mix_indices[i, c, 0]]]
                  + (1 - mix_alpha[i, c]) * queue_n[hardest[mix_indices[i, c, 1]]])
            for c in range(mix_indices.shape[1])
        ]
        negatives.append(queue_n + mixed)
    return negatives


def _numpy_sscl_loss(q, k, queue, tau, num_hard, mix_indices, mix_alpha, beta, tau_plus) -> float:
    """methods.md section 4 written out in float64 loops."""
    total = 0.0
    for i, negatives in enumerate(_numpy_negatives(q, queue, num_hard, mix_indices, mix_alpha)):
        qi = _unit(q[i])
        similarities = np.array([qi @ n for n in negatives])
        weights = np.exp(beta * similarities)
        weights /= weights.sum()
        positive = math.exp(qi @ _unit(k[i]) / tau)
        weighted_mean = sum(w * math.exp(s / tau) for w, s in zip(weights, similarities, strict=True))
        negative_term = max((weighted_mean - tau_plus * positive) / (1 - tau_plus), math.exp(-1 / tau))
        total += -math.log(positive / (positive + len(negatives) * negative_term))
    return total / q.shape[0]


def _random_inputs(seed=0, batch=5, dim=6, size=20, num_hard=7, s=4):
    rng = np.random.default_rng(seed)
    return {
        "q": rng.normal(size=(batch, dim)),
        "k": rng.normal(size=(batch, dim)) * 2,
        "queue": rng.normal(size=(size, dim)) * 0.5,
        "num_hard": num_hard,
        "mix_indices": rng.integers(0, num_hard, size=(batch, s, 2)),
        "mix_alpha": rng.uniform(size=(batch, s)),
    }


def _torch(inputs: dict) -> dict:
    return {key: torch.tensor(value) if isinstance(value, np.ndarray) else value for key, value in inputs.items()}


def _no_mixing(batch: int) -> dict:
    return {"num_hard": 1, "mix_indices": torch.zeros(batch, 0, 2, dtype=torch.long),
            "mix_alpha": torch.zeros(batch, 0)}


def test_sscl_loss_by_hand():
    # q = k = (1, 0), queue (0, 1), (0, -1): both similarities 0, tau = 1, M = 2, pos = e.
    q, k = torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [0.0, -2.0]])
    # no debiasing: -log(e / (e + 2))
    loss = sscl_loss(q, k, queue, 1.0, **_no_mixing(1), beta=0.0, tau_plus=0.0)
    assert loss.item() == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)
    # tau_plus = 0.1: Ng = (1 - 0.1 e) / 0.9 > e^-1
    ng = (1 - 0.1 * math.e) / 0.9
    loss = sscl_loss(q, k, queue, 1.0, **_no_mixing(1), beta=0.0, tau_plus=0.1)
    assert loss.item() == pytest.approx(math.log(math.e + 2 * ng) - 1, abs=1e-6)
    # tau_plus = 0.5: (1 - 0.5 e) / 0.5 < 0, so the floor e^-1 holds
    loss = sscl_loss(q, k, queue, 1.0, **_no_mixing(1), beta=0.0, tau_plus=0.5)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)
    # hardness weights: queue (0, 1), (0.6, 0.8) -> similarities 0 and 0.6; beta = 1: w = (1, e^.6) / (1 + e^.6)
    queue = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    mean = (1 + math.exp(0.6) * math.exp(0.6)) / (1 + math.exp(0.6))
    loss = sscl_loss(q, k, queue, 1.0, **_no_mixing(1), beta=1.0, tau_plus=0.0)
    assert loss.item() == pytest.approx(math.log(math.e + 2 * mean) - 1, abs=1e-6)
    # a synthetic negative: s = 1 mixes the hardest two, (0.6, 0.8) and (0, 1), a = 0.5 -> <q, h> = 0.3 / |(0.3, 0.9)|
    h = 0.3 / math.hypot(0.3, 0.9)
    loss = sscl_loss(q, k, queue, 1.0, 2, torch.tensor([[[0, 1]]]), torch.tensor([[0.5]]), beta=0.0, tau_plus=0.0)
    assert loss.item() == pytest.approx(math.log(math.e + 1 + math.exp(0.6) + math.exp(h)) - 1, abs=1e-6)


@pytest.mark.parametrize(
    "seed, tau, beta, tau_plus",
    [(0, 0.2, 2.0, 0.1), (1, 0.5, 1.0, 0.0), (2, 0.2, 0.0, 0.1), (3, 0.1, 5.0, 0.3), (4, 1.0, 0.5, 0.6)],
)
def test_sscl_loss_matches_numpy(seed, tau, beta, tau_plus):
    inputs = _random_inputs(seed)
    got = sscl_loss(**_torch(inputs), tau=tau, beta=beta, tau_plus=tau_plus).item()
    assert got == pytest.approx(_numpy_sscl_loss(**inputs, tau=tau, beta=beta, tau_plus=tau_plus), rel=1e-5)


def test_sscl_loss_is_stable_at_small_temperatures():
    # exp(1 / 0.01) = e^100 overflows float32: the row-max shift keeps the float32 loss finite and exact
    inputs = _random_inputs(5)
    float32 = {key: value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value
               for key, value in _torch(inputs).items()}
    got = sscl_loss(**float32, tau=0.01, beta=2.0, tau_plus=0.1)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert got.item() == pytest.approx(_numpy_sscl_loss(**inputs, tau=0.01, beta=2.0, tau_plus=0.1), rel=1e-4)


def test_sscl_loss_with_every_ingredient_off_is_moco():
    inputs = _torch(_random_inputs(6))
    got = sscl_loss(inputs["q"], inputs["k"], inputs["queue"], 0.2, **_no_mixing(5), beta=0.0, tau_plus=0.0)
    torch.testing.assert_close(got, moco_loss(inputs["q"], inputs["k"], inputs["queue"], 0.2))


@pytest.mark.parametrize("detach", [False, True])
def test_sscl_loss_gradient(detach):
    """Against the formula written directly in torch (float64, no shift) over the negatives computed in numpy, so
    the synthetic ones are constants; the weights carry gradients unless detach_weights."""
    inputs = _random_inputs(7)
    tau, beta, tau_plus = 0.2, 2.0, 0.1
    q = torch.tensor(inputs["q"], requires_grad=True)
    sscl_loss(**{**_torch(inputs), "q": q}, tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=detach).backward()

    negatives = _numpy_negatives(inputs["q"], inputs["queue"], inputs["num_hard"], inputs["mix_indices"],
                                 inputs["mix_alpha"])
    q_ref = torch.tensor(inputs["q"], requires_grad=True)
    qn = q_ref / q_ref.norm(dim=1, keepdim=True)
    k = torch.tensor(np.stack([_unit(v) for v in inputs["k"]]))
    total = 0
    for i in range(qn.shape[0]):
        similarities = torch.tensor(np.stack(negatives[i])) @ qn[i]
        weights = torch.exp(beta * similarities)
        weights = (weights / weights.sum()).detach() if detach else weights / weights.sum()
        positive = torch.exp(qn[i] @ k[i] / tau)
        ng = torch.clamp(((weights * torch.exp(similarities / tau)).sum() - tau_plus * positive) / (1 - tau_plus),
                         min=math.exp(-1 / tau))
        total = total - torch.log(positive / (positive + len(negatives[i]) * ng))
    (total / qn.shape[0]).backward()
    torch.testing.assert_close(q.grad, q_ref.grad)


def _numpy_floor_rows(q, k, queue, tau, num_hard, mix_indices, mix_alpha, beta, tau_plus) -> list[bool]:
    """Per query: is the debiased term's floor exp(-1/tau) active (float64 loops)."""
    rows = []
    for i, negatives in enumerate(_numpy_negatives(q, queue, num_hard, mix_indices, mix_alpha)):
        qi = _unit(q[i])
        similarities = np.array([qi @ n for n in negatives])
        weights = np.exp(beta * similarities) / np.exp(beta * similarities).sum()
        weighted_mean = float((weights * np.exp(similarities / tau)).sum())
        debiased = (weighted_mean - tau_plus * math.exp(qi @ _unit(k[i]) / tau)) / (1 - tau_plus)
        rows.append(debiased <= math.exp(-1 / tau))
    return rows


@pytest.mark.parametrize("seed, tau, tau_plus, rows_at_floor",
                         [(9, 0.2, 0.1, "some"), (10, 0.5, 0.1, "none"), (11, 0.2, 0.3, "all"), (12, 0.2, 0.0, "none")])
def test_sscl_floor_mask_matches_numpy(seed, tau, tau_plus, rows_at_floor):
    """Aligned pairs (k near q) and a spread queue: the floor depends on tau and tau_plus; never at tau_plus 0."""
    inputs = _random_inputs(seed, batch=40)
    inputs["k"] = inputs["q"] + 0.3 * np.random.default_rng(seed).normal(size=inputs["q"].shape)
    got = sscl_floor_mask(**_torch(inputs), tau=tau, beta=2.0, tau_plus=tau_plus)
    assert got.dtype == torch.bool and got.shape == (40,)
    assert got.tolist() == _numpy_floor_rows(**inputs, tau=tau, beta=2.0, tau_plus=tau_plus)
    count = int(got.sum())
    assert {"none": count == 0, "some": 0 < count < 40, "all": count == 40}[rows_at_floor]


def test_sscl_loss_sends_no_gradient_to_negatives_of_rows_at_the_floor():
    """By hand: q = k = (1, 0), tau = 1, tau_plus = 0.5 (the floor case of test_sscl_loss_by_hand): the queue gets
    no gradient; at tau_plus = 0.1 (no floor) it does."""
    q, k = torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    for tau_plus, at_floor in ((0.5, True), (0.1, False)):
        queue = torch.tensor([[0.6, 0.8], [0.0, -2.0]], requires_grad=True)
        assert sscl_floor_mask(q, k, queue, 1.0, **_no_mixing(1), beta=1.0, tau_plus=tau_plus).item() is at_floor
        sscl_loss(q, k, queue, 1.0, **_no_mixing(1), beta=1.0, tau_plus=tau_plus).backward()
        assert (queue.grad.abs().max().item() == 0.0) is at_floor


def test_sscl_loss_rejects_bad_inputs():
    inputs = _torch(_random_inputs(8))
    with pytest.raises(ValueError, match=r"tau_plus must be in \[0, 1\)"):
        sscl_loss(**inputs, tau=0.2, beta=1.0, tau_plus=1.0)
    with pytest.raises(ValueError, match=r"mix_indices are ranks among the 7 hardest"):
        sscl_loss(**{**inputs, "mix_indices": inputs["mix_indices"] + 7}, tau=0.2, beta=1.0, tau_plus=0.1)


# ----------------------------------------------------------------------------- the model


TESTER = mt.MethodTester(SSCLConfig, SSCLForPreTraining, small=SMALL)
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


def test_defaults_and_reconstruction_label():
    config = SSCLConfig()
    assert (config.tau, config.ema_momentum, config.queue_size, config.views) == (0.2, 0.99, 4096, ["strong", "strong"])
    assert (config.num_hard_negatives, config.num_synthetic_negatives) == (256, 256)
    assert (config.hardness_beta, config.tau_plus, config.detach_hardness_weights) == (2.0, 0.1, False)
    assert SPEC.status == "reconstruction"
    assert "Reconstruction: built from the abstract; not verified against the paper's tables" in SSCLConfig.__doc__
    model = TESTER.model()
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "ReLU", "Linear"]


@pytest.mark.parametrize("detach", [False, True])
def test_forward_is_symmetric_sscl_with_draws_from_the_global_rng(views, detach):
    model = TESTER.model(detach_hardness_weights=detach, tau_plus=0.05, hardness_beta=3.0).train()
    torch.manual_seed(11)
    output, queue_before = mt.forward_reading_the_queue(model, views)

    # bn_splits=1: no shuffle, so the mixing draws are the first random numbers forward takes
    (q1, q2), (k1, k2) = TESTER.outputs(model, views)
    torch.manual_seed(11)
    draws = [(torch.randint(16, (BATCH, 8, 2)), torch.rand(BATCH, 8)) for _ in range(2)]
    settings = {"beta": 3.0, "tau_plus": 0.05, "detach_weights": detach}
    expected = 0.5 * (sscl_loss(q1, k2, queue_before, 0.2, 16, *draws[0], **settings)
                      + sscl_loss(q2, k1, queue_before, 0.2, 16, *draws[1], **settings))
    torch.testing.assert_close(output.loss.detach(), expected)
    plain = 0.5 * (moco_loss(q1, k2, queue_before, 0.2) + moco_loss(q2, k1, queue_before, 0.2))
    assert not torch.allclose(output.loss.detach(), plain)

    mt.check_keys_and_enqueue(model, output, torch.cat([k1, k2]), shape=(2 * BATCH, 32))


def test_teacher_starts_as_student_frozen_and_follows_by_ema(views):
    model = TESTER.model().train()
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.99)



test_config_validation = mt.config_validation_test(
    SSCLConfig,
    [
        ({"num_hard_negatives": 0}, ValueError, r"num_hard_negatives must be in \[1, queue_size=4096\]"),
        ({"num_hard_negatives": 65, "queue_size": 64}, ValueError,
         r"num_hard_negatives must be in \[1, queue_size=64\]"),
        ({"num_synthetic_negatives": -1}, ValueError, "num_synthetic_negatives must be >= 0"),
        ({"hardness_beta": -0.5}, ValueError, "hardness_beta must be >= 0"),
        ({"tau_plus": 1.0}, ValueError, r"tau_plus must be in \[0, 1\)"),
        ({"tau_plus": -0.1}, ValueError, r"tau_plus must be in \[0, 1\)"),
        ({"tau": -1}, ValueError, "tau must be > 0"),
        ({"ema_momentum": -0.1}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"views": ["strong", "weak", "weak"]}, ValueError, "exactly two views"),
        ({"detach_hardness_weights": "yes"}, TypeError, "detach_hardness_weights must be bool"),
    ],
)
