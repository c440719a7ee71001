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


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{names} must both be [B, D]; got {tuple(a.shape)} and {tuple(b.shape)}.")


def simclr_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    r"""NT-Xent (SimCLR, arXiv 2002.05709) over the ``2B`` views of the batch.

    With ``z = norm(cat(z1, z2))`` ``[2B, D]`` and ``s_ij = <z_i, z_j> / tau``, the positive of row ``i`` is its other
    view ``pos(i) = i +- B``; every other row except itself is a negative:
    ```
    loss = mean_i [ -s_{i,pos(i)} + log sum_{j != i} exp(s_ij) ]
    ```
    Pass tensors gathered from all processes (with gradients) to use every process's negatives.

    Args:
        z1, z2: ``[B, D]`` raw projections of the two views (row ``i`` of each is the same image).
        tau: temperature.

    Returns:
        0-d tensor (float32), the mean over the ``2B`` rows.
    """
    _check_pair(z1, z2, "z1 and z2")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, D]
    batch = z1.shape[0]
    logits = z @ z.T / tau  # [2B, 2B]
    logits.fill_diagonal_(float("-inf"))  # a row is not its own negative
    positives = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(logits, positives)


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    r"""MoCo InfoNCE (arXiv 1911.05722, v2 2003.04297): the key of the same image against the queue.

    ```
    logits_i = [ <q_i, k_i>, <q_i, Q_1>, ..., <q_i, Q_K> ] / tau     (all normalised)
    loss     = mean_i CE(logits_i, label 0)
    ```

    Args:
        q: ``[B, D]`` raw query projections (student). k: ``[B, D]`` raw key projections (teacher, detached).
        queue: ``[K, D]`` raw negative keys (the queue before this step's enqueue).
        tau: temperature.

    Returns:
        0-d tensor (float32).
    """
    _check_pair(q, k, "q and k")
    if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be [K, {q.shape[1]}], got {tuple(queue.shape)}.")
    q, k, queue = (F.normalize(x.float(), dim=1) for x in (q, k, queue))
    positive = (q * k).sum(dim=1, keepdim=True)  # [B, 1]
    negatives = q @ queue.T  # [B, K]
    logits = torch.cat([positive, negatives], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def byol_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""BYOL (arXiv 2006.07733): ``mean_i d(p_i, z_i) = mean_i (2 - 2 <norm(p_i), norm(z_i)>)``.

    Args:
        predictions: ``[B, D]`` student predictor outputs. targets: ``[B, D]`` teacher projections (detached).

    Returns:
        0-d tensor (float32), in ``[0, 4]``.
    """
    _check_pair(predictions, targets, "predictions and targets")
    return normalized_distance(predictions.float(), targets.float()).mean()


def nnclr_loss(neighbors: torch.Tensor, predictions: torch.Tensor, tau: float) -> torch.Tensor:
    r"""NNCLR (arXiv 2104.14548): the nearest neighbour of sample ``i`` is the positive of prediction ``i``.

    ```
    logits_ij = <norm(n_i), norm(p_j)> / tau                # [B, B]: the other rows are negatives
    loss      = mean_i CE(logits_i, label i)
    ```
    With several neighbours per sample (``neighbors`` ``[B, k, D]``), each rank ``j`` of neighbours is one such
    loss and the result is their mean (the multi-positive variant of the MNN benchmark).
    Pass tensors gathered from all processes (predictions with gradients) to use every process's negatives.

    Args:
        neighbors: ``[B, D]`` or ``[B, k, D]`` raw queue entries nearest to each sample's own projection.
        predictions: ``[B, D]`` raw student predictions of the other view.
        tau: temperature.

    Returns:
        0-d tensor (float32).
    """
    if neighbors.dim() == 2:
        neighbors = neighbors.unsqueeze(1)
    if neighbors.dim() != 3 or neighbors.shape[0] != predictions.shape[0] or neighbors.shape[2] != predictions.shape[1]:
        raise ValueError(
            f"neighbors must be [B, D] or [B, k, D] matching predictions {tuple(predictions.shape)}; "
            f"got {tuple(neighbors.shape)}."
        )
    neighbors = F.normalize(neighbors.float(), dim=2)
    predictions = F.normalize(predictions.float(), dim=1)
    labels = torch.arange(predictions.shape[0], device=predictions.device)
    losses = [F.cross_entropy(neighbors[:, j] @ predictions.T / tau, labels) for j in range(neighbors.shape[1])]
    return torch.stack(losses).mean()


def msf_loss(predictions: torch.Tensor, targets: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    r"""Mean Shift (MSF, arXiv 2105.07269): pull the prediction towards the target and its ``k`` queue neighbours.

    ```
    loss = mean_i (1 / (k + 1)) * [ d(p_i, z_i) + sum_j d(p_i, n_ij) ]
    ```

    Args:
        predictions: ``[B, D]`` student predictor outputs. targets: ``[B, D]`` teacher projections (detached).
        neighbors: ``[B, k, D]`` raw queue entries nearest to each target.

    Returns:
        0-d tensor (float32).
    """
    _check_pair(predictions, targets, "predictions and targets")
    if neighbors.dim() != 3 or neighbors.shape[0] != predictions.shape[0] or neighbors.shape[2] != predictions.shape[1]:
        raise ValueError(f"neighbors must be [B, k, D] matching predictions; got {tuple(neighbors.shape)}.")
    predictions, targets, neighbors = predictions.float(), targets.float(), neighbors.float()
    all_targets = torch.cat([targets.unsqueeze(1), neighbors], dim=1)  # [B, k + 1, D]
    return normalized_distance(predictions.unsqueeze(1), all_targets).mean()


def relational_loss(
    student: torch.Tensor, teacher: torch.Tensor, queue: torch.Tensor, tau_s: float, tau_t: float
) -> torch.Tensor:
    r"""ReSSL / ISD relational loss (arXiv 2107.09282, 2008.13168): match the student's similarity distribution
    over the queue to the (sharper) teacher's.

    ```
    s = norm(student) @ norm(Q).T / tau_s ;  t = norm(teacher) @ norm(Q).T / tau_t      # [B, K]
    loss = mean_i [ - sum_j softmax(t_i)_j * log_softmax(s_i)_j ]
    ```

    Args:
        student: ``[B, D]`` raw student projections. teacher: ``[B, D]`` raw teacher projections (detached).
        queue: ``[K, D]`` raw queue (before this step's enqueue). tau_s, tau_t: temperatures (tau_t < tau_s).

    Returns:
        0-d tensor (float32).
    """
    _check_pair(student, teacher, "student and teacher")
    if queue.dim() != 2 or queue.shape[1] != student.shape[1]:
        raise ValueError(f"queue must be [K, {student.shape[1]}], got {tuple(queue.shape)}.")
    student, teacher, queue = (F.normalize(x.float(), dim=1) for x in (student, teacher, queue))
    target = F.softmax(teacher @ queue.T / tau_t, dim=1)
    log_prediction = F.log_softmax(student @ queue.T / tau_s, dim=1)
    return -(target * log_prediction).sum(dim=1).mean()
