"""SimCLR configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig


class SimCLRConfig(ContrastiveConfig):
    r"""Configuration of SimCLR (Chen, Kornblith, Norouzi, Hinton, arXiv 2002.05709) in the MNN benchmark protocol.

    One network: backbone -> projector; the NT-Xent loss over the two views of every image in the (global) batch.
    No teacher, no queue. Defaults are the CIFAR recipe of the MNN benchmark (pc-cp/Benchmark-Methods-For-MNN,
    methods.md section 3). Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projector (Linear no bias, BN, ReLU,
            Linear), as the benchmark.
        projection_dim (`int`, defaults to 128): output size of the projector (`D`), as the benchmark.
        tau (`float`, defaults to 0.2): NT-Xent temperature (benchmark `--tem 0.2`; the SimCLR paper tunes it in
            0.1-1.0). Must be > 0.
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two input views
            (`hf_contrastive.data.VIEW_KINDS`); SimCLR uses two strong views.
    """

    model_type = "simclr"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim")
        self.check_positive("tau")
        self.check_views("SimCLR", 2)
