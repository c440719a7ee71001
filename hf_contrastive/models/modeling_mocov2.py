"""MoCo v2: Improved Baselines with Momentum Contrastive Learning (arXiv 2003.04297; MoCo v1 arXiv 1911.05722).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_mocov2 import MoCoV2Config
from .losses import moco_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
)


class MoCoV2Model(ContrastiveModel):
    """The MoCo v2 encoder (query backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = MoCoV2Config


class MoCoV2ForImageClassification(ContrastiveForImageClassification):
    """The MoCo v2 encoder with a linear classifier on its pooled features."""

    config_class = MoCoV2Config

    def __init__(self, config: MoCoV2Config):
        super().__init__(config, encoder_class=MoCoV2Model)


class MoCoV2ForPreTraining(ContrastiveForPreTraining):
    """MoCo v2 pretraining: query encoder + MLP head (no BN), EMA key encoder + head, queue of keys.

    ``forward(views=[x_1, x_2])`` (two strong views by default) returns the symmetric loss of MoCo's CIFAR demo and
    the MNN benchmark (methods.md section 3; formula in `hf_contrastive.losses.moco_loss`):
    ```
    q_v = projector(encoder(x_v))                          # student, with grad
    k_v = teacher_projector(teacher_encoder(x_v))          # EMA teacher, no grad, shuffle-BN when bn_splits > 1
    loss = 0.5 * (moco_loss(q_1, k_2, Q, tau) + moco_loss(q_2, k_1, Q, tau))
    ```
    ``Q`` is the queue as it was before this step (both directions read the same snapshot). The keys returned for
    enqueueing are ``cat(k_1, k_2)`` ``[2B, D]`` (``config.enqueue_both_views``, MoCo's CIFAR demo) or ``k_2``
    ``[B, D]`` (the MNN benchmark). The loop calls ``momentum_update()`` after each optimiser step and ``enqueue()``
    with the gathered keys.
    """

    config_class = MoCoV2Config

    @property
    def queue_keys_per_sample(self) -> int:
        return 2 if self.config.enqueue_both_views else 1

    def __init__(self, config: MoCoV2Config):
        super().__init__(config)
        self.encoder = MoCoV2Model(config)
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, config.projection_dim, batch_norm=False)
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, config.projection_dim)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"MoCo v2 takes two views, got {len(views)}.")
        q1, q2 = self.student_embeddings(views)
        k1, k2 = self.teacher_embeddings(views)
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        tau = self.config.tau
        loss = 0.5 * (moco_loss(q1, k2, queue_snapshot, tau) + moco_loss(q2, k1, queue_snapshot, tau))
        keys = (torch.cat([k1, k2]) if self.config.enqueue_both_views else k2).detach().float()  # [2B or B, D]
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": keys})
