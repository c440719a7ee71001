"""MoCHi-specific behaviour (methods.md section 5), on real CIFAR-10 images.

Checked: mochi_loss by hand and against numpy loops (hardest-N ranking, both kinds of synthetic negatives, appended
logits), its gradient treats the synthetic negatives as constants, and it is MoCo's loss without mixing; forward equals
the symmetric loss of recomputed outputs with the draws it takes from torch's global RNG; the warm-up clock
(mixing_step) counts optimiser steps, survives save/load and is ignored when loading the encoder alone; keys of both
views are enqueued, forward leaves the queue alone, the teacher is frozen and follows by EMA; config errors.

The generic test over all methods (training on real images, the loop, Hub folder) lives in tests/test_methods.py.
The backbone uses the standard ResNet stem at 32 px (16x cheaper than the small-image stem) to stay fast.
"""

from __future__ import annotations

import math

import method_tester as mt
import numpy as np
import pytest
import torch

from hf_contrastive.losses import mochi_loss, moco_loss
from hf_contrastive.models.configuration_mochi import MoCHiConfig
from hf_contrastive.models.modeling_mochi import MoCHiForPreTraining, MoCHiModel

BATCH = 16
SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64, "num_hard_negatives": 16,
         "num_synthetic_negatives": 8, "num_query_mixed_negatives": 4, "small_image_stem": False}


# ----------------------------------------------------------------------------- the loss


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _numpy_synthetic(q, queue, num_hard, mix_indices, mix_alpha, query_mix_indices, query_mix_beta):
    """Per query: its hardest list by <q, n> (argsort), then the two kinds of mixtures, as explicit loops."""
    queue_n = np.stack([_unit(n) for n in queue])
    mixed, query_mixed = [], []
    for i in range(q.shape[0]):
        qi = _unit(q[i])
        hardest = np.argsort(-(queue_n @ qi), kind="stable")[:num_hard]
        mixed.append([
            _unit(mix_alpha[i, c] * queue_n[hardest[mix_indices[i, c, 0]]]
                  + (1 - mix_alpha[i, c]) * queue_n[hardest[mix_indices[i, c, 1]]])
            for c in range(mix_indices.shape[1])
        ])
        query_mixed.append([
            _unit(query_mix_beta[i, c] * qi + (1 - query_mix_beta[i, c]) * queue_n[hardest[query_mix_indices[i, c]]])
            for c in range(query_mix_indices.shape[1])
        ])
    return mixed, query_mixed


def _numpy_mochi_loss(q, k, queue, tau, num_hard, mix_indices, mix_alpha, query_mix_indices, query_mix_beta) -> float:
    mixed, query_mixed = _numpy_synthetic(q, queue, num_hard, mix_indices, mix_alpha, query_mix_indices, query_mix_beta)
    total = 0.0
    for i in range(q.shape[0]):
        qi = _unit(q[i])
        logits = [qi @ _unit(k[i])] + [qi @ _unit(n) for n in queue] + [qi @ h for h in mixed[i]]
        logits += [qi @ h for h in query_mixed[i]]
        logits = np.array(logits) / tau
        total += -logits[0] + math.log(np.exp(logits).sum())
    return total / q.shape[0]


def _random_inputs(seed=0, batch=5, dim=6, size=20, num_hard=7, s=4, s_prime=3):
    rng = np.random.default_rng(seed)
    return {
        "q": rng.normal(size=(batch, dim)),
        "k": rng.normal(size=(batch, dim)) * 2,
        "queue": rng.normal(size=(size, dim)) * 0.5,
        "num_hard": num_hard,
        "mix_indices": rng.integers(0, num_hard, size=(batch, s, 2)),
        "mix_alpha": rng.uniform(size=(batch, s)),
        "query_mix_indices": rng.integers(0, num_hard, size=(batch, s_prime)),
        "query_mix_beta": rng.uniform(0, 0.5, size=(batch, s_prime)),
    }


