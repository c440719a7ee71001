"""BYOL configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

# The view presets BYOL can read (``hf_contrastive.data.VIEW_KINDS`` without the deterministic ``eval``).
_TRAIN_VIEW_KINDS = ("strong", "weak")


class BYOLConfig(ContrastiveConfig):
    r"""Configuration of BYOL, Bootstrap Your Own Latent (Grill et al., arXiv 2006.07733; NeurIPS 2020).

    Student backbone -> projector -> predictor; EMA teacher backbone -> projector; no queue, no negatives. Defaults
    are the CIFAR-10 recipe of the MNN benchmark (methods.md sections 0 and 3; pc-cp/Benchmark-Methods-For-MNN,
    `network/BYOL.py` and `main_pretrain_evaluation.sh`). Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of projector and predictor (Linear without
            bias, BatchNorm, ReLU, Linear), as the benchmark code (the BYOL paper uses 4096 on ImageNet).
        projection_dim (`int`, defaults to 128): output size of projector and predictor (`D`; 256 in the paper).
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum `m`, constant (0.996 for STL-10 and
            Tiny-ImageNet; the paper's ImageNet recipe starts at 0.996 and raises it to 1 with a cosine schedule).
        symmetric (`bool`, defaults to `True`): average the loss of both directions (view 1 -> student with view 2
            -> teacher, and the reverse), as the paper and the benchmark run (`--symmetric`). `False` keeps only
            the first direction.
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two input views,
            in the order the model reads them (`hf_contrastive.data.VIEW_KINDS`).
    """

    model_type = "byol"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        ema_momentum: float = 0.99,
        symmetric: bool = True,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.ema_momentum = ema_momentum
        self.symmetric = symmetric
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim")
        self.check_momentum("ema_momentum")
        self.check_views("BYOL", 2, presets=_TRAIN_VIEW_KINDS)
