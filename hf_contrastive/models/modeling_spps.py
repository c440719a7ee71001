"""SPPS: Semantic Positive Pairs for Enhancing Visual Representation Learning of Instance Discrimination Methods
(arXiv 2306.16122). Reconstruction: built from the abstract; not verified against the paper's tables.

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_spps import SPPSConfig
from .losses import moco_loss, simclr_loss, spps_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    all_gather_with_grad,
)


class SPPSModel(ContrastiveModel):
    """The SPPS encoder (backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = SPPSConfig


class SPPSForImageClassification(ContrastiveForImageClassification):
    """The SPPS encoder with a linear classifier on its pooled features."""

    config_class = SPPSConfig

    def __init__(self, config: SPPSConfig):
        super().__init__(config, encoder_class=SPPSModel)


class SPPSForPreTraining(ContrastiveForPreTraining):
    """SPPS pretraining (reconstruction): SimCLR or MoCo v2 with mined semantic neighbours as extra positives.

    ``forward(views=[x_1, x_2], neighbour_views=[y_1, ..., y_M])``: row ``b`` of every ``x_v`` is image ``b`` and row
    ``b`` of every ``y_m`` a view of one of its mined neighbours (the training loop passes ``neighbour_views`` from
    the dataset, see ``hf_contrastive.mining``). Formula in `hf_contrastive.losses.spps_loss`.

    ``config.base == "simclr"`` (projector with BN; no teacher, no queue)::

        z_v = projector(encoder(x_v)),  n_m = projector(encoder(y_m))        # one forward per view (own BN batch)
        loss = spps_loss(gather(z), gather(n), tau, w, neighbours_as_negatives)   # gathered with gradients

    ``config.base == "mocov2"`` (MoCo v2 head without BN, EMA teacher, queue of keys)::

        q_v = projector(encoder(x_v))                                   # student, with grad
        k_v = teacher(x_v),  n_m = teacher(y_m)                         # EMA teacher, no grad, shuffle-BN if split
        loss = spps_loss(q, n, tau, w, neighbours_as_negatives, keys=k, queue=Q)
        queue_keys = {"queue": cat(k_1, k_2)}                           # the neighbour keys are not enqueued

    Without ``neighbour_views`` the loss is the plain base loss: ``simclr_loss(gather(z_1), gather(z_2), tau)``, or
    ``(moco_loss(q_1, k_2, Q) + moco_loss(q_2, k_1, Q)) / 2``.
    """

    config_class = SPPSConfig

    def __init__(self, config: SPPSConfig):
        super().__init__(config)
        self.encoder = SPPSModel(config)
        is_moco = config.base == "mocov2"
        # SimCLR's projector has BN (benchmark SimCLR); MoCo v2's MLP head has none.
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, config.projection_dim,
                                 batch_norm=not is_moco)
        if is_moco:
            self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
            self.queue = FeatureQueue(config.queue_size, config.projection_dim)
            self.queue_keys_per_sample = 2  # both views' keys are enqueued
        self.post_init()

    def forward(
        self,
        views: list[torch.Tensor],
        neighbour_views: list[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; ``neighbour_views`` (optional): ``M`` tensors
        ``[B, C, H, W]``, row ``b`` a view of a mined neighbour of image ``b``."""
        if len(views) != 2:
            raise ValueError(f"SPPS takes two views of the image, got {len(views)}.")
        neighbour_views = list(neighbour_views or [])
        for tensor in neighbour_views:
            if tensor.shape[0] != views[0].shape[0]:
                raise ValueError(
                    f"neighbour_views must have one row per image ({views[0].shape[0]}), got {tuple(tensor.shape)}."
                )
        config = self.config
        if config.base == "simclr":
            projections = [all_gather_with_grad(z) for z in self.student_embeddings(views + neighbour_views)]
            z, n = projections[:len(views)], projections[len(views):]
            if not neighbour_views:
                return ContrastivePreTrainingOutput(loss=simclr_loss(z[0], z[1], config.tau), queue_keys=None)
            loss = spps_loss(z, n, config.tau, config.semantic_positive_weight, config.neighbours_as_negatives)
            return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)

        q = self.student_embeddings(views)
        teacher_outputs = self.teacher_embeddings(views + neighbour_views)
        k, n = teacher_outputs[:len(views)], teacher_outputs[len(views):]
        queue_snapshot = self.queue.features  # read-only here; the loop enqueues after the step
        if neighbour_views:
            loss = spps_loss(q, n, config.tau, config.semantic_positive_weight, config.neighbours_as_negatives,
                             keys=k, queue=queue_snapshot)
        else:
            loss = 0.5 * (moco_loss(q[0], k[1], queue_snapshot, config.tau)
                          + moco_loss(q[1], k[0], queue_snapshot, config.tau))
        keys = torch.cat(k).detach().float()  # [2B, D]
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": keys})
