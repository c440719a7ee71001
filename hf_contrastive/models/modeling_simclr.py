"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (arXiv 2002.05709).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_simclr import SimCLRConfig
from .losses import simclr_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    MLPHead,
    all_gather_with_grad,
    embed_views,
)


class SimCLRModel(ContrastiveModel):
    """The SimCLR encoder (backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = SimCLRConfig


class SimCLRForImageClassification(ContrastiveForImageClassification):
    """The SimCLR encoder with a linear classifier on its pooled features."""

    config_class = SimCLRConfig

    def __init__(self, config: SimCLRConfig):
        super().__init__(config, encoder_class=SimCLRModel)


class SimCLRForPreTraining(ContrastiveForPreTraining):
    """SimCLR pretraining: encoder + projector (512 -> 2048 -> 128, BN), NT-Xent over the global batch.

    ``forward(views=[x_1, x_2])`` (two strong views by default, see ``config.views``) computes
    ``z_v = projector(encoder(x_v))`` and ``simclr_loss(gather(z_1), gather(z_2), tau)`` (methods.md section 3;
    formula in `hf_contrastive.losses.simclr_loss`): each of the ``2N`` views of the global batch (``N`` = per-device
    batch x processes) has its other view as positive and the other ``2N - 2`` views as negatives. The gather keeps
    gradients (`all_gather_with_grad`). No teacher, no queue: ``queue_keys`` is None and ``momentum_update``/
    ``enqueue`` are no-ops.
    """

    config_class = SimCLRConfig

    def __init__(self, config: SimCLRConfig):
        super().__init__(config)
        self.encoder = SimCLRModel(config)
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, config.projection_dim, batch_norm=True)
        self.post_init()
        self.init_teachers()  # no teachers: only keeps the base-class contract

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"SimCLR takes two views, got {len(views)}.")
        z1, z2 = embed_views(self.encoder, (self.projector,), views)
        loss = simclr_loss(all_gather_with_grad(z1), all_gather_with_grad(z2), self.config.tau)
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)
