"""MNN configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig
from .losses import MNN_MIXINGS


class MNNConfig(ContrastiveConfig):
    r"""Configuration of MNN, Mixed Nearest-Neighbors (Long, Peng, Li, Dong et al., arXiv 2311.00562).

    Student backbone -> projector -> predictor; EMA teacher backbone -> projector; a support queue of teacher
    projections of the weak view. Defaults are the paper's CIFAR recipe. Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of projector and predictor.
        projection_dim (`int`, defaults to 128): output size of projector and predictor (`D`).
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum `m` (0.996 for STL-10/Tiny-ImageNet).
        queue_size (`int`, defaults to 4096): support queue length `K` (16384 for STL-10/Tiny-ImageNet).
        nn_topk (`int`, defaults to 5): neighbours `k` taken from the queue per target.
        neighbor_mixing (`str`, defaults to `"mix_then_normalize"`): how a neighbour `n` and the target `z` are mixed
            (`hf_contrastive.losses.mnn_loss`). `"mix_then_normalize"`: `norm(lam n + (1 - lam) z)`, what the official
            `main.py` runs. `"normalize_then_mix"`: `lam norm(n) + (1 - lam) norm(z)`, not normalised again, the
            official model's `norm_nn` branch, which its `scripts.sh` asks for (`--norm_nn`) but `main.py` never
            parses. Which of the two produced the published 91.47% is therefore not certain (docs/methods.md).
        views (`list[str]`, defaults to `["strong", "weak"]`): augmentation preset of each input view, in the order
            the model reads them (`hf_contrastive.data.VIEW_KINDS`). The teacher projections of the second view
            are enqueued.
    """

    model_type = "mnn"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        nn_topk: int = 5,
        neighbor_mixing: str = "mix_then_normalize",
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.nn_topk = nn_topk
        self.neighbor_mixing = neighbor_mixing
        self.views = list(views) if views is not None else ["strong", "weak"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_momentum("ema_momentum")
        self.check_sizes("queue_size", "projection_dim", "projection_hidden_size")
        if self.nn_topk < 1 or self.nn_topk > self.queue_size:
            raise ValueError(f"nn_topk must be between 1 and queue_size ({self.queue_size}), got {self.nn_topk}.")
        self.check_choice("neighbor_mixing", MNN_MIXINGS)
        self.check_views("MNN", 2, roles="query, key")
