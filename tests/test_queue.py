"""The support queue, the nearest-neighbour lookup, EMA and the kNN vote as separate units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hf_contrastive
from hf_contrastive.evaluation import knn_predict
from hf_contrastive.models import FeatureQueue, ema_update_, nearest_neighbors


def _keys(start: int, count: int, dim: int = 3) -> torch.Tensor:
    """Rows whose first entry records their insertion order."""
    return torch.arange(start, start + count, dtype=torch.float32)[:, None].repeat(1, dim)


def test_queue_starts_with_random_unit_vectors_and_pointer_zero():
    queue = FeatureQueue(8, 4)
    assert queue.pointer.item() == 0
    assert torch.allclose(queue.features.norm(dim=1), torch.ones(8))


def test_queue_is_fifo_and_wraps_around():
    queue = FeatureQueue(5, 3)
    queue.enqueue(_keys(0, 3))  # slots 0..2
    assert queue.pointer.item() == 3
    queue.enqueue(_keys(3, 3))  # slots 3, 4, then wraps to 0
    assert queue.pointer.item() == 1
    assert queue.features[:, 0].tolist() == [5, 1, 2, 3, 4]
    queue.enqueue(_keys(6, 5))  # a full turn: exactly the last 5 keys, pointer unchanged
    assert sorted(queue.features[:, 0].tolist()) == [6, 7, 8, 9, 10]
    assert queue.pointer.item() == 1


def test_queue_rejects_more_keys_than_slots_with_a_fix():
    queue = FeatureQueue(4, 3)
    with pytest.raises(ValueError, match="must not exceed queue_size"):
        queue.enqueue(_keys(0, 5))
    with pytest.raises(ValueError, match=r"keys must be \[N, 3\]"):
        queue.enqueue(torch.zeros(2, 4))


def test_queue_is_in_state_dict_and_restores():
    queue = FeatureQueue(6, 2)
    queue.enqueue(_keys(0, 4, dim=2))
    restored = FeatureQueue(6, 2)
    restored.load_state_dict(queue.state_dict())
    assert torch.equal(restored.features, queue.features)
    assert restored.pointer.item() == 4


def test_nearest_neighbors_uses_cosine_similarity_and_returns_raw_rows():
    bank = torch.tensor([[10.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-5.0, 0.0]])
    queries = torch.tensor([[1.0, 0.1], [0.0, 3.0]])
    neighbors = nearest_neighbors(queries, bank, k=2)
    assert neighbors.shape == (2, 2, 2)
    # query 0 is nearly along x: [10, 0] (raw, not normalised) then [1, 1]
    assert neighbors[0].tolist() == [[10.0, 0.0], [1.0, 1.0]]
    assert neighbors[1].tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_nearest_neighbors_matches_numpy_on_random_data():
    rng = np.random.default_rng(0)
    queries, bank = rng.normal(size=(7, 16)), rng.normal(size=(50, 16))
    got = nearest_neighbors(torch.tensor(queries), torch.tensor(bank), k=4).numpy()
    cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        bank / np.linalg.norm(bank, axis=1, keepdims=True)
    ).T
    expected = bank[np.argsort(-cos, axis=1)[:, :4]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_lookup_sees_the_queue_before_this_steps_enqueue():
    """The MNN model reads its queue during forward and only the loop enqueues afterwards."""
    torch.manual_seed(0)
    model = hf_contrastive.MNNForPreTraining(
        hf_contrastive.MNNConfig(queue_size=64, projection_hidden_size=64, projection_dim=16)
    )
    before = model.queue.features.clone()
    views = [torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)]
    outputs = model(views=views)
    assert torch.equal(model.queue.features, before), "forward must not modify the queue"
    model.enqueue(outputs.queue_keys)
    assert torch.equal(model.queue.features[:8], outputs.queue_keys["queue"])
    assert torch.equal(model.queue.features[8:], before[8:])
    assert model.queue.pointer.item() == 8


def test_ema_update_matches_formula():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = [0.9 * t.detach() + 0.1 * s.detach()
                for t, s in zip(teacher.parameters(), student.parameters(), strict=True)]
    ema_update_(teacher, student, 0.9)
    for got, want in zip(teacher.parameters(), expected, strict=True):
        assert torch.allclose(got, want)


def test_knn_predict_weighted_vote_by_hand():
    # Bank: two class-0 rows close to the query, three class-1 rows further away.
    bank = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.2, 1.0], [0.0, 1.0], [-0.2, 1.0]]), dim=1
    )
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.3]]), dim=1)
    # With k=5 and a low temperature the two similar rows outweigh three dissimilar ones (a plain majority says 1).
    assert knn_predict(query, bank, labels, num_classes=2, k=5, temperature=0.1).item() == 0
    # With a huge temperature every weight is ~1: majority vote.
    assert knn_predict(query, bank, labels, num_classes=2, k=5, temperature=1e6).item() == 1
    # k=1: nearest row only.
    assert knn_predict(query, bank, labels, num_classes=2, k=1).item() == 0


def test_knn_predict_matches_numpy_and_is_chunk_invariant():
    rng = np.random.default_rng(3)
    bank = rng.normal(size=(60, 8))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    queries = rng.normal(size=(9, 8))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=60)
    expected = []
    for q in queries:
        sim = bank @ q
        top = np.argsort(-sim)[:7]
        scores = np.zeros(4)
        for j in top:
            scores[labels[j]] += np.exp(sim[j] / 0.1)
        expected.append(scores.argmax())
    for chunk in (2, 1024):
        got = knn_predict(torch.tensor(queries), torch.tensor(bank), torch.tensor(labels), 4, k=7, chunk_size=chunk)
        assert got.tolist() == expected
