"""MoCHi: Hard Negative Mixing for Contrastive Learning (Kalantidis et al., NeurIPS 2020, arXiv 2010.01028).

Hub boundary: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch

from .configuration_mochi import MoCHiConfig
from .losses import mochi_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainedModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
)

# The pretraining model's step counter is pretraining state, like the teacher: ignored when loading the encoder.
_IGNORE_ON_LOAD = ContrastivePreTrainedModel._keys_to_ignore_on_load_unexpected + [r"^mixing_step$"]


class MoCHiModel(ContrastiveModel):
    """The MoCHi encoder (query backbone): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    config_class = MoCHiConfig
    _keys_to_ignore_on_load_unexpected = _IGNORE_ON_LOAD


class MoCHiForImageClassification(ContrastiveForImageClassification):
    """The MoCHi encoder with a linear classifier on its pooled features."""

    config_class = MoCHiConfig
    _keys_to_ignore_on_load_unexpected = _IGNORE_ON_LOAD

    def __init__(self, config: MoCHiConfig):
        super().__init__(config, encoder_class=MoCHiModel)


class MoCHiForPreTraining(ContrastiveForPreTraining):
    """MoCHi pretraining: MoCo v2 (query encoder + MLP head, EMA key encoder + head, queue of keys) with synthetic
    hard negatives appended to the logits of each query.

    ``forward(views=[x_1, x_2])`` returns the symmetric loss (methods.md section 5; formula in
    `hf_contrastive.losses.mochi_loss`):
    ```
    q_v = projector(encoder(x_v))                          # student, with grad
    k_v = teacher_projector(teacher_encoder(x_v))          # EMA teacher, no grad, shuffle-BN when bn_splits > 1
    loss = 0.5 * (mochi_loss(q_1, k_2, Q, draws_1) + mochi_loss(q_2, k_1, Q, draws_2))
    ```
    Each direction draws its own mixing randomness from torch's global RNG (on the views' device), in this order:
    ``mix_indices = randint(N, [B, s, 2])``, ``mix_alpha = rand(B, s)``, ``query_mix_indices = randint(N, [B, s'])``,
    ``query_mix_beta = query_mix_max * rand(B, s')``; the loop checkpoints that RNG, so a resumed run draws the same
    numbers. Until ``mixing_step`` reaches ``config.mix_start_step`` the draws are empty (``s = s' = 0``) and the loss
    is plain MoCo v2. ``Q`` is the queue before this step; ``cat(k_1, k_2)`` ``[2B, D]`` is returned for enqueueing.
    The loop calls ``momentum_update()`` after each optimiser step (teacher EMA and ``mixing_step += 1``) and
    ``enqueue()`` with the gathered keys.
    """

    queue_keys_per_sample = 2  # both views' keys are enqueued

    config_class = MoCHiConfig

    def __init__(self, config: MoCHiConfig):
        super().__init__(config)
        self.encoder = MoCHiModel(config)
        self.projector = MLPHead(
            config.hidden_size, config.projection_hidden_size, config.projection_dim, batch_norm=False
        )
        self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})
        self.queue = FeatureQueue(config.queue_size, config.projection_dim)
        # Optimiser steps taken so far (the warm-up clock); persistent, so checkpoints and resumes keep it.
        self.register_buffer("mixing_step", torch.zeros((), dtype=torch.long))
        # A host copy of mixing_step, read from the device once (then counted here) so that no step waits for the
        # device to learn whether the warm-up is over; forgotten when a state dict is loaded.
        self.known_mixing_step: int | None = None
        self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.forget_mixing_step())
        self.post_init()

    @torch.no_grad()
    def momentum_update(self, progress: float | None = None) -> None:
        """Teacher EMA step, and one more optimiser step on the mixing warm-up clock."""
        super().momentum_update(progress)
        self.mixing_step.add_(1)
        if self.known_mixing_step is not None:
            self.known_mixing_step += 1

    def forget_mixing_step(self) -> None:
        """Read ``mixing_step`` from the device again at the next step (after it was loaded)."""
        self.known_mixing_step = None

    @property
    def mixing_active(self) -> bool:
        """Whether the warm-up (``config.mix_start_step`` optimiser steps) is over."""
        start = self.config.mix_start_step
        if start == 0:
            return True
        if self.known_mixing_step is None:  # once per run or load: the only read of mixing_step
            self.known_mixing_step = int(self.mixing_step)
        return self.known_mixing_step >= start

    def _draw_mixing(self, batch: int, device: torch.device, active: bool) -> dict[str, torch.Tensor]:
        """One direction's random mixing inputs of `mochi_loss`, from torch's global RNG (empty before warm-up)."""
        config = self.config
        hard = config.num_hard_negatives
        synthetic = config.num_synthetic_negatives if active else 0
        query_mixed = config.num_query_mixed_negatives if active else 0
        return {
            "mix_indices": torch.randint(hard, (batch, synthetic, 2), device=device),
            "mix_alpha": torch.rand(batch, synthetic, device=device),
            "query_mix_indices": torch.randint(hard, (batch, query_mixed), device=device),
            "query_mix_beta": config.query_mix_max * torch.rand(batch, query_mixed, device=device),
        }

    def forward(
        self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs
    ) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"MoCHi takes two views, got {len(views)}.")
        q1, q2 = self.student_embeddings(views)
        k1, k2 = self.teacher_embeddings(views)
        queue_snapshot = self.queue.features  # read-only here; enqueue happens after the step
        tau, hard, active = self.config.tau, self.config.num_hard_negatives, self.mixing_active
        draws_1 = self._draw_mixing(q1.shape[0], q1.device, active)
        draws_2 = self._draw_mixing(q2.shape[0], q2.device, active)
        loss = 0.5 * (
            mochi_loss(q1, k2, queue_snapshot, tau, hard, **draws_1, check_ranks=False)
            + mochi_loss(q2, k1, queue_snapshot, tau, hard, **draws_2, check_ranks=False)
        )
        keys = torch.cat([k1, k2]).detach().float()  # [2B, D]
        return ContrastivePreTrainingOutput(loss=loss, queue_keys={"queue": keys})
