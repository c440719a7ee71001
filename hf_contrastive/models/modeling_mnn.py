"""MNN: Mixed Nearest-Neighbors for self-supervised learning (arXiv 2311.00562).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_mnn import MNNConfig
from .losses import mnn_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    nearest_neighbors,
)


class MNNModel(ContrastiveModel):
    """The MNN encoder (student backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = MNNConfig


class MNNForImageClassification(ContrastiveForImageClassification):
    """The MNN encoder with a linear classifier on its pooled features."""

    config_class = MNNConfig

    def __init__(self, config: MNNConfig):
        super().__init__(config, encoder_class=MNNModel)


class MNNForPreTraining(ContrastiveForPreTraining):
    """MNN pretraining: student encoder + projector + predictor, EMA teacher, support queue.

    ``forward(views=[x_strong, x_weak])`` returns the symmetric loss of methods.md section 1:
    ``0.5 * (L(strong -> student, weak -> teacher) + L(weak -> student, strong -> teacher))``; both directions read
    the queue as it was before this step, and only the teacher projections of the weak (second) view are returned
    for enqueueing. The loop calls ``momentum_update()`` after each optimiser step and ``enqueue()`` with the gathered keys.
    """

    config_class = MNNConfig
    student_network = ("encoder", "projector", "predictor")

    def __init__(self, config: MNNConfig):
        super().__init__(config)
        self.encoder = MNNModel(config)
        hidden, dim = config.projection_hidden_size, config.projection_dim
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=True)
        self.predictor = MLPHead(dim, hidden, dim, batch_norm=True)
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, dim)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_query, x_key]``, each ``[B, C, H, W]`` (strong, weak by default; see ``config.views``)."""
        if len(views) != 2:
            raise ValueError(f"MNN takes two views (strong, weak), got {len(views)}.")
        strong, weak = views
        predictions_strong, predictions_weak = self.student_embeddings(views)
        targets_strong, targets_weak = self.teacher_embeddings(views)
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        k, mixing = self.config.nn_topk, self.config.neighbor_mixing
        # One lambda ~ U(0, 1) per loss call, shared by the batch and the neighbours.
        lam_a, lam_b = torch.rand(2, device=strong.device)
        loss_strong_to_weak = mnn_loss(
            predictions_strong, targets_weak, nearest_neighbors(targets_weak, queue_snapshot, k), lam_a, mixing
        )
        loss_weak_to_strong = mnn_loss(
            predictions_weak, targets_strong, nearest_neighbors(targets_strong, queue_snapshot, k), lam_b, mixing
        )
        loss = 0.5 * (loss_strong_to_weak + loss_weak_to_strong)
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": targets_weak.detach().float()})
