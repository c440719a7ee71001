"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (arXiv 2002.05709).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_simclr import SimCLRConfig
from .losses import cross_view_infonce_loss, simclr_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    MLPHead,
    all_gather_with_grad,
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
    """SimCLR pretraining: encoder + projector (512 -> 2048 -> 128, BN), a contrastive loss over the global batch.

    ``forward(views=[x_1, x_2])`` (two strong views by default, see ``config.views``) computes
    ``z_v = projector(encoder(x_v))`` and, with ``config.negatives`` (methods.md section 3):
    - ``"all_views"``: ``simclr_loss(gather(z_1), gather(z_2), tau)`` (NT-Xent): each of the ``2N`` views of the
      global batch (``N`` = per-device batch x processes) has its other view as positive and the other ``2N - 2``
      views as negatives;
    - ``"other_view"``: ``cross_view_infonce_loss(gather(z_1), gather(z_2), tau)``: each view against the other view
      of the ``N`` images, both directions averaged (the MNN benchmark's SimCLR).
    The gather keeps gradients (`all_gather_with_grad`). No teacher, no queue: ``queue_keys`` is None and
    ``momentum_update``/``enqueue`` are no-ops.
    """

    config_class = SimCLRConfig

    def __init__(self, config: SimCLRConfig):
        super().__init__(config)
        self.encoder = SimCLRModel(config)
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, config.projection_dim,
                                 batch_norm=True, output_batch_norm=config.projection_output_batch_norm)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"SimCLR takes two views, got {len(views)}.")
        z1, z2 = self.student_embeddings(views)
        loss_function = simclr_loss if self.config.negatives == "all_views" else cross_view_infonce_loss
        loss = loss_function(all_gather_with_grad(z1), all_gather_with_grad(z2), self.config.tau)
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)
