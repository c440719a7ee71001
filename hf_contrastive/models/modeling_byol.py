"""BYOL: Bootstrap Your Own Latent (arXiv 2006.07733), in the protocol of the MNN benchmark (methods.md section 3).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .configuration_byol import BYOLConfig
from .losses import byol_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    MLPHead,
    embed_views,
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

    def __init__(self, config: BYOLConfig):
        super().__init__(config)
        self.encoder = BYOLModel(config)
        hidden, dim = config.projection_hidden_size, config.projection_dim
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=True)
        self.predictor = MLPHead(dim, hidden, dim, batch_norm=True)
        self.teacher_encoder = copy.deepcopy(self.encoder)
        self.teacher_projector = copy.deepcopy(self.projector)
        self.post_init()
        self.init_teachers()

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module, float]]:
        teacher = nn.ModuleList([self.teacher_encoder, self.teacher_projector])
        student = nn.ModuleList([self.encoder, self.projector])
        return [(teacher, student, self.config.ema_momentum)]

    def _students(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return embed_views(self.encoder, (self.projector, self.predictor), views)

    @torch.no_grad()
    def _teachers(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return embed_views(self.teacher_encoder, (self.teacher_projector,), views, shuffle=self.config.bn_splits > 1)

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]`` (two strong views by default; see ``config.views``)."""
        if len(views) != 2:
            raise ValueError(f"BYOL takes two views, got {len(views)}.")
        first, second = views
        if not self.config.symmetric:
            (predictions_first,), (targets_second,) = self._students([first]), self._teachers([second])
            return ContrastivePreTrainingOutput(loss=byol_loss(predictions_first, targets_second), queue_keys=None)
        predictions_first, predictions_second = self._students(views)
        targets_second, targets_first = self._teachers([second, first])  # the shuffle draws in the order of old
        loss = 0.5 * (byol_loss(predictions_first, targets_second) + byol_loss(predictions_second, targets_first))
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)
