"""Weighted kNN classification on frozen features: the monitor of the MNN/MSVQ protocol (methods.md section 0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm


@torch.no_grad()
def extract_features(
    encoder: nn.Module, dataloader: DataLoader, accelerator: Accelerator, description: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised pooled features ``[N, D]`` and labels ``[N]`` of a whole (prepared) eval dataloader.

    Each process encodes its shard; ``gather_for_metrics`` concatenates them in order and drops the samples that
    were duplicated to even out the last batch, so every process returns the same ``N`` rows.
    """
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    for batch in tqdm(dataloader, desc=description, leave=False, disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            pooled = encoder(batch["pixel_values"]).pooler_output
        pooled, batch_labels = accelerator.gather_for_metrics((F.normalize(pooled.float(), dim=1), batch["labels"]))
        features.append(pooled)
        labels.append(batch_labels)
    encoder.train(was_training)
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def knn_predict(
    features: torch.Tensor,
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    r"""Weighted-vote kNN predictions.

    For each query ``f`` (``[N, D]``, L2-normalised) take the ``k`` bank rows with the highest cosine similarity
    ``s_j``; class ``c`` scores ``sum_j exp(s_j / T) * [label_j == c]``; the prediction is the best-scoring class.

    Args:
        features: ``[N, D]`` normalised query features.
        bank_features: ``[M, D]`` normalised bank features; bank_labels: ``[M]`` integer labels.
        k: neighbours (capped at M); temperature: ``T``; chunk_size: queries per similarity block (bounds memory).

    Returns:
        ``[N]`` predicted labels.
    """
    k = min(k, bank_features.shape[0])
    predictions = []
    for start in range(0, features.shape[0], chunk_size):
        similarity = features[start : start + chunk_size] @ bank_features.T  # [n, M]
        top_similarity, top_index = similarity.topk(k, dim=1)  # [n, k]
        weights = (top_similarity / temperature).exp()
        scores = torch.zeros(similarity.shape[0], num_classes, device=features.device, dtype=weights.dtype)
        scores.scatter_add_(1, bank_labels[top_index], weights)
        predictions.append(scores.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    encoder: nn.Module,
    bank_dataloader: DataLoader,
    test_dataloader: DataLoader,
    accelerator: Accelerator,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy (in [0, 1]) of `knn_predict` on the test set, the bank being the train set's features."""
    bank_features, bank_labels = extract_features(encoder, bank_dataloader, accelerator, "kNN bank")
    test_features, test_labels = extract_features(encoder, test_dataloader, accelerator, "kNN test")
    predictions = knn_predict(test_features, bank_features, bank_labels, num_classes, k, temperature)
    return (predictions == test_labels).float().mean().item()


@torch.no_grad()
def neighbour_label_agreement(
    features: torch.Tensor,
    labels: torch.Tensor,
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    chunk_size: int = 1024,
) -> dict[str, float]:
    r"""How often the nearest bank entries share the query's label: the purity of the neighbours that
    nearest-neighbour methods (MNN, MSF, NNCLR) take as targets from their queue.

    For each query ``i`` (``features`` ``[N, D]``, L2-normalised) let ``j_1 .. j_k`` be the ``k`` bank rows
    (``bank_features`` ``[M, D]``, L2-normalised) of highest cosine similarity. Then

        agreement@k = mean_i (1/k) sum_{r<=k} [bank_labels[j_r] == labels[i]]

    and ``chance = sum_c P_query(c) P_bank(c)``, the agreement of neighbours drawn at random (0.1 on balanced
    CIFAR-10).

    Returns:
        ``{"agreement@k": float for k in ks, "chance": float}``, fractions in [0, 1].
    """
    if not ks or min(ks) < 1 or max(ks) > bank_features.shape[0]:
        raise ValueError(f"every k must be in [1, bank size {bank_features.shape[0]}], got {list(ks)}.")
    largest = max(ks)
    same = []
    for start in range(0, features.shape[0], chunk_size):
        similarity = features[start : start + chunk_size] @ bank_features.T  # [n, M]
        top_index = similarity.topk(largest, dim=1).indices  # [n, largest], most similar first
        same.append(bank_labels[top_index] == labels[start : start + chunk_size, None])
    same = torch.cat(same).float()  # [N, largest]
    result = {f"agreement@{k}": same[:, :k].mean().item() for k in ks}
    classes = int(max(labels.max(), bank_labels.max())) + 1
    query_share = torch.bincount(labels, minlength=classes).float() / labels.numel()
    bank_share = torch.bincount(bank_labels, minlength=classes).float() / bank_labels.numel()
    result["chance"] = (query_share * bank_share).sum().item()
    return result
