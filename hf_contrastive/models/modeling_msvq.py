"""MSVQ: Self-Supervised Learning with Multiple Sample Views and Queues (arXiv 2305.05370).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_msvq import MSVQConfig
from .losses import relational_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
)


class MSVQModel(ContrastiveModel):
    """The MSVQ encoder (student backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = MSVQConfig


class MSVQForImageClassification(ContrastiveForImageClassification):
    """The MSVQ encoder with a linear classifier on its pooled features."""

    config_class = MSVQConfig

    def __init__(self, config: MSVQConfig):
        super().__init__(config, encoder_class=MSVQModel)


class MSVQForPreTraining(ContrastiveForPreTraining):
    """MSVQ pretraining: student encoder + head, two EMA teachers (encoder + head each), two queues.

    ``forward(views=[x1, x2, x3, x4])`` (strong, weak, weak, weak by default) returns the loss of methods.md
    section 2, ReSSL's relational loss against three targets::

        s1 = projector(encoder(x1))                                   # student, with gradients
        t2, t3 = teacher_1(x2), teacher_1(x3); t4 = teacher_2(x4)     # no gradients, raw projections
        Q1, Q2 = queue_1, queue_2 as they were before this step        # raw; normalised inside the loss
        loss = (R(s1, t2, Q1) + R(s1, t3, Q1) + R(s1, t4, Q2)) / 3,   R = relational_loss(., ., ., tau_s, tau_t)

    Teacher 1 (``teacher_encoder_1`` + ``teacher_projector_1``, momentum ``ema_momentum``) and teacher 2
    (``teacher_encoder_2`` + ``teacher_projector_2``, momentum ``ema_momentum_2``) are EMA copies of the student.
    ``queue_keys`` asks for ``t2`` in ``queue_1`` and ``t4`` in ``queue_2``; the loop enqueues them (gathered from
    every process) after the optimiser step and calls ``momentum_update()``, so forward never changes a queue.
    The head is named ``projector`` (no predictor exists) so that encoder-only loading ignores it.
    """

    config_class = MSVQConfig

    def __init__(self, config: MSVQConfig):
        super().__init__(config)
        self.encoder = MSVQModel(config)
        hidden, dim = config.projection_hidden_size, config.projection_dim
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=False)  # Linear, ReLU, Linear; no BN
        self.add_ema_teacher({"teacher_encoder_1": "encoder", "teacher_projector_1": "projector"})
        self.add_ema_teacher({"teacher_encoder_2": "encoder", "teacher_projector_2": "projector"}, momentum="ema_momentum_2")
        self.queue_1 = FeatureQueue(config.queue_size, dim)
        self.queue_2 = FeatureQueue(config.queue_size, dim)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x1, x2, x3, x4]``, each ``[B, C, H, W]``: x1 to the student, x2 and x3 to teacher 1, x4 to
        teacher 2 (see ``config.views``)."""
        if len(views) != 4:
            raise ValueError(
                f"MSVQ takes four views (x1 student; x2, x3 teacher 1; x4 teacher 2), got {len(views)}."
            )
        x1, x2, x3, x4 = views
        (student,) = self.student_embeddings([x1])
        target_2, target_3 = self.teacher_embeddings([x2, x3], teacher=0)
        (target_4,) = self.teacher_embeddings([x4], teacher=1)
        # Read-only snapshots: the loop enqueues after the step.
        queue_1, queue_2 = self.queue_1.features, self.queue_2.features
        tau_s, tau_t = self.config.tau_student, self.config.tau_teacher
        loss = (
            relational_loss(student, target_2, queue_1, tau_s, tau_t)
            + relational_loss(student, target_3, queue_1, tau_s, tau_t)
            + relational_loss(student, target_4, queue_2, tau_s, tau_t)
        ) / 3
        queue_keys = {"queue_1": target_2.detach().float(), "queue_2": target_4.detach().float()}
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=queue_keys)