def _torch(inputs: dict) -> dict:
    return {key: torch.tensor(value) if isinstance(value, np.ndarray) else value for key, value in inputs.items()}


def test_mochi_loss_by_hand():
    # q = k = (1, 0); queue (0, 1), (-1, 0), (0.6, 0.8): hardest first is (0.6, 0.8) [rank 0], then (0, 1) [rank 1].
    # s = 1: a = 0.5 mixes ranks 0 and 1 -> norm(0.3, 0.9) -> <q, h> = 1/sqrt(10).
    # s' = 1: b = 0.5 mixes q with rank 1 -> norm(0.5, 0.5) -> <q, h'> = 1/sqrt(2).
    q = torch.tensor([[2.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 3.0], [-1.0, 0.0], [0.6, 0.8]])
    loss = mochi_loss(q, k, queue, 1.0, 2, torch.tensor([[[0, 1]]]), torch.tensor([[0.5]]),
                      torch.tensor([[1]]), torch.tensor([[0.5]]))
    logits = [1.0, 0.0, -1.0, 0.6, 1 / math.sqrt(10), 1 / math.sqrt(2)]
    expected = -1.0 + math.log(sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # tau divides every logit, the synthetic ones too
    loss_half = mochi_loss(q, k, queue, 0.5, 2, torch.tensor([[[0, 1]]]), torch.tensor([[0.5]]),
                           torch.tensor([[1]]), torch.tensor([[0.5]]))
    assert loss_half.item() == pytest.approx(-2.0 + math.log(sum(math.exp(2 * x) for x in logits)), abs=1e-5)


@pytest.mark.parametrize("seed, tau", [(0, 0.2), (1, 0.07), (2, 1.0)])
def test_mochi_loss_matches_numpy(seed, tau):
    inputs = _random_inputs(seed)
    got = mochi_loss(**{**_torch(inputs), "tau": tau}).item()
    assert got == pytest.approx(_numpy_mochi_loss(**inputs, tau=tau), rel=1e-5)


def test_mochi_loss_without_mixing_is_moco_and_mixing_changes_it():
    inputs = _torch(_random_inputs(3))
    batch = inputs["q"].shape[0]
    empty = {"mix_indices": torch.zeros(batch, 0, 2, dtype=torch.long), "mix_alpha": torch.zeros(batch, 0),
                 "query_mix_indices": torch.zeros(batch, 0, dtype=torch.long), "query_mix_beta": torch.zeros(batch, 0)}
    plain = mochi_loss(inputs["q"], inputs["k"], inputs["queue"], 0.2, inputs["num_hard"], **empty)
    torch.testing.assert_close(plain, moco_loss(inputs["q"], inputs["k"], inputs["queue"], 0.2))
    # more negatives, every one of them hard: the loss grows
    assert mochi_loss(**inputs, tau=0.2) > plain


def test_mochi_loss_gradient_treats_synthetic_negatives_as_constants():
    """The gradient equals that of CE over fixed vectors (the synthetic ones computed in numpy): no gradient flows
    through the mixtures, not even through the query inside h'."""
    inputs = _random_inputs(4)
    mixed, query_mixed = _numpy_synthetic(inputs["q"], inputs["queue"], inputs["num_hard"], inputs["mix_indices"],
                                          inputs["mix_alpha"], inputs["query_mix_indices"], inputs["query_mix_beta"])
    q = torch.tensor(inputs["q"], requires_grad=True)
    mochi_loss(**{**_torch(inputs), "q": q, "tau": 0.2}).backward()

    q_ref = torch.tensor(inputs["q"], requires_grad=True)
    qn = q_ref / q_ref.norm(dim=1, keepdim=True)
    k = torch.tensor(np.stack([_unit(v) for v in inputs["k"]]))
    queue = torch.tensor(np.stack([_unit(v) for v in inputs["queue"]]))
    total = 0
    for i in range(qn.shape[0]):
        constants = torch.tensor(np.stack(mixed[i] + query_mixed[i]))
        logits = torch.cat([(qn[i] * k[i]).sum().view(1), queue @ qn[i], constants @ qn[i]]) / 0.2
        total = total + torch.logsumexp(logits, 0) - logits[0]
    (total / qn.shape[0]).backward()
    torch.testing.assert_close(q.grad, q_ref.grad)


def test_mochi_loss_rejects_bad_ranks_and_shapes():
    inputs = _torch(_random_inputs(5))
    with pytest.raises(ValueError, match=r"mix_indices are ranks among the 7 hardest"):
        mochi_loss(**{**inputs, "mix_indices": inputs["mix_indices"] + 7}, tau=0.2)
    with pytest.raises(ValueError, match=r"query_mix_indices must be in \[0, 7\)"):
        mochi_loss(**{**inputs, "query_mix_indices": inputs["query_mix_indices"] - 8}, tau=0.2)
    with pytest.raises(ValueError, match=r"num_hard must be in \[1, K=20\]"):
        mochi_loss(**{**inputs, "num_hard": 21}, tau=0.2)
    with pytest.raises(ValueError, match="mix_alpha must be"):
        mochi_loss(**{**inputs, "mix_alpha": inputs["mix_alpha"][:, :2]}, tau=0.2)


# ----------------------------------------------------------------------------- the model


TESTER = mt.MethodTester(MoCHiConfig, MoCHiForPreTraining, small=SMALL)
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


def _draws(config: MoCHiConfig, batch: int, active: bool = True) -> dict:
    """The documented order of forward's draws for one direction."""
    s = config.num_synthetic_negatives if active else 0
    s_prime = config.num_query_mixed_negatives if active else 0
    return {
        "mix_indices": torch.randint(config.num_hard_negatives, (batch, s, 2)),
        "mix_alpha": torch.rand(batch, s),
        "query_mix_indices": torch.randint(config.num_hard_negatives, (batch, s_prime)),
        "query_mix_beta": config.query_mix_max * torch.rand(batch, s_prime),
    }


def test_defaults_scale_the_imagenet100_setting_to_the_cifar_queue():
    config = MoCHiConfig()
    assert (config.tau, config.ema_momentum, config.queue_size, config.views) == (0.2, 0.99, 4096, ["strong", "strong"])
    # MoCHi(1024, 1024, 256) with K = 16384, x 4096 / 16384
    mixing = (config.num_hard_negatives, config.num_synthetic_negatives, config.num_query_mixed_negatives)
    assert mixing == (256, 256, 64)
    assert (config.query_mix_max, config.mix_start_step) == (0.5, 0)
    model = TESTER.model()
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "ReLU", "Linear"]
    assert model.queue.features.shape == (64, 32)


