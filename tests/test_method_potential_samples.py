"""Mining of potential samples (a reconstruction from the abstract of arXiv 2311.00358): the loss against a numpy
loop, forward == the loss of independently recomputed outputs on real CIFAR-10 images, what is enqueued, teacher
initialisation and EMA, config checks.

The generic test over all methods (training on real images, Hub folder) lives in tests/test_methods.py.
"""

from __future__ import annotations

import math

import method_tester as mt
import numpy as np
import pytest
import torch

import hf_contrastive
from hf_contrastive.losses import moco_loss, potential_samples_loss
from hf_contrastive.models.configuration_potential_samples import PotentialSamplesConfig
from hf_contrastive.models.modeling_potential_samples import (
    PotentialSamplesForPreTraining,
)

BATCH = 16
SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64, "negative_rank_low": 8,
         "negative_rank_high": 40}


# ---------------------------------------------------------------------------------------------- loss vs numpy loop


def _reference_loss(queries, keys, queue, tau, nn_topk, band, mined_weight, soft_weight, soft_tau, soft_support):
    """One query at a time, in float64, with explicit Python sums."""
    def unit(x):
        return x / np.linalg.norm(x)

    queue = [unit(row) for row in queue.astype(np.float64)]
    size = len(queue)
    total = 0.0
    for query, key in zip(queries.astype(np.float64), keys.astype(np.float64), strict=True):
        query, key = unit(query), unit(key)
        similarity = [float(key @ entry) for entry in queue]
        ranked = sorted(range(size), key=lambda j: (-similarity[j], j))  # ties by queue index
        rank = {j: r for r, j in enumerate(ranked)}
        hard = {j for j in range(size) if rank[j] < nn_topk}
        support = hard if soft_support == "topk" else set(range(size))
        normaliser = sum(math.exp(similarity[j] / soft_tau) for j in support)
        soft = {j: (math.exp(similarity[j] / soft_tau) / normaliser if j in support else 0.0) for j in range(size)}
        if mined_weight == 0:
            positives = set()
        elif soft_support == "queue" and soft_weight > 0:
            positives = set(range(size))
        else:
            positives = hard
        weight = {j: mined_weight * ((1 - soft_weight) * (j in hard) + soft_weight * nn_topk * soft[j])
                  for j in positives}
        if band is None:
            negatives = {j for j in range(size) if j not in positives}
        else:
            negatives = {j for j in range(size) if band[0] <= rank[j] < band[1] and j not in positives}
        logit_key = float(query @ key) / tau
        logits = {j: float(query @ queue[j]) / tau for j in positives | negatives}
        log_z = math.log(math.exp(logit_key) + sum(math.exp(value) for value in logits.values()))
        numerator = (logit_key - log_z) + sum(weight[j] * (logits[j] - log_z) for j in positives)
        total += -numerator / (1 + sum(weight.values()))
    return total / len(queries)


def _random_inputs(seed: int, batch: int = 6, size: int = 40, dim: int = 8):
    generator = np.random.default_rng(seed)
    queries, keys = generator.normal(size=(batch, dim)), generator.normal(size=(batch, dim))
    queue = generator.normal(size=(size, dim)) * generator.uniform(0.5, 2.0, size=(size, 1))  # raw, not unit
    # make a few queue entries close to the keys, as mined neighbours are in practice
    queue[:batch] = keys + 0.3 * generator.normal(size=keys.shape)
    return queries, keys, queue


