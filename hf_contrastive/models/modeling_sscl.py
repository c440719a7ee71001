"""SSCL: Synthetic Hard Negative Samples for Contrastive Learning (Dong, Long, Li, Chen, arXiv 2304.02971).

Reconstruction: built from the abstract; not verified against the paper's tables (see `SSCLConfig`).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_sscl import SSCLConfig
from .losses import sscl_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
)


class SSCLModel(ContrastiveModel):
    """The SSCL encoder (query backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = SSCLConfig


class SSCLForImageClassification(ContrastiveForImageClassification):
    """The SSCL encoder with a linear classifier on its pooled features."""

    config_class = SSCLConfig

    def __init__(self, config: SSCLConfig):
        super().__init__(config, encoder_class=SSCLModel)


class SSCLForPreTraining(ContrastiveForPreTraining):
    """SSCL pretraining (reconstruction) on the MoCo v2 frame: query encoder + MLP head, EMA key encoder + head, queue
    of keys; the loss adds synthetic hard negatives, hardness reweighting and debiasing.

    ``forward(views=[x_1, x_2])`` returns the symmetric loss (methods.md section 4; formula in
    `hf_contrastive.losses.sscl_loss`):
    ```
    q_v = projector(encoder(x_v))                          # student, with grad
    k_v = teacher_projector(teacher_encoder(x_v))          # EMA teacher, no grad, shuffle-BN when bn_splits > 1
    loss = 0.5 * (sscl_loss(q_1, k_2, Q, draws_1) + sscl_loss(q_2, k_1, Q, draws_2))
    ```
    Each direction draws its own mixing randomness from torch's global RNG (on the views' device), in this order:
    ``mix_indices = randint(N, [B, s, 2])`` (uniform ranks among the ``N`` hardest), ``mix_alpha = rand(B, s)``;
    the loop checkpoints that RNG. ``Q`` is the queue before this step; ``cat(k_1, k_2)`` ``[2B, D]`` is returned
    for enqueueing. The loop calls ``momentum_update()`` after each optimiser step and ``enqueue()`` with the
    gathered keys.
    """

    queue_keys_per_sample = 2  # both views' keys are enqueued

    config_class = SSCLConfig

    def __init__(self, config: SSCLConfig):
        super().__init__(config)
        self.encoder = SSCLModel(config)
        self.projector = MLPHead(
            config.hidden_size, config.projection_hidden_size, config.projection_dim, batch_norm=False
        )
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, config.projection_dim)
        self.post_init()

    def _loss(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """One direction, with fresh mixing draws from torch's global RNG."""
        config = self.config
        batch, synthetic = q.shape[0], config.num_synthetic_negatives
        mix_indices = torch.randint(config.num_hard_negatives, (batch, synthetic, 2), device=q.device)
        mix_alpha = torch.rand(batch, synthetic, device=q.device)
        return sscl_loss(
            q, k, queue, config.tau, config.num_hard_negatives, mix_indices, mix_alpha,
            beta=config.hardness_beta, tau_plus=config.tau_plus, detach_weights=config.detach_hardness_weights,
            check_ranks=False,  # drawn in range just above; checking would make every step wait for the device
        )

    def forward(
        self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs
    ) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"SSCL takes two views, got {len(views)}.")
        q1, q2 = self.student_embeddings(views)
        k1, k2 = self.teacher_embeddings(views)
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        loss = 0.5 * (self._loss(q1, k2, queue_snapshot) + self._loss(q2, k1, queue_snapshot))
        keys = torch.cat([k1, k2]).detach().float()  # [2B, D]
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": keys})
