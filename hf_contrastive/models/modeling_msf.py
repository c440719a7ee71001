"""MSF: Mean Shift for self-supervised learning (arXiv 2105.07269), in the protocol of the MNN benchmark
(methods.md section 3).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_msf import MSFConfig
from .losses import msf_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    nearest_neighbors,
)


class MSFModel(ContrastiveModel):
    """The MSF encoder (student backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = MSFConfig


class MSFForImageClassification(ContrastiveForImageClassification):
    """The MSF encoder with a linear classifier on its pooled features."""

    config_class = MSFConfig

    def __init__(self, config: MSFConfig):
        super().__init__(config, encoder_class=MSFModel)


class MSFForPreTraining(ContrastiveForPreTraining):
    """MSF pretraining: student encoder + projector + predictor, EMA teacher (encoder + projector), queue.

    ``forward(views=[x_strong, x_weak])``: the strong view goes through the student, the weak view through the
    teacher (methods.md section 3). With ``p = predictor(projector(encoder(x_strong)))``,
    ``z = teacher_projector(teacher_encoder(x_weak))`` (no grad, shuffle-BN when ``bn_splits > 1``), ``Q`` the queue
    as it was before this step and ``n = nearest_neighbors(z, Q, k)`` (cosine top-k, raw rows):
    ```
    loss = mean_i (1 / (k + 1)) * [ d(p_i, z_i) + sum_j d(p_i, n_ij) ]        # msf_loss, d = 2 - 2 cos
    ```
    The teacher projections ``z`` of the weak view are returned for enqueueing (``queue_keys={"queue": z}``).

    Direction: one direction by default, as the official MSF code (UMBCvision/MSF: strong -> student,
    weak -> teacher). ``config.symmetric = True`` averages it with the reverse direction (weak -> student,
    strong -> teacher, neighbours of the strong-view target in the same pre-step queue, nothing enqueued from it),
    as the MNN benchmark's MSF runs (`--symmetric --weak`).

    Differences from the official code, following methods.md: the target and its ``k`` neighbours share the weight
    (1/(k+1) each), and the neighbours come from the queue before this step's keys are added (the official code
    enqueues first, so its top-1 neighbour is the target itself: target + k-1 neighbours, 1/k each). The queue
    stores raw projections; every distance normalises, so this is equivalent to its normalised queue.
    """

    config_class = MSFConfig
    student_network = ("encoder", "projector", "predictor")

    def __init__(self, config: MSFConfig):
        super().__init__(config)
        self.encoder = MSFModel(config)
        hidden, dim = config.projection_hidden_size, config.projection_dim
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=True)
        self.predictor = MLPHead(dim, hidden, dim, batch_norm=True)
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, dim)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_student, x_teacher]``, each ``[B, C, H, W]`` (strong, weak by default: ``config.views``)."""
        if len(views) != 2:
            raise ValueError(f"MSF takes two views (strong for the student, weak for the teacher), got {len(views)}.")
        strong, weak = views
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        k = self.config.nn_topk
        if not self.config.symmetric:
            (targets_weak,), (predictions_strong,) = self.teacher_embeddings([weak]), self.student_embeddings([strong])
            loss = msf_loss(predictions_strong, targets_weak, nearest_neighbors(targets_weak, queue_snapshot, k))
            return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": targets_weak.detach().float()})
        targets_weak, targets_strong = self.teacher_embeddings([weak, strong])
        predictions_strong, predictions_weak = self.student_embeddings(views)
        loss = 0.5 * (msf_loss(predictions_strong, targets_weak, nearest_neighbors(targets_weak, queue_snapshot, k))
                      + msf_loss(predictions_weak, targets_strong, nearest_neighbors(targets_strong, queue_snapshot, k)))
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": targets_weak.detach().float()})
