"""NNCLR: Nearest-Neighbor Contrastive Learning of Visual Representations (arXiv 2104.14548).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_nnclr import NNCLRConfig
from .losses import nnclr_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    all_gather_with_grad,
    nearest_neighbors,
)


class NNCLRModel(ContrastiveModel):
    """The NNCLR encoder (backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = NNCLRConfig


class NNCLRForImageClassification(ContrastiveForImageClassification):
    """The NNCLR encoder with a linear classifier on its pooled features."""

    config_class = NNCLRConfig

    def __init__(self, config: NNCLRConfig):
        super().__init__(config, encoder_class=NNCLRModel)


class NNCLRForPreTraining(ContrastiveForPreTraining):
    """NNCLR pretraining: encoder + projector (3 layers, BN after each) + predictor, support queue of own projections.

    ``forward(views=[x_1, x_2])`` (two strong views by default) returns the symmetric loss (methods.md section 3;
    formula in `hf_contrastive.losses.nnclr_loss`, ``r`` = ``config.prediction_to_neighbors``):
    ```
    z_v = projector(encoder(x_v)); p_v = predictor(z_v)          # one network, with grad
    n_v = nearest_neighbors(z_v.detach(), Q, nn_topk)              # [B, k, D], raw queue rows, no grad
    loss = 0.5 * (nnclr_loss(gather(n_1), gather(p_2), tau, r) + nnclr_loss(gather(n_2), gather(p_1), tau, r))
    ```
    ``Q`` is the queue as it was before this step (both directions read the same snapshot); the gathers run over all
    processes (predictions keep gradients, `all_gather_with_grad`), so the other samples of the global batch are the
    negatives. The first view's projections ``z_1`` (detached) are returned for enqueueing, as lightly's NNCLR
    example and solo-learn do. No EMA teacher: ``momentum_update`` is a no-op.
    """

    config_class = NNCLRConfig
    student_network = ("encoder", "projector")  # the predictor is applied after the neighbour lookup

    def __init__(self, config: NNCLRConfig):
        super().__init__(config)
        self.encoder = NNCLRModel(config)
        dim = config.projection_dim
        self.projector = MLPHead(config.hidden_size, config.projection_hidden_size, dim, batch_norm=True,
                                 num_layers=config.projection_layers, output_batch_norm=True)
        self.predictor = MLPHead(dim, config.prediction_hidden_size, dim, batch_norm=True)
        self.queue = FeatureQueue(config.queue_size, dim)
        self.post_init()

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"NNCLR takes two views, got {len(views)}.")
        z1, z2 = self.student_embeddings(views)  # projections; the predictor comes after the lookup
        p1, p2 = self.predictor(z1), self.predictor(z2)
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        k, tau, both = self.config.nn_topk, self.config.tau, self.config.prediction_to_neighbors
        neighbors1 = nearest_neighbors(z1.detach(), queue_snapshot, k)  # [B, k, D]
        neighbors2 = nearest_neighbors(z2.detach(), queue_snapshot, k)
        loss_12 = nnclr_loss(all_gather_with_grad(neighbors1), all_gather_with_grad(p2), tau, both)
        loss_21 = nnclr_loss(all_gather_with_grad(neighbors2), all_gather_with_grad(p1), tau, both)
        loss = 0.5 * (loss_12 + loss_21)
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": z1.detach().float()})
