"""BYOL: Bootstrap Your Own Latent (arXiv 2006.07733), in the protocol of the MNN benchmark (methods.md section 3).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_byol import BYOLConfig
from .losses import byol_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    MLPHead,
)


class BYOLModel(ContrastiveModel):
    """The BYOL encoder (student backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = BYOLConfig


class BYOLForImageClassification(ContrastiveForImageClassification):
    """The BYOL encoder with a linear classifier on its pooled features."""

    config_class = BYOLConfig

    def __init__(self, config: BYOLConfig):
        super().__init__(config, encoder_class=BYOLModel)


class BYOLForPreTraining(ContrastiveForPreTraining):
    """BYOL pretraining: student encoder + projector + predictor, EMA teacher (encoder + projector), no queue.

    ``forward(views=[x_1, x_2])`` (two strong views by default) returns, with ``p = predictor(projector(encoder(x)))``
    and ``z = teacher_projector(teacher_encoder(x))`` (no grad, shuffle-BN when ``bn_splits > 1``) and
    ``d(a, b) = 2 - 2 <norm(a), norm(b)>`` (methods.md section 3, ``byol_loss``):
    ```
    loss = 0.5 * ( mean_i d(p1_i, z2_i) + mean_i d(p2_i, z1_i) )      # symmetric (default)
    loss = mean_i d(p1_i, z2_i)                                       # config.symmetric = False
    ```
    Nothing is enqueued (``queue_keys`` is None). The loop calls ``momentum_update()`` after each optimiser step.
    """

    config_class = BYOLConfig
    student_network = ("encoder", "projector", "predictor")

    def __init__(self, config: BYOLConfig):
        super().__init__(config)
        self.encoder = BYOLModel(config)
        hidden, dim = config.projection_hidden_size, config.projection_dim
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=True)
        self.predictor = MLPHead(dim, hidden, dim, batch_norm=True)
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]`` (two strong views by default; see ``config.views``)."""
        if len(views) != 2:
            raise ValueError(f"BYOL takes two views, got {len(views)}.")
        first, second = views
        if not self.config.symmetric:
            (predictions_first,), (targets_second,) = self.student_embeddings([first]), self.teacher_embeddings([second])
            return ContrastivePreTrainingOutput(loss=byol_loss(predictions_first, targets_second), queue_keys=None)
        predictions_first, predictions_second = self.student_embeddings(views)
        targets_second, targets_first = self.teacher_embeddings([second, first])  # the shuffle draws in the order of old
        loss = 0.5 * (byol_loss(predictions_first, targets_second) + byol_loss(predictions_second, targets_first))
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)
