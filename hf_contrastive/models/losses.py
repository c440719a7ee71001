"""Pure loss functions. Tensors go in raw; each function normalises where its method does.

Hub boundary: imports only torch. ``hf_contrastive.losses`` re-exports everything here.
Notation: ``B`` batch, ``D`` feature dim, ``k`` neighbours, ``norm(x)`` L2 normalisation over the last dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised squared distance ``d(a, b) = 2 - 2 <norm(a), norm(b)>`` over the last dim.

    Shapes: ``a`` and ``b`` broadcastable, ``[..., D]``; returns ``[...]``, values in ``[0, 4]``.
    """
    return 2 - 2 * (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)


def mnn_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    neighbors: torch.Tensor,
    lam: float | torch.Tensor,
) -> torch.Tensor:
    r"""One direction of the MNN loss (methods.md section 1; the official code's embedding-space mixing).

    ```
    mixed_ij = norm(lam * n_ij + (1 - lam) * z_i)                  # mix raw vectors, then normalise
    loss     = mean_i [ d(p_i, z_i) + (1/k) * sum_j d(p_i, mixed_ij) ]
    ```
    The true positive has weight 1 and the ``k`` mixed neighbours share weight 1 (1/k each). No temperature.

    Args:
        predictions: ``[B, D]`` student predictor outputs ``p`` (raw).
        targets: ``[B, D]`` teacher projections ``z`` (raw; detached by the caller).
        neighbors: ``[B, k, D]`` raw queue entries nearest to each target.
        lam: mixing coefficient in ``[0, 1]``, a float or 0-d tensor, one value for the whole call.

    Returns:
        0-d tensor, the mean loss over the batch (computed in float32).
    """
    if predictions.dim() != 2 or targets.shape != predictions.shape:
        raise ValueError(f"predictions and targets must both be [B, D]; got {tuple(predictions.shape)} and {tuple(targets.shape)}.")
    if neighbors.dim() != 3 or neighbors.shape[0] != predictions.shape[0] or neighbors.shape[2] != predictions.shape[1]:
        raise ValueError(f"neighbors must be [B, k, D] = [{predictions.shape[0]}, k, {predictions.shape[1]}]; got {tuple(neighbors.shape)}.")
    predictions, targets, neighbors = predictions.float(), targets.float(), neighbors.float()
    lam = torch.as_tensor(lam, dtype=torch.float32, device=predictions.device)
    mixed = lam * neighbors + (1 - lam) * targets.unsqueeze(1)  # [B, k, D]
    positive_term = normalized_distance(predictions, targets)  # [B]
    mixed_term = normalized_distance(predictions.unsqueeze(1), mixed).mean(dim=1)  # [B]
    return (positive_term + mixed_term).mean()
