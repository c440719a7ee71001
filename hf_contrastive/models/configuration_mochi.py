"""MoCHi configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig
from .configuration_mocov2 import validate_moco_fields


class MoCHiConfig(ContrastiveConfig):
    r"""Configuration of MoCHi, hard negative mixing (Kalantidis et al., arXiv 2010.01028) on the MoCo v2 frame of
    this package (symmetric loss, queue of EMA-teacher keys; methods.md sections 3 and 5).

    Per query, ``s`` synthetic negatives mix two of its ``N`` hardest queue entries and ``s'`` mix the query itself
    with one of them; they are appended to the MoCo logits (`hf_contrastive.losses.mochi_loss`).

    The paper's ImageNet-100 setting is MoCHi(N=1024, s=1024, s'=256) with a queue of 16384. The CIFAR defaults here
    scale it by the queue ratio 4096 / 16384: (256, 256, 64). That keeps the paper's proportions: the hard pool is
    the top 1/16 of the queue and the synthetic negatives add 7.8% to the real ones. (Keeping N = 1024 would make
    the "hardest" pool a quarter of a 4096 queue, hardly hard.) Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the MoCo v2 MLP head (Linear, ReLU, Linear;
            no BatchNorm).
        projection_dim (`int`, defaults to 128): output size of the head (`D`).
        tau (`float`, defaults to 0.2): InfoNCE temperature (MoCo v2; MNN benchmark `--tem 0.2`). Must be > 0.
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum in [0, 1) (benchmark CIFAR; 0.996 for
            STL-10 / Tiny-ImageNet).
        queue_size (`int`, defaults to 4096): queue length `K`. Both views' keys are enqueued, so it must hold at
            least twice the global batch.
        num_hard_negatives (`int`, defaults to 256): `N`, how many of each query's hardest queue entries (highest
            `<q, n>`) are mixed. In [1, queue_size]. Paper: 1024 of 16384 on ImageNet-100.
        num_synthetic_negatives (`int`, defaults to 256): `s`, negatives `norm(a n_i + (1 - a) n_j)` per query,
            `a ~ U(0, 1)`, `n_i, n_j` drawn uniformly (independently) from the `N` hardest. >= 0. Paper: 1024.
        num_query_mixed_negatives (`int`, defaults to 64): `s'`, negatives `norm(b q + (1 - b) n_j)` per query,
            `b ~ U(0, query_mix_max)`. >= 0. Paper: 256.
        query_mix_max (`float`, defaults to 0.5): upper end of the query's weight `b` (paper: 0.5, so the negative
            always dominates the mixture). In (0, 1].
        mix_start_step (`int`, defaults to 0): optimiser steps of plain MoCo v2 before mixing starts (the paper's
            warm-up, expressed in steps because the model does not know the epoch: epochs x steps per epoch,
            e.g. 10 x 195 for CIFAR-10 at batch 256). The model counts steps in its `mixing_step` buffer, advanced
            by `momentum_update()` (called by the loop once per optimiser step) and saved with checkpoints, so a
            resumed run continues the count. 0 mixes from the first step. >= 0.
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two views
            (`hf_contrastive.data.VIEW_KINDS`), as MoCo v2.
    """

    model_type = "mochi"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        num_hard_negatives: int = 256,
        num_synthetic_negatives: int = 256,
        num_query_mixed_negatives: int = 64,
        query_mix_max: float = 0.5,
        mix_start_step: int = 0,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.num_hard_negatives = num_hard_negatives
        self.num_synthetic_negatives = num_synthetic_negatives
        self.num_query_mixed_negatives = num_query_mixed_negatives
        self.query_mix_max = query_mix_max
        self.mix_start_step = mix_start_step
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        validate_moco_fields(self)
        if not 1 <= self.num_hard_negatives <= self.queue_size:
            raise ValueError(
                f"num_hard_negatives must be in [1, queue_size={self.queue_size}], got {self.num_hard_negatives}."
            )
        self.check_non_negative("num_synthetic_negatives", "num_query_mixed_negatives")
        if not 0.0 < self.query_mix_max <= 1.0:
            raise ValueError(f"query_mix_max must be in (0, 1], got {self.query_mix_max}.")
        self.check_non_negative("mix_start_step")
        self.check_views("MoCHi", 2)
