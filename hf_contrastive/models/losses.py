"""Pure loss functions. Tensors go in raw; each function normalises where its method does.

Hub boundary: imports only torch. ``hf_contrastive.losses`` re-exports everything here.
Notation: ``B`` batch, ``D`` feature dim, ``k`` neighbours, ``norm(x)`` L2 normalisation over the last dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MNN_MIXINGS = ("mix_then_normalize", "normalize_then_mix")


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (losses are computed in at least float32); float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


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
    mixing: str = "mix_then_normalize",
) -> torch.Tensor:
    r"""One direction of the MNN loss (methods.md section 1; the official code's embedding-space mixing).

    ``mixing="mix_then_normalize"`` (what the official ``main.py`` runs):
    ```
    mixed_ij = norm(lam * n_ij + (1 - lam) * z_i)                  # mix raw vectors, then normalise
    loss     = mean_i [ d(p_i, z_i) + (1/k) * sum_j d(p_i, mixed_ij) ]
    ```
    ``mixing="normalize_then_mix"`` (the official model's ``norm_nn`` branch, which the shipped ``scripts.sh`` asks
    for with ``--norm_nn`` but ``main.py`` never parses): the mixed target is not normalised again, so its term is
    ``2 - 2 <norm(p_i), mixed_ij>`` with
    ```
    mixed_ij = lam * norm(n_ij) + (1 - lam) * norm(z_i)
    ```
    The true positive has weight 1 and the ``k`` mixed neighbours share weight 1 (1/k each). No temperature.

    Args:
        predictions: ``[B, D]`` student predictor outputs ``p`` (raw).
        targets: ``[B, D]`` teacher projections ``z`` (raw; detached by the caller).
        neighbors: ``[B, k, D]`` raw queue entries nearest to each target.
        lam: mixing coefficient in ``[0, 1]``, a float or 0-d tensor, one value for the whole call.
        mixing: ``"mix_then_normalize"`` or ``"normalize_then_mix"`` (`MNN_MIXINGS`), see above.

    Returns:
        0-d tensor, the mean loss over the batch (computed in float32).
    """
    if mixing not in MNN_MIXINGS:
        raise ValueError(f"mixing must be one of {MNN_MIXINGS}, got {mixing!r}.")
    if predictions.dim() != 2 or targets.shape != predictions.shape:
        raise ValueError(f"predictions and targets must both be [B, D]; got {tuple(predictions.shape)} and {tuple(targets.shape)}.")
    if neighbors.dim() != 3 or neighbors.shape[0] != predictions.shape[0] or neighbors.shape[2] != predictions.shape[1]:
        raise ValueError(f"neighbors must be [B, k, D] = [{predictions.shape[0]}, k, {predictions.shape[1]}]; got {tuple(neighbors.shape)}.")
    predictions, targets, neighbors = _upcast(predictions), _upcast(targets), _upcast(neighbors)
    lam = torch.as_tensor(lam, dtype=torch.float32, device=predictions.device)
    positive_term = normalized_distance(predictions, targets)  # [B]
    if mixing == "mix_then_normalize":
        mixed = lam * neighbors + (1 - lam) * targets.unsqueeze(1)  # [B, k, D]
        mixed_term = normalized_distance(predictions.unsqueeze(1), mixed).mean(dim=1)  # [B]
    else:
        mixed = lam * F.normalize(neighbors, dim=2) + (1 - lam) * F.normalize(targets, dim=1).unsqueeze(1)
        mixed_term = (2 - 2 * (F.normalize(predictions, dim=1).unsqueeze(1) * mixed).sum(dim=2)).mean(dim=1)  # [B]
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
    z = F.normalize(_upcast(torch.cat([z1, z2])), dim=1)  # [2B, D]
    batch = z1.shape[0]
    logits = z @ z.T / tau  # [2B, 2B]
    logits.fill_diagonal_(float("-inf"))  # a row is not its own negative
    positives = torch.arange(batch, 3 * batch, device=z.device) % (2 * batch)  # row i's positive: i + B mod 2B
    return F.cross_entropy(logits, positives)


def cross_view_infonce_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Cross-view InfoNCE in both directions: the SimCLR of the MNN benchmark (pc-cp/Benchmark-Methods-For-MNN).

    Each view of image ``i`` is contrasted only with the OTHER view of every image (no same-view negatives). With
    ``s_ij = <norm(z1_i), norm(z2_j)> / tau`` ``[B, B]``:
    ```
    loss = 0.5 * ( mean_i [ -s_ii + log sum_j exp(s_ij) ] + mean_j [ -s_jj + log sum_i exp(s_ij) ] )
    ```
    i.e. the mean of the row-wise and the column-wise cross-entropy of ``s`` with the diagonal as labels: ``B - 1``
    negatives per row, where `simclr_loss` (NT-Xent) has ``2B - 2``.

    Args:
        z1, z2: ``[B, D]`` raw projections of the two views (row ``i`` of each is the same image).
        tau: temperature.

    Returns:
        0-d tensor (float32).
    """
    _check_pair(z1, z2, "z1 and z2")
    z1, z2 = F.normalize(_upcast(z1), dim=1), F.normalize(_upcast(z2), dim=1)
    logits = z1 @ z2.T / tau  # [B, B]
    labels = torch.arange(z1.shape[0], device=z1.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


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
    q, k, queue = (F.normalize(_upcast(x), dim=1) for x in (q, k, queue))
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
    return normalized_distance(_upcast(predictions), _upcast(targets)).mean()


def nnclr_loss(
    neighbors: torch.Tensor, predictions: torch.Tensor, tau: float, prediction_to_neighbors: bool = False
) -> torch.Tensor:
    r"""NNCLR (arXiv 2104.14548): the nearest neighbour of sample ``i`` is the positive of prediction ``i``.

    Neighbours to predictions (the NNCLR paper's loss), for each rank ``j`` of the ``k`` neighbours:
    ```
    logits_ij = <norm(n_i), norm(p_j)> / tau                # [B, B]: the other rows are negatives
    loss_nb   = mean over ranks and i of CE(logits_i, label i)
    ```
    ``prediction_to_neighbors=True`` adds the reverse term of the MNN benchmark's NNCLR: each prediction against all
    ``B k`` neighbours of the batch, its own ``k`` neighbours as positives, their log-probabilities SUMMED:
    ```
    loss_pn = mean_i [ - sum_j log softmax_{(b, l)}( <norm(p_i), norm(n_bl)> / tau )[(i, j)] ]
    loss    = 0.5 * (loss_nb + loss_pn)
    ```
    Pass tensors gathered from all processes (predictions with gradients) to use every process's negatives.

    Args:
        neighbors: ``[B, D]`` or ``[B, k, D]`` raw queue entries nearest to each sample's own projection.
        predictions: ``[B, D]`` raw student predictions of the other view.
        tau: temperature.
        prediction_to_neighbors: add the reverse term (see above).

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
    neighbors = F.normalize(_upcast(neighbors), dim=2)
    predictions = F.normalize(_upcast(predictions), dim=1)
    batch, k = neighbors.shape[:2]
    labels = torch.arange(batch, device=predictions.device)
    loss = torch.stack([F.cross_entropy(neighbors[:, j] @ predictions.T / tau, labels) for j in range(k)]).mean()
    if not prediction_to_neighbors:
        return loss
    log_probs = F.log_softmax(predictions @ neighbors.reshape(batch * k, -1).T / tau, dim=1)  # [B, B k], (b, l) order
    own = log_probs.reshape(batch, batch, k)[labels, labels]  # [B, k]: log-prob of each of row i's own neighbours
    return 0.5 * (loss - own.sum(dim=1).mean())


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
    predictions, targets, neighbors = _upcast(predictions), _upcast(targets), _upcast(neighbors)
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
    student, teacher, queue = (F.normalize(_upcast(x), dim=1) for x in (student, teacher, queue))
    target = F.softmax(teacher @ queue.T / tau_t, dim=1)
    log_prediction = F.log_softmax(student @ queue.T / tau_s, dim=1)
    return -(target * log_prediction).sum(dim=1).mean()


def cacr_loss(
    views: torch.Tensor,
    tau_pos: float,
    tau_neg: float,
    alpha: float = 1.0,
    beta: float = 1.0,
    detach_weights: bool = False,
) -> torch.Tensor:
    r"""CACR, contrastive attraction and contrastive repulsion (arXiv 2105.03746), as the official small-scale code
    (JegZheng/CACR-SSL, ``small_scale_experiments/losses``).

    With ``z = norm(views)`` ``[V, B, D]`` (``V`` views of ``B`` images) and ``d(a, b) = ||a - b||^2`` (in ``[0, 4]``):
    ```
    attraction = mean_{v, i} sum_{u != v} softmax_u( tau_pos * d(z_vi, z_ui)) * d(z_vi, z_ui)
    repulsion  = mean_{v < u} mean_i sum_{j != i} softmax_j(-tau_neg * d(z_vi, z_uj)) * d(z_vi, z_uj)
    loss       = alpha * attraction - beta * repulsion
    ```
    Attraction: every view of image ``i`` is an anchor whose ``V - 1`` positives are the other views of ``i``; the
    farther a positive, the larger its weight. Repulsion: for every unordered pair of views ``(v, u)``, ``v < u``,
    the anchor is view ``v`` of image ``i`` and its ``B - 1`` negatives are view ``u`` of the other images; the
    closer a negative, the larger its weight. As the official code, only the lower-indexed view of a pair is the
    anchor (the last view is never a repulsion anchor), the softmax weights are not detached (gradients flow
    through them; ``detach_weights=True`` stops them, as the official ImageNet variant does) and a temperature of
    0 gives uniform weights (the paper's ablation without conditional weights).
    Pass views gathered from all processes (with gradients) to use every process's negatives.

    Args:
        views: ``[V, B, D]`` raw projections (or a sequence of ``V`` tensors ``[B, D]``); row ``i`` of every view
            is the same image. ``V >= 2``, ``B >= 2``.
        tau_pos: ``t+ >= 0``, sharpness of the positive weights (paper: 1.0).
        tau_neg: ``t- >= 0``, sharpness of the negative weights (paper: 0.9 CIFAR-10, 2.0 CIFAR-100 / STL-10).
        alpha: weight of the attraction term. beta: weight of the repulsion term (official code: 1.0 each).
        detach_weights: compute the softmax weights without gradient.

    Returns:
        0-d tensor, computed in float32 (float64 inputs stay float64).
    """
    if not isinstance(views, torch.Tensor):
        views = torch.stack(list(views))
    if views.dim() != 3 or views.shape[0] < 2 or views.shape[1] < 2:
        raise ValueError(f"views must be [V, B, D] with V >= 2 views and B >= 2 images; got {tuple(views.shape)}.")
    z = F.normalize(views.to(torch.promote_types(views.dtype, torch.float32)), dim=-1)
    num_views, batch = z.shape[0], z.shape[1]

    # Attraction: [B, V, V] distances between the views of each image; the anchor itself is masked out.
    same_view = torch.eye(num_views, dtype=torch.bool, device=z.device)
    positive_dist = 2 - 2 * torch.einsum("vbd,ubd->bvu", z, z)  # ||a - b||^2 of unit vectors
    positive_weights = torch.softmax((tau_pos * positive_dist).masked_fill(same_view, float("-inf")), dim=-1)
    if detach_weights:
        positive_weights = positive_weights.detach()
    attraction = (positive_weights * positive_dist.masked_fill(same_view, 0.0)).sum(dim=-1).mean()

    # Repulsion: [P, B, B] distances for the P = V(V-1)/2 view pairs (anchor view first); same image masked out.
    anchor_view, other_view = torch.triu_indices(num_views, num_views, offset=1, device=z.device)
    same_image = torch.eye(batch, dtype=torch.bool, device=z.device)
    negative_dist = 2 - 2 * torch.einsum("pid,pjd->pij", z[anchor_view], z[other_view])
    negative_weights = torch.softmax((-tau_neg * negative_dist).masked_fill(same_image, float("-inf")), dim=-1)
    if detach_weights:
        negative_weights = negative_weights.detach()
    repulsion = (negative_weights * negative_dist.masked_fill(same_image, 0.0)).sum(dim=-1).mean()

    return alpha * attraction - beta * repulsion


def multinet_gl_loss(
    queries: list[torch.Tensor],
    keys: list[list[torch.Tensor]],
    queues: list[torch.Tensor] | None,
    tau: float,
    batch_negatives: bool = True,
) -> torch.Tensor:
    r"""Multi-network global/local InfoNCE (reconstruction of arXiv 2306.15930; methods.md section 4).

    ``V`` online views (the first ``G`` global, the rest local), ``N`` momentum networks that embedded the ``G``
    global views. Every online query is contrasted with every network's key of every *other* global view:
    ```
    pairs  P = {(v, n, g) : 0 <= v < V, 0 <= n < N, 0 <= g < G, g != v}      # |P| = N (G (G - 1) + (V - G) G)
    q = norm(queries[v]), k = norm(keys[n][g]), Q = norm(queues[n])
    logits_i = [ <q_i, k_i>,                                   # positive: the same image
                 <q_i, k_j> for j != i   (if batch_negatives), # the other images' keys, same network and view
                 <q_i, Q_m> for m < K_n  (if queues) ] / tau   # the network's queue
    L(v, n, g) = mean_i CE(logits_i, positive)
    loss       = mean over P of L(v, n, g)
    ```
    A global query is never paired with its own view (same crop); local queries are paired with every global view.
    Pass tensors gathered from all processes (queries with gradients) to use every process's in-batch negatives.

    Args:
        queries: ``V`` tensors ``[B, D]``, raw online outputs; ``queries[:G]`` are the global views in the order of
            ``keys[n]``.
        keys: ``N`` lists of ``G`` tensors ``[B, D]``, raw momentum-network projections (detached).
        queues: ``None`` (no queue), or ``N`` tensors ``[K_n, D]``, raw queue of each network (before this step's
            enqueue).
        tau: temperature.
        batch_negatives: use the other rows of ``keys[n][g]`` as negatives.

    Returns:
        0-d tensor (float32), the mean over pairs of the mean over the batch.
    """
    if not keys or not all(len(network_keys) == len(keys[0]) for network_keys in keys):
        raise ValueError("keys must be N >= 1 lists of the same G global-view tensors [B, D].")
    num_global = len(keys[0])
    if num_global < 1 or len(queries) < num_global:
        raise ValueError(f"need G >= 1 global keys and at least G queries, got G={num_global}, V={len(queries)}.")
    for tensor in list(queries) + [k for network_keys in keys for k in network_keys]:
        _check_pair(queries[0], tensor, "queries and keys")
    if queues is not None:
        if len(queues) != len(keys):
            raise ValueError(f"queues must hold one queue per network ({len(keys)}), got {len(queues)}.")
        for queue in queues:
            if queue.dim() != 2 or queue.shape[1] != queries[0].shape[1]:
                raise ValueError(f"each queue must be [K, {queries[0].shape[1]}], got {tuple(queue.shape)}.")
    if not batch_negatives and queues is None:
        raise ValueError("InfoNCE needs negatives: batch_negatives=True or queues.")
    if batch_negatives and queries[0].shape[0] < 2 and queues is None:
        raise ValueError("in-batch negatives need a batch of at least 2 rows.")

    normalized_queries = [F.normalize(_upcast(q), dim=1) for q in queries]
    batch = queries[0].shape[0]
    device = queries[0].device
    losses = []
    for n, network_keys in enumerate(keys):
        queue = F.normalize(_upcast(queues[n]), dim=1) if queues is not None else None
        for g, key in enumerate(network_keys):
            key = F.normalize(_upcast(key), dim=1)
            for v, q in enumerate(normalized_queries):
                if v == g:  # a global view is not paired with its own crop
                    continue
                if batch_negatives:
                    logits = q @ key.T  # [B, B]: diagonal = positives, off-diagonal = other images
                    labels = torch.arange(batch, device=device)
                else:
                    logits = (q * key).sum(dim=1, keepdim=True)  # [B, 1]: positives only
                    labels = torch.zeros(batch, dtype=torch.long, device=device)
                if queue is not None:
                    logits = torch.cat([logits, q @ queue.T], dim=1)  # + [B, K]
                losses.append(F.cross_entropy(logits / tau, labels))
    return torch.stack(losses).mean()


def potential_samples_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    nn_topk: int,
    negative_band: tuple[int, int] | None,
    mined_weight: float = 1.0,
    soft_weight: float = 0.5,
    soft_tau: float = 0.1,
    soft_support: str = "topk",
) -> torch.Tensor:
    r"""Mining of potential samples (arXiv 2311.00358), a RECONSTRUCTION from the abstract: a multi-positive
    InfoNCE whose positives are the key plus mined queue entries and whose negatives are a band of similarity ranks.

    With ``q = norm(queries)``, ``k = norm(keys)``, ``Q = norm(queue)`` and, per query ``i``, the teacher similarity
    ``c_ij = <k_i, Q_j>`` and its rank ``r_ij`` (0 = most similar; no gradient flows through the mining):
    ```
    H_i   = {j : r_ij < nn_topk}                                    # hard-mined positives (0/1 weights)
    S_ij  = softmax_j(c_ij / soft_tau) over H_i ("topk") or over the whole queue ("queue")
    w_ij  = mined_weight * ((1 - soft_weight) * [j in H_i] + soft_weight * nn_topk * S_ij)
    P_i   = H_i, or every entry for "queue" with soft_weight > 0; empty if mined_weight == 0
    N_i   = {j not in P_i : low <= r_ij < high}  (negative_band = (low, high)), or all j not in P_i (None)
    l_ij  = <q_i, Q_j> / tau ;  l_i0 = <q_i, k_i> / tau             # the key (weight 1) is candidate 0
    Z_i   = exp(l_i0) + sum_{j in P_i} exp(l_ij) + sum_{j in N_i} exp(l_ij)
    loss  = mean_i  -( log(exp(l_i0) / Z_i) + sum_{j in P_i} w_ij log(exp(l_ij) / Z_i) ) / (1 + sum_{j in P_i} w_ij)
    ```
    Hard and soft weights both give the mined views a total weight ``mined_weight * nn_topk``, so ``soft_weight``
    changes only how it is shared. Negatives are ranked by similarity to the key (the positive), so the band holds
    the negatives "close to the positives" that the abstract keeps: the InfoNCE gradient on a negative is
    ``softmax(l_i)_j / tau``, largest for the hardest (often false) negatives and vanishing for the easy ones.
    Dividing by the total positive weight makes ``mined_weight=0, negative_band=None`` exactly MoCo's InfoNCE.

    Args:
        queries: ``[B, D]`` raw student projections (with grad).
        keys: ``[B, D]`` raw teacher projections of the other view (detached).
        queue: ``[K, D]`` raw queue (the snapshot before this step's enqueue).
        tau: InfoNCE temperature. nn_topk: number ``k`` of mined positives (1 <= k < K).
        negative_band: ``(low, high)`` rank band of the negatives (``high`` is clipped to ``K``), or ``None`` for
            every non-positive queue entry.
        mined_weight: weight of each hard-mined positive relative to the key (>= 0).
        soft_weight: mix in ``[0, 1]`` of soft vs hard weights. soft_tau: temperature of the soft weights.
        soft_support: ``"topk"`` or ``"queue"``: where the soft weights live (see above).

    Returns:
        0-d tensor (float32), the mean over the ``B`` queries. Ties in similarity are ranked by queue index.
    """
    _check_pair(queries, keys, "queries and keys")
    if queue.dim() != 2 or queue.shape[1] != queries.shape[1]:
        raise ValueError(f"queue must be [K, {queries.shape[1]}], got {tuple(queue.shape)}.")
    size = queue.shape[0]
    if not 1 <= nn_topk < size:
        raise ValueError(f"nn_topk must be between 1 and K - 1 = {size - 1}, got {nn_topk}.")
    if soft_support not in ("topk", "queue"):
        raise ValueError(f"soft_support must be 'topk' or 'queue', got {soft_support!r}.")
    q, k, queue = (F.normalize(_upcast(x), dim=1) for x in (queries, keys, queue))
    with torch.no_grad():
        similarity = k @ queue.T  # [B, K], teacher-side: the mining carries no gradient
        order = similarity.argsort(dim=1, descending=True, stable=True)
        positions = torch.arange(size, device=q.device).expand_as(order)
        ranks = torch.empty_like(order).scatter_(1, order, positions)  # ranks[i, order[i, r]] = r
        hard = ranks < nn_topk  # [B, K]
        soft_logits = similarity / soft_tau
        if soft_support == "topk":
            soft_logits = soft_logits.masked_fill(~hard, float("-inf"))
        soft = soft_logits.softmax(dim=1)  # [B, K], rows sum to 1
        weights = mined_weight * ((1 - soft_weight) * _upcast(hard) + soft_weight * nn_topk * soft)
        if mined_weight == 0:
            positive = torch.zeros_like(hard)
        elif soft_support == "queue" and soft_weight > 0:
            positive = torch.ones_like(hard)
        else:
            positive = hard
        weights = weights * positive
        if negative_band is None:
            negative = ~positive
        else:
            low, high = negative_band
            negative = (ranks >= low) & (ranks < high) & ~positive
        candidate = positive | negative
        targets = torch.cat([torch.ones_like(weights[:, :1]), weights], dim=1)  # [B, 1 + K]
        targets = targets / targets.sum(dim=1, keepdim=True)
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / tau  # [B, 1 + K]
    keep = torch.cat([torch.ones_like(candidate[:, :1]), candidate], dim=1)
    log_probabilities = logits.masked_fill(~keep, float("-inf")).log_softmax(dim=1)
    # Masked-out candidates have log-probability -inf and weight 0: exclude them rather than form 0 * -inf.
    per_candidate = torch.where(targets > 0, targets * log_probabilities, torch.zeros_like(log_probabilities))
    return -per_candidate.sum(dim=1).mean()


def _mochi_hardest_negatives(q: torch.Tensor, queue: torch.Tensor, num_hard: int) -> torch.Tensor:
    """Rows of ``queue`` ``[K, D]`` with the ``num_hard`` highest ``<q_i, n>``, hardest first: ``[B, N]`` long.

    ``q`` and ``queue`` are already normalised; no gradient (only the ranking is used)."""
    with torch.no_grad():
        return (q @ queue.T).topk(num_hard, dim=1).indices


def _mochi_mixed_negatives(
    queue: torch.Tensor, hardest: torch.Tensor, mix_indices: torch.Tensor, mix_alpha: torch.Tensor
) -> torch.Tensor:
    """MoCHi's synthetic negatives ``norm(a * n_i + (1 - a) * n_j)``, detached: ``[B, s, D]`` unit vectors.

    ``queue`` ``[K, D]`` normalised; ``hardest`` ``[B, N]`` from `_mochi_hardest_negatives`; ``mix_indices``
    ``[B, s, 2]`` are ranks in it (0 = hardest); ``mix_alpha`` ``[B, s]`` the weight of the first negative.
    """
    with torch.no_grad():
        first = queue[hardest.gather(1, mix_indices[..., 0])]  # [B, s, D]
        second = queue[hardest.gather(1, mix_indices[..., 1])]
        alpha = mix_alpha.to(queue.dtype).unsqueeze(-1)
        return F.normalize(alpha * first + (1 - alpha) * second, dim=-1)


def _check_mochi_inputs(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, num_hard: int, mix_indices: torch.Tensor,
    mix_alpha: torch.Tensor, check_ranks: bool = True,
) -> None:
    # Out-of-range ranks would otherwise surface as an opaque device-side assert in gather on GPUs.
    _check_pair(q, k, "q and k")
    if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be [K, {q.shape[1]}], got {tuple(queue.shape)}.")
    if not 1 <= num_hard <= queue.shape[0]:
        raise ValueError(f"num_hard must be in [1, K={queue.shape[0]}], got {num_hard}.")
    batch = q.shape[0]
    if mix_indices.dim() != 3 or mix_indices.shape[0] != batch or mix_indices.shape[2] != 2:
        raise ValueError(f"mix_indices must be [B={batch}, s, 2], got {tuple(mix_indices.shape)}.")
    if mix_alpha.shape != mix_indices.shape[:2]:
        raise ValueError(f"mix_alpha must be [B, s] = {tuple(mix_indices.shape[:2])}, got {tuple(mix_alpha.shape)}.")
    if check_ranks and mix_indices.numel() and not 0 <= int(mix_indices.min()) <= int(mix_indices.max()) < num_hard:
        raise ValueError(
            f"mix_indices are ranks among the {num_hard} hardest negatives and must be in [0, {num_hard})."
        )


def mochi_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    num_hard: int,
    mix_indices: torch.Tensor,
    mix_alpha: torch.Tensor,
    query_mix_indices: torch.Tensor,
    query_mix_beta: torch.Tensor,
    check_ranks: bool = True,
) -> torch.Tensor:
    r"""MoCHi: MoCo InfoNCE with synthetic hard negatives appended to the logits (Kalantidis et al., arXiv 2010.01028;
    methods.md section 5).

    All vectors normalised. For query ``i``, ``H_i = (n_1, ..., n_N)`` are the ``N = num_hard`` queue entries with the
    highest ``<q_i, n>``, hardest first (ranks index into it):
    ```
    h_ic  = norm(a_ic * H_i[r_ic1] + (1 - a_ic) * H_i[r_ic2])     c = 1..s,   a   = mix_alpha[i, c]
    h'_ic = norm(b_ic * q_i       + (1 - b_ic) * H_i[u_ic])       c = 1..s',  b   = query_mix_beta[i, c]
    logits_i = [ <q_i, k_i>, <q_i, Q_1..Q_K>, <q_i, h_i1..h_is>, <q_i, h'_i1..h'_is'> ] / tau
    loss     = mean_i CE(logits_i, label 0)
    ```
    ``h`` and ``h'`` are detached (the query inside ``h'`` too), so gradients reach ``q`` only through its dot
    products, as in the paper. The random draws are arguments, so the function is deterministic: the paper's
    ``a ~ U(0, 1)``, ``b ~ U(0, 0.5)`` and uniform ranks are drawn by the caller. With ``s = s' = 0`` it is `moco_loss`.

    Args:
        q: ``[B, D]`` raw queries (student). k: ``[B, D]`` raw keys (teacher, detached).
        queue: ``[K, D]`` raw negatives (the queue before this step's enqueue).
        tau: temperature.
        num_hard: ``N`` in ``[1, K]``, the size of each query's hardest-negative list.
        mix_indices: ``[B, s, 2]`` long, ranks ``(r_ic1, r_ic2)`` in ``[0, N)`` of the two mixed negatives.
        mix_alpha: ``[B, s]`` mixing coefficients ``a`` of the first negative.
        query_mix_indices: ``[B, s']`` long, rank ``u_ic`` in ``[0, N)`` of the negative mixed with the query.
        query_mix_beta: ``[B, s']`` query weights ``b``.
        check_ranks: check that the ranks are in ``[0, N)``: reads them, which on an accelerator makes the host wait
            for the device; callers that draw them in range (the models) pass False.

    Returns:
        0-d tensor (float32).
    """
    _check_mochi_inputs(q, k, queue, num_hard, mix_indices, mix_alpha, check_ranks)
    batch, shape = q.shape[0], query_mix_indices.shape
    if query_mix_indices.dim() != 2 or shape[0] != batch or query_mix_beta.shape != shape:
        raise ValueError(
            f"query_mix_indices and query_mix_beta must both be [B={batch}, s']; got "
            f"{tuple(query_mix_indices.shape)} and {tuple(query_mix_beta.shape)}."
        )
    if (check_ranks and query_mix_indices.numel()
            and not 0 <= int(query_mix_indices.min()) <= int(query_mix_indices.max()) < num_hard):
        raise ValueError(f"query_mix_indices must be in [0, {num_hard}).")
    q, k, queue = (F.normalize(_upcast(x), dim=1) for x in (q, k, queue))
    hardest = _mochi_hardest_negatives(q, queue, num_hard)  # [B, N]
    mixed = _mochi_mixed_negatives(queue, hardest, mix_indices, mix_alpha)  # [B, s, D]
    with torch.no_grad():
        partner = queue[hardest.gather(1, query_mix_indices)]  # [B, s', D]
        beta = _upcast(query_mix_beta).unsqueeze(-1)
        query_mixed = F.normalize(beta * q.detach().unsqueeze(1) + (1 - beta) * partner, dim=-1)  # [B, s', D]
    positive = (q * k).sum(dim=1, keepdim=True)  # [B, 1]
    logits = torch.cat(
        [positive, q @ queue.T, torch.einsum("bd,bsd->bs", q, mixed), torch.einsum("bd,bsd->bs", q, query_mixed)], dim=1
    ) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def sscl_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    num_hard: int,
    mix_indices: torch.Tensor,
    mix_alpha: torch.Tensor,
    beta: float,
    tau_plus: float,
    detach_weights: bool = False,
    check_ranks: bool = True,
) -> torch.Tensor:
    r"""SSCL reconstruction (Dong, Long, Li, Chen, arXiv 2304.02971; methods.md section 4): MoCo InfoNCE over the
    queue plus MoCHi-style synthetic hard negatives, with hardness-aware reweighting of the negatives (Robinson et
    al., arXiv 2010.04592) and the debiased denominator (Chuang et al., arXiv 2007.00224).

    All vectors normalised. For query ``i`` the negatives are the ``K`` queue entries and its ``s`` synthetic ones
    ``h_ic = norm(a_ic * H_i[r_ic1] + (1 - a_ic) * H_i[r_ic2])`` (detached; ``H_i`` and the ranks as in
    `mochi_loss`), ``M = K + s`` in all:
    ```
    pos_i  = exp(<q_i, k_i> / tau)
    w_ij   = exp(beta * <q_i, n_j>) / sum_j' exp(beta * <q_i, n_j'>)              j = 1..M
    Ng_i   = max( (sum_j w_ij exp(<q_i, n_j> / tau) - tau_plus * pos_i) / (1 - tau_plus),  exp(-1 / tau) )
    loss   = mean_i -log( pos_i / (pos_i + M * Ng_i) )
    ```
    ``beta = 0`` gives uniform weights; ``tau_plus = 0`` turns the debiasing off (the floor is then never active);
    with both and ``s = 0`` this is `moco_loss`. The weights carry gradients unless ``detach_weights`` (HCL's code
    lets them; note that HCL's code writes ``exp(beta_code * <q, n> / t)``, i.e. ``beta = beta_code / t`` here).
    Computed in float32 with every exponent shifted by the row maximum (the loss does not depend on the shift), so
    small temperatures cannot overflow.

    Args:
        q: ``[B, D]`` raw queries (student). k: ``[B, D]`` raw keys (teacher, detached).
        queue: ``[K, D]`` raw negatives (the queue before this step's enqueue).
        tau: temperature. num_hard: ``N`` in ``[1, K]``, size of each query's hardest-negative list.
        mix_indices: ``[B, s, 2]`` long ranks in ``[0, N)``; mix_alpha: ``[B, s]`` coefficients (``s`` may be 0).
        beta: hardness concentration (>= 0). tau_plus: class prior of false negatives, in ``[0, 1)``.
        detach_weights: stop gradients through the weights ``w``.
        check_ranks: check that ``mix_indices`` are in ``[0, N)`` (a host-device sync on an accelerator; the model,
            which draws them in range, passes False).

    Returns:
        0-d tensor (float32).
    """
    terms = _sscl_terms(q, k, queue, tau, num_hard, mix_indices, mix_alpha, beta, tau_plus, detach_weights,
                        check_ranks)
    count = terms["count"]
    return (terms["shift"] + torch.log(terms["positive"] + count * terms["negative_term"])
            - terms["positive_logit"]).mean()


def sscl_floor_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    num_hard: int,
    mix_indices: torch.Tensor,
    mix_alpha: torch.Tensor,
    beta: float,
    tau_plus: float,
) -> torch.Tensor:
    r"""Which queries of `sscl_loss` have their debiased term ``Ng_i`` at its floor ``exp(-1 / tau)``.

    There ``Ng_i`` is a constant, so the query's loss sends no gradient to any negative (queue or synthetic): it only
    pulls ``q_i`` towards its key. A row is at the floor when
    ``sum_j w_ij exp(<q_i, n_j> / tau) - tau_plus * exp(<q_i, k_i> / tau) <= (1 - tau_plus) * exp(-1 / tau)``;
    with ``tau_plus = 0`` no row is (unless every negative is at cosine -1). Same arguments as `sscl_loss`
    (without ``detach_weights``, which changes no value).

    Returns:
        ``[B]`` bool tensor.
    """
    with torch.no_grad():
        terms = _sscl_terms(q, k, queue, tau, num_hard, mix_indices, mix_alpha, beta, tau_plus, True)
        return terms["negative_term"] <= terms["floor"]


def _sscl_terms(q, k, queue, tau, num_hard, mix_indices, mix_alpha, beta, tau_plus, detach_weights,
                check_ranks: bool = True) -> dict:
    """The pieces of `sscl_loss`, each exponential shifted by the row's ``shift`` ``[B]``: ``positive`` ``[B]``,
    ``negative_term`` (``Ng``, floor applied) ``[B]``, ``floor`` ``[B]``, ``positive_logit`` ``[B]``, ``count`` ``M``."""
    _check_mochi_inputs(q, k, queue, num_hard, mix_indices, mix_alpha, check_ranks)
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}.")
    q, k, queue = (F.normalize(_upcast(x), dim=1) for x in (q, k, queue))
    hardest = _mochi_hardest_negatives(q, queue, num_hard)  # [B, N]
    mixed = _mochi_mixed_negatives(queue, hardest, mix_indices, mix_alpha)  # [B, s, D]
    similarities = torch.cat([q @ queue.T, torch.einsum("bd,bsd->bs", q, mixed)], dim=1)  # [B, M]
    positive_logit = (q * k).sum(dim=1) / tau  # [B]
    negative_logits = similarities / tau
    shift = torch.maximum(positive_logit, negative_logits.max(dim=1).values).detach()  # [B]
    positive = torch.exp(positive_logit - shift)
    weights = F.softmax(beta * similarities, dim=1)
    if detach_weights:
        weights = weights.detach()
    weighted_mean = (weights * torch.exp(negative_logits - shift.unsqueeze(1))).sum(dim=1)
    floor = torch.exp(-1.0 / tau - shift)
    negative_term = torch.maximum((weighted_mean - tau_plus * positive) / (1 - tau_plus), floor)
    return {"positive": positive, "negative_term": negative_term, "floor": floor, "positive_logit": positive_logit,
            "shift": shift, "count": similarities.shape[1]}


def patchmix_loss(
    query: torch.Tensor,
    key: torch.Tensor,
    mixed_query: torch.Tensor,
    source_key: torch.Tensor,
    mixed_key: torch.Tensor,
    query_shares: torch.Tensor,
    key_shares: torch.Tensor,
    tau: float = 0.2,
    mixed_to_original_weight: float = 0.5,
    mixed_to_mixed_weight: float = 0.5,
) -> torch.Tensor:
    r"""PatchMix (arXiv 2306.12243; official code visresearch/patchmix): soft-target InfoNCE on original and
    patch-mixed images against in-batch keys.

    With ``ce(a, b, T) = mean_i sum_j -T_ij * log softmax_j(<norm(a_i), norm(b_j)> / tau)`` (timm's
    SoftTargetCrossEntropy on cosine logits), ``P = query_shares`` and ``R = key_shares``:
    ```
    loss = ce(query, key, I)                                          # original -> original (positive: row i)
         + mixed_to_original_weight * ce(mixed_query, source_key, P)  # mixed -> the originals it is made of
         + mixed_to_mixed_weight * ce(mixed_query, mixed_key, P @ R.T)  # mixed -> mixed, by shared content
    ```
    ``P_ij`` is the share of the patches of mixed query image ``i`` taken from original image ``j``;
    ``(P @ R.T)_ik = sum_j P_ij R_kj`` is the chance that a random patch of mixed query ``i`` and one of mixed key
    ``k`` come from the same original image. Its rows sum to 1 when every original image is spread over the mixed
    key images with total share 1, as the PatchMix mixing does. With ``m`` images mixed in equal shares (mixed image
    ``i`` = images ``i..i+m-1``) it is the official mixed->mixed target ``(m - |k - i|) / m^2`` for ``|k - i| < m``
    (``m = 2``: 1/4, 1/2, 1/4). Keys are constants (detached), as the official EMA keys. There is no ``2 * tau``
    factor (unlike MoCo v3). Pass tensors gathered from all processes (queries with gradients) and the
    block-diagonal global share matrices to use every process's keys.

    Args:
        query: ``[N, D]`` student outputs (predictor) of the original images of one view.
        key: ``[N, D]`` teacher outputs (projector) of the original images of the other view; row ``i`` is the
            positive of ``query`` row ``i``.
        mixed_query: ``[N, D]`` student outputs of the mixed images made from the view of ``key``.
        source_key: ``[N, D]`` teacher outputs of the original images of the view of ``query``: the targets of
            ``mixed_query`` (the other view than the one it was mixed from).
        mixed_key: ``[N, D]`` teacher outputs of the mixed images made from the view of ``query``.
        query_shares: ``[N, N]`` row ``i``: shares of the original images in mixed query image ``i`` (sums to 1).
        key_shares: ``[N, N]`` row ``k``: shares of the original images in mixed key image ``k`` (sums to 1).
        tau: temperature, > 0.
        mixed_to_original_weight, mixed_to_mixed_weight: weights of the two mixed terms (official: 1/2 each).

    Returns:
        0-d tensor (float32).
    """
    rows = query.shape[0]
    for name, tensor in (("key", key), ("mixed_query", mixed_query), ("source_key", source_key),
                         ("mixed_key", mixed_key)):
        if tensor.shape != query.shape:
            raise ValueError(f"{name} must have the shape of query {tuple(query.shape)}, got {tuple(tensor.shape)}.")
    for name, tensor in (("query_shares", query_shares), ("key_shares", key_shares)):
        if tensor.shape != (rows, rows):
            raise ValueError(f"{name} must be [{rows}, {rows}], got {tuple(tensor.shape)}.")

    def soft_cross_entropy(a: torch.Tensor, b: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(_upcast(a), dim=1) @ F.normalize(_upcast(b.detach()), dim=1).T / tau  # [N, N]
        return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()

    query_shares, key_shares = _upcast(query_shares.detach()), _upcast(key_shares.detach())
    identity = torch.eye(rows, device=query.device)
    original = soft_cross_entropy(query, key, identity)
    mixed_to_original = soft_cross_entropy(mixed_query, source_key, query_shares)
    mixed_to_mixed = soft_cross_entropy(mixed_query, mixed_key, query_shares @ key_shares.T)
    return original + mixed_to_original_weight * mixed_to_original + mixed_to_mixed_weight * mixed_to_mixed


def spps_loss(
    queries: torch.Tensor | list[torch.Tensor],
    neighbours: torch.Tensor | list[torch.Tensor],
    tau: float,
    semantic_positive_weight: float = 1.0,
    neighbours_as_negatives: bool = True,
    keys: torch.Tensor | list[torch.Tensor] | None = None,
    queue: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""SPPS (arXiv 2306.16122), a RECONSTRUCTION from the abstract: the views of mined semantic neighbours are extra
    positives in a multi-positive (SupCon-style, weighted) InfoNCE on a SimCLR or MoCo v2 frame.

    ``V`` views of ``B`` images (anchors ``q_vb = norm(queries[v][b])``), ``M`` neighbour views
    (``n_mb = norm(neighbours[m][b])``: a view of a mined neighbour of image ``b``), ``w = semantic_positive_weight``.
    Two frames:

    * SimCLR (``keys`` and ``queue`` None): the key rows are the anchors themselves, ``k_ub = q_ub``; there is no queue.
    * MoCo v2 (``keys`` ``[V, B, D]`` teacher projections and ``queue`` ``[K, D]`` given): ``k_ub = norm(keys[u][b])``,
      ``Q_j = norm(queue[j])``.

    For the anchor ``a = (v, b)``, with ``s(x) = <q_vb, x> / tau``:
    ```
    positives P_a : k_ub for u != v (weight 1),  n_mb for every m (weight w)
    candidates C_a: P_a
                    + SimCLR: every k_uj, (u, j) != (v, b)   (the other images' views; never the anchor itself)
                    + MoCo:   every Q_j                      (the queue; the other images' keys are not candidates)
                    + n_mj for j != b                        (only if neighbours_as_negatives)
    L_a   = -( sum_{p in P_a} w_p * log( exp(s(p)) / sum_{c in C_a} exp(s(c)) ) ) / sum_{p in P_a} w_p
    loss  = mean over the V * B anchors of L_a
    ```
    With ``M = 0`` and ``V = 2`` this is NT-Xent (``simclr_loss``) in the SimCLR frame and the symmetric MoCo loss
    ``(moco_loss(q_1, k_2, Q) + moco_loss(q_2, k_1, Q)) / 2`` in the MoCo frame. ``w = 0`` leaves the own neighbour
    in the denominator only (a hard negative). The neighbour rows are never anchors.
    In the SimCLR frame pass tensors gathered from all processes (with gradients) to use every process's negatives.

    Args:
        queries: ``[V, B, D]`` (or ``V`` tensors ``[B, D]``), raw projections of the ``V >= 2`` views; row ``b`` of
            every view is the same image.
        neighbours: ``[M, B, D]`` (or ``M >= 0`` tensors ``[B, D]``), raw projections of the neighbour views; row ``b``
            belongs to image ``b``. SimCLR frame: student projections; MoCo frame: teacher keys (detached).
        tau: temperature (> 0).
        semantic_positive_weight: weight ``w >= 0`` of each neighbour positive (the other views weigh 1).
        neighbours_as_negatives: the other images' neighbour rows are candidates too.
        keys: ``None`` (SimCLR frame) or ``[V, B, D]`` raw teacher keys of the views (MoCo frame, with ``queue``).
        queue: ``None`` (SimCLR frame) or ``[K, D]`` raw queue, the snapshot before this step's enqueue (MoCo frame).

    Returns:
        0-d tensor, computed in float32 (float64 inputs stay float64).
    """
    def as_stack(tensors, like: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(tensors, torch.Tensor):
            return tensors
        tensors = list(tensors)
        if not tensors and like is not None:  # no neighbour views: an empty [0, B, D] block
            return like.new_zeros(0, *like.shape[1:])
        return torch.stack(tensors)

    queries = as_stack(queries)
    neighbours = as_stack(neighbours, like=queries)
    if queries.dim() != 3 or queries.shape[0] < 2:
        raise ValueError(f"queries must be [V, B, D] with V >= 2 views, got {tuple(queries.shape)}.")
    num_views, batch, dim = queries.shape
    if neighbours.dim() != 3 or neighbours.shape[1:] != queries.shape[1:]:
        raise ValueError(f"neighbours must be [M, {batch}, {dim}], got {tuple(neighbours.shape)}.")
    if (keys is None) != (queue is None):
        raise ValueError("Pass both keys and queue (MoCo v2 frame) or neither (SimCLR frame).")
    if not semantic_positive_weight >= 0:
        raise ValueError(f"semantic_positive_weight must be >= 0, got {semantic_positive_weight}.")
    dtype = torch.promote_types(queries.dtype, torch.float32)
    device = queries.device
    q = F.normalize(queries.reshape(num_views * batch, dim).to(dtype), dim=1)  # anchors, view-major
    n = F.normalize(neighbours.reshape(-1, dim).to(dtype), dim=1)  # [M B, D]
    if keys is None:
        k = q
        columns = [q, n]
    else:
        keys = as_stack(keys)
        if keys.shape != queries.shape:
            raise ValueError(f"keys must have the queries' shape {tuple(queries.shape)}, got {tuple(keys.shape)}.")
        if queue.dim() != 2 or queue.shape[1] != dim:
            raise ValueError(f"queue must be [K, {dim}], got {tuple(queue.shape)}.")
        k = F.normalize(keys.reshape(num_views * batch, dim).to(dtype), dim=1)
        columns = [k, n, F.normalize(queue.to(dtype), dim=1)]
    logits = q @ torch.cat(columns).T / tau  # [V B, V B + M B (+ K)]

    rows = torch.arange(num_views * batch, device=device)
    image, view = rows % batch, rows // batch  # anchor (and key row) r is view r // B of image r % B
    same_image = image[:, None] == image[None, :]  # [V B, V B]
    key_positive = same_image & (view[:, None] != view[None, :])
    # SimCLR: every key row but the anchor itself; MoCo: only the keys of the anchor's own image's other views.
    key_candidate = rows[:, None] != rows[None, :] if keys is None else key_positive
    neighbour_image = torch.arange(neighbours.shape[0] * batch, device=device) % batch
    neighbour_positive = image[:, None] == neighbour_image[None, :]  # [V B, M B]
    neighbour_candidate = torch.ones_like(neighbour_positive) if neighbours_as_negatives else neighbour_positive
    num_queue = logits.shape[1] - k.shape[0] - n.shape[0]
    queue_block = torch.zeros(num_views * batch, num_queue, dtype=torch.bool, device=device)
    weights = torch.cat(
        [key_positive.to(dtype), semantic_positive_weight * neighbour_positive.to(dtype), queue_block.to(dtype)], dim=1
    )
    candidate = torch.cat([key_candidate, neighbour_candidate, ~queue_block], dim=1)
    log_probabilities = logits.masked_fill(~candidate, float("-inf")).log_softmax(dim=1)
    # Non-candidates have log-probability -inf and weight 0: exclude them rather than form 0 * -inf.
    weighted = torch.where(weights > 0, weights * log_probabilities, torch.zeros_like(log_probabilities))
    return -(weighted.sum(dim=1) / weights.sum(dim=1)).mean()