def test_forward_is_symmetric_mochi_with_draws_from_the_global_rng(views):
    model = TESTER.model().train()
    torch.manual_seed(7)
    output, queue_before = mt.forward_reading_the_queue(model, views)

    # bn_splits=1: no shuffle, so the mixing draws are the first random numbers forward takes
    (q1, q2), (k1, k2) = TESTER.outputs(model, views)
    torch.manual_seed(7)
    draws_1, draws_2 = _draws(model.config, BATCH), _draws(model.config, BATCH)
    expected = 0.5 * (mochi_loss(q1, k2, queue_before, 0.2, 16, **draws_1)
                      + mochi_loss(q2, k1, queue_before, 0.2, 16, **draws_2))
    torch.testing.assert_close(output.loss.detach(), expected)
    plain = 0.5 * (moco_loss(q1, k2, queue_before, 0.2) + moco_loss(q2, k1, queue_before, 0.2))
    assert not torch.allclose(output.loss.detach(), plain)
    # the two directions draw separately (same draws for both would be another loss)
    swapped = 0.5 * (mochi_loss(q1, k2, queue_before, 0.2, 16, **draws_1)
                     + mochi_loss(q2, k1, queue_before, 0.2, 16, **draws_1))
    assert not torch.allclose(output.loss.detach(), swapped)

    mt.check_keys_and_enqueue(model, output, torch.cat([k1, k2]), shape=(2 * BATCH, 32))  # teacher keys, first view first


