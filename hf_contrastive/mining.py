"""Mining of semantic neighbours for methods that take mined positives (SPPS).

A frozen encoder embeds every training image with the deterministic eval transform; each image's ``k`` most
similar other images (cosine similarity of pooled features) form its row of the neighbour table ``[N, k]``. The
trainer mines once before training with the encoder named by the config (a folder of ours or a Hub id), and again
every ``mining_every_n_epochs`` epochs with the current student when asked. Tables are cached as safetensors in
``output_dir/mining/`` so a resumed run reuses the very table the interrupted run trained with.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from .evaluation.knn import extract_features


@torch.no_grad()
def nearest_neighbour_table(features: torch.Tensor, k: int, chunk_size: int = 4096) -> torch.Tensor:
    """The ``k`` nearest other rows of every row of ``features``.

    Args:
        features: ``[N, D]`` L2-normalised features (cosine similarity = dot product).
        k: neighbours per row, ``1 <= k < N``.
        chunk_size: rows compared at once (memory ``chunk_size x N``).

    Returns:
        ``[N, k]`` long tensor; row ``i`` lists the indices ``j != i`` by decreasing ``<f_i, f_j>`` (ties: lower index
        first, as ``torch.topk`` on CPU gives them).
    """
    num_rows = features.shape[0]
    if not 1 <= k < num_rows:
        raise ValueError(f"Mining needs 1 <= k < number of images, got k={k} for {num_rows} images.")
    table = torch.empty(num_rows, k, dtype=torch.long)
    features = features.float()
    for start in range(0, num_rows, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, num_rows))
        similarity = features[rows] @ features.T
        similarity[torch.arange(len(rows)), rows.to(similarity.device)] = float("-inf")  # an image is not its own neighbour
        table[rows] = similarity.topk(k, dim=1).indices.cpu()
    return table


def mine_neighbours(
    encoder: nn.Module, dataloader: DataLoader, accelerator: Accelerator, k: int, description: str = "mining"
) -> torch.Tensor:
    """Neighbour table ``[N, k]`` of the images of a prepared, unshuffled eval ``dataloader`` (every process gets
    the same table: the features are gathered in order with ``gather_for_metrics``)."""
    features, _ = extract_features(encoder, dataloader, accelerator, description)
    return nearest_neighbour_table(features, k)


def cache_path(output_dir: str | Path, tag: str) -> Path:
    """Where the table mined at ``tag`` (``initial`` or ``epoch_E``) is cached."""
    return Path(output_dir) / "mining" / f"neighbours_{tag}.safetensors"


def save_neighbour_table(path: Path, table: torch.Tensor, source: str) -> None:
    """Write ``table`` with its source (encoder name or ``student``) in the safetensors metadata, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({"neighbours": table.contiguous()}, str(partial), metadata={"source": json.dumps(source)})
    partial.replace(path)


def load_neighbour_table(path: Path, num_images: int, k: int) -> torch.Tensor | None:
    """The cached table at ``path`` if it exists and fits ``num_images`` x ``k``, else None."""
    if not path.is_file():
        return None
    table = load_file(str(path))["neighbours"]
    return table if tuple(table.shape) == (num_images, k) else None