CASES = [
    # tau, k, band, mined_weight, soft_weight, soft_tau, soft_support
    (0.2, 5, (8, 30), 1.0, 0.5, 0.1, "topk"),  # the defaults' shape
    (0.2, 3, (0, 20), 1.0, 0.0, 0.1, "topk"),  # hard only; band overlapping the positives
    (0.5, 4, (10, 1000), 0.7, 1.0, 0.05, "topk"),  # soft only; band end beyond the queue
    (0.1, 2, None, 1.0, 0.3, 0.2, "topk"),  # all negatives
    (0.2, 5, (8, 30), 1.0, 0.5, 0.1, "queue"),  # soft weights over the whole queue
    (0.2, 5, (8, 30), 2.0, 0.0, 0.1, "queue"),  # soft_weight 0: "queue" support changes nothing
    (0.2, 5, (3, 25), 0.0, 0.5, 0.1, "topk"),  # no mining: only the band
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_numpy_loop(case, seed):
    tau, k, band, mined_weight, soft_weight, soft_tau, soft_support = case
    queries, keys, queue = _random_inputs(seed)
    expected = _reference_loss(queries, keys, queue, tau, k, band, mined_weight, soft_weight, soft_tau, soft_support)
    got = potential_samples_loss(
        torch.tensor(queries, dtype=torch.float32), torch.tensor(keys, dtype=torch.float32),
        torch.tensor(queue, dtype=torch.float32), tau=tau, nn_topk=k, negative_band=band,
        mined_weight=mined_weight, soft_weight=soft_weight, soft_tau=soft_tau, soft_support=soft_support,
    )
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_without_mining_and_with_all_negatives_it_is_moco():
    queries, keys, queue = (torch.tensor(x, dtype=torch.float32) for x in _random_inputs(3))
    got = potential_samples_loss(queries, keys, queue, tau=0.2, nn_topk=5, negative_band=None, mined_weight=0.0)
    torch.testing.assert_close(got, moco_loss(queries, keys, queue, 0.2))


def test_hand_computed_two_dimensional_case():
    # key along x; queue at angles 0, 60, 90, 180 degrees -> similarities 1, 0.5, 0, -1 (ranks 0, 1, 2, 3).
    # k = 1 (hard positive: entry 0), soft_weight 0, mined weight 1, band [2, 3) -> negative: entry 2 only.
    query = torch.tensor([[0.0, 1.0]])
    key = torch.tensor([[2.0, 0.0]])
    queue = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 3.0], [-1.0, 0.0]])
    tau = 0.5
    # logits (q.c / tau): key 0, entry 0: 0, entry 2: 2; entry 1 and 3 are out of the candidate set
    log_z = math.log(math.exp(0) + math.exp(0) + math.exp(2))
    expected = -((0 - log_z) + 1.0 * (0 - log_z)) / 2
    got = potential_samples_loss(query, key, queue, tau=tau, nn_topk=1, negative_band=(2, 3), soft_weight=0.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_only_positives_and_band_entries_matter_and_only_queries_get_gradients():
    queries, keys, queue = (torch.tensor(x, dtype=torch.float32) for x in _random_inputs(4, batch=1, size=30))
    key = torch.nn.functional.normalize(keys[0], dim=0)
    cosine = torch.nn.functional.normalize(queue, dim=1) @ key
    order = cosine.argsort(descending=True)  # order[r] = queue index of rank r
    arguments = {"tau": 0.2, "nn_topk": 3, "negative_band": (6, 12), "soft_weight": 0.5}
    queries.requires_grad_(True)
    loss = potential_samples_loss(queries, keys, queue, **arguments)
    loss.backward()
    assert torch.isfinite(queries.grad).all() and queries.grad.abs().sum() > 0

    def turned(rank: int) -> torch.Tensor:
        """The queue with the entry of this rank turned around the key: same cosine to the key (same rank),
        another direction (another similarity to the query)."""
        index = order[rank]
        orthogonal = torch.randn(queue.shape[1], generator=torch.Generator().manual_seed(rank))
        orthogonal = torch.nn.functional.normalize(orthogonal - (orthogonal @ key) * key, dim=0)
        changed = queue.clone()
        changed[index] = cosine[index] * key + (1 - cosine[index] ** 2).sqrt() * orthogonal
        return changed

    with torch.no_grad():
        for rank in (3, 4, 5, 12, 20, 29):  # between the positives and the band, or after it: not candidates
            changed = turned(rank)
            assert torch.equal((torch.nn.functional.normalize(changed, dim=1) @ key).argsort(descending=True), order)
            torch.testing.assert_close(potential_samples_loss(queries, keys, changed, **arguments), loss.detach())
        for rank in (0, 2, 6, 11):  # mined positives and band negatives
            changed = turned(rank)
            assert torch.equal((torch.nn.functional.normalize(changed, dim=1) @ key).argsort(descending=True), order)
            assert abs(potential_samples_loss(queries, keys, changed, **arguments).item() - loss.item()) > 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nn_topk": 0}, "nn_topk must be between 1"),
        ({"nn_topk": 40}, "nn_topk must be between 1"),
        ({"soft_support": "all"}, "soft_support must be"),
    ],
)
def test_loss_argument_errors(kwargs, message):
    queries, keys, queue = (torch.tensor(x, dtype=torch.float32) for x in _random_inputs(5))
    arguments = {"tau": 0.2, "nn_topk": 5, "negative_band": (8, 30), **kwargs}
    with pytest.raises(ValueError, match=message):
        potential_samples_loss(queries, keys, queue, **arguments)


# ---------------------------------------------------------------------------------------------- model on real images


TESTER = mt.MethodTester(PotentialSamplesConfig, PotentialSamplesForPreTraining, small=SMALL)
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