def test_warm_up_is_plain_moco_until_mix_start_step_optimiser_steps(views):
    model = TESTER.model(mix_start_step=2).train()
    queue = model.queue.features.clone()
    with torch.no_grad():
        (q1, q2), (k1, k2) = TESTER.outputs(model, views)
        plain = 0.5 * (moco_loss(q1, k2, queue, 0.2) + moco_loss(q2, k1, queue, 0.2))
        for steps in range(2):
            assert model.mixing_step.item() == steps and not model.mixing_active
            torch.testing.assert_close(model(views=views).loss, plain)
            model.momentum_update()  # the loop's call after each optimiser step; momentum 0.99 of identical weights
        assert model.mixing_step.item() == 2 and model.mixing_active
        torch.manual_seed(3)
        mixed = model(views=views).loss
    torch.manual_seed(3)
    draws_1, draws_2 = _draws(model.config, BATCH), _draws(model.config, BATCH)
    (q1, q2), (k1, k2) = TESTER.outputs(model, views)
    expected = 0.5 * (mochi_loss(q1, k2, queue, 0.2, 16, **draws_1) + mochi_loss(q2, k1, queue, 0.2, 16, **draws_2))
    torch.testing.assert_close(mixed, expected)
    assert not torch.allclose(mixed, plain)


def test_warm_up_clock_is_read_from_the_device_once_and_again_after_a_load():
    """The loop never waits for the device to learn the clock: mixing_active reads mixing_step once, then counts
    momentum_update calls on the host; loading a state dict (a resume) makes it read the loaded clock."""
    model = TESTER.model(mix_start_step=2)
    fresh_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert not model.mixing_active and model.known_mixing_step == 0
    model.momentum_update(), model.momentum_update()
    assert model.known_mixing_step == 2 == model.mixing_step.item() and model.mixing_active
    model.load_state_dict(fresh_state)  # mixing_step back to 0
    assert model.known_mixing_step is None and not model.mixing_active


def test_warm_up_clock_is_saved_and_ignored_by_the_encoder(tmp_path):
    model = TESTER.model(mix_start_step=5)
    for _ in range(3):
        model.momentum_update()
    assert "mixing_step" in model.state_dict()
    model.save_pretrained(tmp_path)
    reloaded = MoCHiForPreTraining.from_pretrained(tmp_path)
    assert reloaded.mixing_step.item() == 3 and not reloaded.mixing_active
    assert not any(p.requires_grad for n, p in reloaded.named_parameters() if n.startswith("teacher_"))
    encoder, info = MoCHiModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.testing.assert_close(encoder.state_dict(), model.encoder.state_dict())


def test_teacher_starts_as_student_frozen_and_follows_by_ema(views):
    model = TESTER.model().train()
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.99)
    assert model.mixing_step.item() == 1



test_config_validation = mt.config_validation_test(
    MoCHiConfig,
    [
        ({"num_hard_negatives": 0}, ValueError, r"num_hard_negatives must be in \[1, queue_size=4096\]"),
        ({"num_hard_negatives": 65, "queue_size": 64}, ValueError,
         r"num_hard_negatives must be in \[1, queue_size=64\]"),
        ({"num_synthetic_negatives": -1}, ValueError, "num_synthetic_negatives must be >= 0"),
        ({"num_query_mixed_negatives": -1}, ValueError, "num_query_mixed_negatives must be >= 0"),
        ({"query_mix_max": 0.0}, ValueError, r"query_mix_max must be in \(0, 1\]"),
        ({"query_mix_max": 1.5}, ValueError, r"query_mix_max must be in \(0, 1\]"),
        ({"mix_start_step": -1}, ValueError, "mix_start_step must be >= 0"),
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"num_hard_negatives": 256.0}, TypeError, "num_hard_negatives must be int"),
    ],
)
