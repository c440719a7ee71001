"""CACR: Contrastive Attraction and Contrastive Repulsion for Representation Learning (arXiv 2105.03746).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_cacr import CACRConfig
from .losses import cacr_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    MLPHead,
    all_gather_with_grad,
)


class CACRModel(ContrastiveModel):
    """The CACR encoder (backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = CACRConfig


class CACRForImageClassification(ContrastiveForImageClassification):
    """The CACR encoder with a linear classifier on its pooled features."""

    config_class = CACRConfig

    def __init__(self, config: CACRConfig):
        super().__init__(config, encoder_class=CACRModel)


class CACRForPreTraining(ContrastiveForPreTraining):
    """CACR pretraining: encoder + projector (512 -> 2048 -> 128, BN), attraction and repulsion over the global batch.

    ``forward(views=[x_1, ..., x_V])`` (five strong views by default, see ``config.views``) computes
    ``z_v = projector(encoder(x_v))`` for each view separately (each view's BatchNorm statistics are its own, as the
    official code's one forward per view) and ``cacr_loss(stack(gather(z_1), ..., gather(z_V)), tau_pos, tau_neg,
    alpha, beta)`` (formula in `hf_contrastive.losses.cacr_loss`, which L2-normalises ``z`` as the official encoder's
    last layer does): each view's positives are the other ``V - 1`` views of its image, its negatives the other
    ``N - 1`` images of the global batch (``N`` = per-device batch x processes). The gather keeps gradients
    (`all_gather_with_grad`). No teacher, no queue: ``queue_keys`` is None and ``momentum_update``/``enqueue`` are
    no-ops.
    """

    config_class = CACRConfig

    def __init__(self, config: CACRConfig):
        super().__init__(config)
        self.encoder = CACRModel(config)
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, config.projection_dim,
                                 batch_norm=True, num_layers=config.projection_layers)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, ..., x_V]`` (``V = len(config.views)``), each ``[B, C, H, W]``; row ``i`` of all of
        them is the same image."""
        if len(views) != len(self.config.views):
            raise ValueError(
                f"CACR takes {len(self.config.views)} views (config.views={self.config.views}), got {len(views)}."
            )
        projections = torch.stack([all_gather_with_grad(z) for z in self.student_embeddings(views)])
        loss = cacr_loss(
            projections,
            tau_pos=self.config.tau_pos,
            tau_neg=self.config.tau_neg,
            alpha=self.config.alpha,
            beta=self.config.beta,
            detach_weights=self.config.detach_weights,
        )
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)
