"""ReSSL: Relational Self-Supervised Learning with weak augmentation (arXiv 2107.09282), in the protocol of the
MNN benchmark (methods.md section 3). ISD (arXiv 2008.13168) uses the same relational loss.

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_ressl import ReSSLConfig
from .losses import relational_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
)


class ReSSLModel(ContrastiveModel):
    """The ReSSL encoder (student backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = ReSSLConfig


class ReSSLForImageClassification(ContrastiveForImageClassification):
    """The ReSSL encoder with a linear classifier on its pooled features."""

    config_class = ReSSLConfig

    def __init__(self, config: ReSSLConfig):
        super().__init__(config, encoder_class=ReSSLModel)


class ReSSLForPreTraining(ContrastiveForPreTraining):
    """ReSSL pretraining: student encoder + head, EMA teacher (encoder + head), queue; no predictor.

    The head (``projector``) is Linear -> ReLU -> Linear with biases and no BatchNorm (the MoCo v2 head of the
    benchmark code, as MSVQ). ``forward(views=[x_strong, x_weak])``: the strong view goes through the student, the
    weak view through the teacher (no grad, shuffle-BN when ``bn_splits > 1``). With
    ``q = projector(encoder(x_strong))``, ``t = teacher_projector(teacher_encoder(x_weak))`` and ``Q`` the queue as
    it was before this step (methods.md section 3, ``relational_loss``):
    ```
    s = norm(q) @ norm(Q).T / tau_student ;  t' = norm(t) @ norm(Q).T / tau_teacher        # [B, K]
    loss = mean_i [ - sum_j softmax(t'_i)_j * log_softmax(s_i)_j ]
    ```
    The teacher projections ``t`` of the weak view are returned for enqueueing (``queue_keys={"queue": t}``).
    One direction, as ReSSL and the benchmark's run; ``config.symmetric = True`` averages it with the reverse
    direction (weak -> student, strong -> teacher, same pre-step queue, nothing enqueued from it).
    """

    config_class = ReSSLConfig

    def __init__(self, config: ReSSLConfig):
        super().__init__(config)
        self.encoder = ReSSLModel(config)
        hidden, dim = config.projection_hidden_size, config.projection_dim
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=False)
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, dim)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_student, x_teacher]``, each ``[B, C, H, W]`` (strong, weak by default: ``config.views``)."""
        if len(views) != 2:
            raise ValueError(f"ReSSL takes two views (strong for the student, weak for the teacher), got {len(views)}.")
        strong, weak = views
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        tau_s, tau_t = self.config.tau_student, self.config.tau_teacher
        if not self.config.symmetric:
            (targets_weak,), (predictions_strong,) = self.teacher_embeddings([weak]), self.student_embeddings([strong])
            loss = relational_loss(predictions_strong, targets_weak, queue_snapshot, tau_s, tau_t)
            return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": targets_weak.detach().float()})
        targets_weak, targets_strong = self.teacher_embeddings([weak, strong])
        predictions_strong, predictions_weak = self.student_embeddings(views)
        loss = 0.5 * (relational_loss(predictions_strong, targets_weak, queue_snapshot, tau_s, tau_t)
                      + relational_loss(predictions_weak, targets_strong, queue_snapshot, tau_s, tau_t))
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": targets_weak.detach().float()})
