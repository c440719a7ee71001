"""Rethinking Samples Selection for Contrastive Learning: Mining of Potential Samples (arXiv 2311.00358).

Reconstruction: built from the abstract; not verified against the paper's tables.
Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_potential_samples import PotentialSamplesConfig
from .losses import potential_samples_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
)


class PotentialSamplesModel(ContrastiveModel):
    """The encoder (query backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = PotentialSamplesConfig


class PotentialSamplesForImageClassification(ContrastiveForImageClassification):
    """The encoder with a linear classifier on its pooled features."""

    config_class = PotentialSamplesConfig

    def __init__(self, config: PotentialSamplesConfig):
        super().__init__(config, encoder_class=PotentialSamplesModel)


class PotentialSamplesForPreTraining(ContrastiveForPreTraining):
    """Mining of potential samples on a MoCo v2 frame (a reconstruction from the abstract).

    Query encoder + MLP head (no BN), EMA key encoder + head, queue of keys. ``forward(views=[x_1, x_2])`` (two
    strong views by default) returns the symmetric loss (formula in `hf_contrastive.losses.potential_samples_loss`):
    ```
    q_v = projector(encoder(x_v))                          # student, with grad
    k_v = teacher_projector(teacher_encoder(x_v))          # EMA teacher, no grad, shuffle-BN when bn_splits > 1
    loss = 0.5 * (L(q_1, k_2, Q) + L(q_2, k_1, Q))         # L = potential_samples_loss with the config's choices
    ```
    For each query the positives are the key of the other view and the queue entries mined around that key (hard
    top-k and/or soft similarity weights); the negatives are the queue entries in a band of similarity ranks to the
    key. ``Q`` is the queue before this step (both directions read the same snapshot, so mining never sees this
    step's keys). The keys of both views, ``cat(k_1, k_2)`` ``[2B, D]``, are returned for enqueueing, as MoCo v2;
    the loop calls ``momentum_update()`` after each optimiser step and ``enqueue()`` with the gathered keys.
    """

    queue_keys_per_sample = 2  # both views' keys are enqueued

    config_class = PotentialSamplesConfig

    def __init__(self, config: PotentialSamplesConfig):
        super().__init__(config)
        self.encoder = PotentialSamplesModel(config)
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, config.projection_dim, batch_norm=False)
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, config.projection_dim)
        self.post_init()

    def _loss(self, queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        config = self.config
        return potential_samples_loss(
            queries,
            keys,
            queue,
            tau=config.tau,
            nn_topk=config.nn_topk,
            negative_band=config.negative_band,
            mined_weight=config.mined_weight,
            soft_weight=config.soft_weight,
            soft_tau=config.soft_tau,
            soft_support=config.soft_support,
        )

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"Mining of potential samples takes two views, got {len(views)}.")
        q1, q2 = self.student_embeddings(views)
        k1, k2 = self.teacher_embeddings(views)
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        loss = 0.5 * (self._loss(q1, k2, queue_snapshot) + self._loss(q2, k1, queue_snapshot))
        keys = torch.cat([k1, k2]).detach().float()  # [2B, D]
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": keys})
