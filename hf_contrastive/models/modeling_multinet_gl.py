"""Multi-network contrastive learning with global and local representations (arXiv 2306.15930).

Reconstruction: built from the abstract; not verified against the paper's tables (methods.md section 4).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_multinet_gl import MultiNetGLConfig
from .losses import multinet_gl_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    all_gather_with_grad,
)


class MultiNetGLModel(ContrastiveModel):
    """The online encoder: ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = MultiNetGLConfig


class MultiNetGLForImageClassification(ContrastiveForImageClassification):
    """The online encoder with a linear classifier on its pooled features."""

    config_class = MultiNetGLConfig

    def __init__(self, config: MultiNetGLConfig):
        super().__init__(config, encoder_class=MultiNetGLModel)


class MultiNetGLForPreTraining(ContrastiveForPreTraining):
    """Multi-network GL pretraining (reconstruction): online network over all views, momentum networks over the
    global views, InfoNCE over every cross-network (query view, network, other global view) pair.

    ``forward(views=[g_1, ..., g_G, l_1, ..., l_L])`` (default: 2 global 32 px crops, 4 local 16 px crops; see
    ``config.views`` and ``config.num_global_views``) computes (formula in `hf_contrastive.losses.multinet_gl_loss`):
    ```
    q_v    = [predictor](projector(encoder(x_v)))                 # online, every view, with grad
    k_{n,g} = teacher_projectors[n](teacher_encoders[n](g_g))      # momentum network n, global views, no grad,
                                                                   # shuffle-BN when bn_splits > 1
    loss   = multinet_gl_loss(gather(q), gather(k), [queue_n], tau, use_batch_negatives)
    ```
    Each view goes through the encoder as its own batch (global and local crops differ in size; BatchNorm statistics
    are per view, as the two-view methods here). With ``use_batch_negatives`` the queries (with gradients) and keys
    of every process are gathered (`all_gather_with_grad`), so the negatives are the global batch; otherwise nothing
    is gathered. Queue ``n`` (``queues.n``) is read as it was before this step and receives network ``n``'s keys of
    all global views, ``cat(k_{n,1}, ..., k_{n,G})`` ``[G B, D]`` (this process's rows; the loop gathers and
    enqueues them). The loop calls ``momentum_update()`` after each optimiser step.
    """

    config_class = MultiNetGLConfig
    student_network = ("encoder", "projector", "predictor")  # predictor: None unless use_predictor

    def __init__(self, config: MultiNetGLConfig):
        super().__init__(config)
        self.encoder = MultiNetGLModel(config)
        hidden, dim, batch_norm = config.projection_hidden_size, config.projection_dim, config.projection_batch_norm
        self.projector = MLPHead(config.hidden_size, hidden, dim, batch_norm=batch_norm)
        # The predictor, when on, belongs to the online network only (BYOL / MoCo v3 asymmetry).
        self.predictor = (
            MLPHead(dim, config.prediction_hidden_size, dim, batch_norm=batch_norm) if config.use_predictor else None
        )
        networks = range(config.num_momentum_networks)
        # Momentum network n: teacher_encoders[n] + teacher_projectors[n], momentum config.ema_momenta[n].
        self.teacher_encoders, self.teacher_projectors = nn.ModuleList(), nn.ModuleList()
        for n in networks:
            self.add_ema_teacher({f"teacher_encoders.{n}": "encoder", f"teacher_projectors.{n}": "projector"},
                                 momentum="ema_momenta", index=n)
        self.queues = (
            nn.ModuleList([FeatureQueue(config.queue_size, dim) for _ in networks]) if config.queue_size > 0 else None
        )
        self.post_init()

    @property
    def queue_keys_per_sample(self) -> int:
        """Each image adds one key per global view to every queue."""
        return self.config.num_global_views

    @torch.no_grad()
    def enqueue(self, queue_keys: dict[str, torch.Tensor]) -> None:
        """Enqueue ``{"queues.<n>": keys [N, D]}`` gathered from all processes (queues live in a ModuleList)."""
        for name, keys in queue_keys.items():
            self.get_submodule(name).enqueue(keys)

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: the global views then the local views, each ``[B, C, H_v, W_v]``; row ``i`` of every view is
        the same image."""
        config = self.config
        if len(views) != len(config.views):
            raise ValueError(
                f"Multi-network GL takes {len(config.views)} views ({config.num_global_views} global first, "
                f"config.views={config.views}), got {len(views)}."
            )
        global_views = views[: config.num_global_views]
        queries = self.student_embeddings(views)  # one encoder call for the global views, one for the local views
        keys = [self.teacher_embeddings(global_views, teacher=n) for n in range(config.num_momentum_networks)]
        queues = [queue.features for queue in self.queues] if self.queues is not None else None  # read-only here
        if config.use_batch_negatives:
            # Negatives from the whole global batch; the keys carry no gradient, the queries keep theirs.
            loss_queries = [all_gather_with_grad(q) for q in queries]
            loss_keys = [[all_gather_with_grad(k) for k in network_keys] for network_keys in keys]
        else:
            loss_queries, loss_keys = queries, keys
        loss = multinet_gl_loss(loss_queries, loss_keys, queues, config.tau, config.use_batch_negatives)
        queue_keys = None
        if self.queues is not None:
            queue_keys = {f"queues.{n}": torch.cat(network_keys).detach().float() for n, network_keys in enumerate(keys)}
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=queue_keys)