def test_defaults_spec_and_head():
    config = PotentialSamplesConfig()
    assert (config.tau, config.ema_momentum, config.queue_size, config.nn_topk) == (0.2, 0.99, 4096, 5)
    assert (config.mined_weight, config.soft_weight, config.soft_tau, config.soft_support) == (1.0, 0.5, 0.1, "topk")
    assert (config.negative_selection, config.negative_band) == ("band", (32, 2048))
    assert PotentialSamplesConfig(negative_selection="all").negative_band is None
    assert config.views == ["strong", "strong"]
    assert "Reconstruction: built from the abstract" in PotentialSamplesConfig.__doc__
    spec = hf_contrastive.get_method("potential_samples")
    assert spec.status == "reconstruction" and spec.arxiv == "2311.00358"
    assert set(spec.reported_results) == {"cifar10", "cifar100", "tiny-imagenet"}
    assert all("abstract; protocol not stated" in text for text in spec.reported_results.values())
    model = TESTER.model()
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "ReLU", "Linear"]  # MoCo v2 head
    assert model.queue.features.shape == (64, 32) and model.queue_keys_per_sample == 2


def test_teacher_starts_as_student_frozen_and_follows_by_ema(views):
    model = TESTER.model().train()
    TESTER.check_teacher_follows_the_student_by_ema(model, views, momentum=0.99)



@pytest.mark.parametrize(
    "overrides",
    [{}, {"negative_selection": "all", "soft_weight": 1.0, "nn_topk": 3}, {"soft_support": "queue", "mined_weight": 0.5}],
)
def test_forward_is_the_symmetric_loss_against_the_queue_snapshot_and_enqueues_both_keys(views, overrides):
    model = TESTER.model(**overrides).train()
    # a queue holding real teacher keys of other images, so that mining finds meaningful neighbours
    with torch.no_grad():
        others = TESTER.teacher_output(model, views[1].flip(0).roll(3, dims=3))
    model.enqueue({"queue": torch.cat([others, others + 0.01 * torch.randn_like(others)])})
    output, queue_before = mt.forward_reading_the_queue(model, views)

    config = model.config
    arguments = {"tau": config.tau, "nn_topk": config.nn_topk, "negative_band": config.negative_band,
                 "mined_weight": config.mined_weight, "soft_weight": config.soft_weight, "soft_tau": config.soft_tau,
                 "soft_support": config.soft_support}
    # train-mode BN with bn_splits=1: per-view batch statistics, as forward
    (q1, q2), (k1, k2) = TESTER.outputs(model, views)
    expected = 0.5 * (potential_samples_loss(q1, k2, queue_before, **arguments)
                      + potential_samples_loss(q2, k1, queue_before, **arguments))
    torch.testing.assert_close(output.loss.detach(), expected)
    # not the asymmetric loss, nor a view paired with its own key, nor plain MoCo
    assert not torch.allclose(output.loss.detach(), potential_samples_loss(q1, k2, queue_before, **arguments))
    assert not torch.allclose(output.loss.detach(), 0.5 * (potential_samples_loss(q1, k1, queue_before, **arguments)
                                                           + potential_samples_loss(q2, k2, queue_before, **arguments)))
    assert not torch.allclose(output.loss.detach(), 0.5 * (moco_loss(q1, k2, queue_before, 0.2)
                                                           + moco_loss(q2, k1, queue_before, 0.2)))

    # teacher keys, first view first, enqueued after the 2 x 16 pre-filled keys (64 in all fill the queue exactly)
    assert model.queue.pointer.item() == 2 * BATCH
    mt.check_keys_and_enqueue(model, output, torch.cat([k1, k2]), shape=(2 * BATCH, 32))
    assert model.queue.pointer.item() == 0


def test_teacher_keys_use_shuffle_bn_when_batch_norm_is_split(views):
    model = TESTER.model(bn_splits=2).train()
    mt.check_teacher_keys_use_shuffle_bn(model, views, lambda x: TESTER.teacher_output(model, x))


test_config_validation = mt.config_validation_test(
    PotentialSamplesConfig,
    [
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"soft_tau": -1.0}, ValueError, "soft_tau must be > 0"),
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"queue_size": 1}, ValueError, "queue_size must be >= 2"),
        ({"nn_topk": 0}, ValueError, "nn_topk must be between 1 and queue_size - 1"),
        ({"nn_topk": 64}, ValueError, "nn_topk must be between 1 and queue_size - 1"),
        ({"mined_weight": -0.5}, ValueError, "mined_weight must be >= 0"),
        ({"soft_weight": 1.5}, ValueError, r"soft_weight must be in \[0, 1\]"),
        ({"soft_support": "all"}, ValueError, "soft_support must be one of"),
        ({"negative_selection": "hard"}, ValueError, "negative_selection must be one of"),
        ({"negative_rank_low": 10, "negative_rank_high": 10}, ValueError, "0 <= negative_rank_low < negative_rank_high"),
        ({"negative_rank_low": -1}, ValueError, "0 <= negative_rank_low < negative_rank_high"),
        ({"negative_rank_low": 64, "negative_rank_high": 100}, ValueError, "holds no negatives"),
        ({"nn_topk": 8, "negative_rank_low": 2, "negative_rank_high": 8}, ValueError, "holds no negatives"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"nn_topk": 5.0}, TypeError, "nn_topk must be int"),
    ],
    **SMALL,
)
