"""SimCLR configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig


class SimCLRConfig(ContrastiveConfig):
    r"""Configuration of SimCLR (Chen, Kornblith, Norouzi, Hinton, arXiv 2002.05709).

    One network: backbone -> projector; a contrastive loss over the two views of every image in the (global) batch.
    No teacher, no queue. The defaults are the SimCLR paper's definition (NT-Xent over all `2N` views, projector
    Linear no bias, BN, ReLU, Linear). The MNN benchmark (pc-cp/Benchmark-Methods-For-MNN, methods.md section 3)
    defines SimCLR differently: `negatives="other_view"` and `projection_output_batch_norm=True` give its definition,
    which `recipes/configs/simclr_cifar10.yaml` uses. Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projector (benchmark: 2048).
        projection_dim (`int`, defaults to 128): output size of the projector (`D`; benchmark: 128).
        tau (`float`, defaults to 0.2): temperature (benchmark `--tem 0.2`; the SimCLR paper tunes it in 0.1-1.0).
            Must be > 0.
        negatives (`str`, defaults to `"all_views"`): `"all_views"`: NT-Xent (`hf_contrastive.losses.simclr_loss`),
            each view against the other `2N - 1` views, the paper's loss. `"other_view"`: cross-view InfoNCE in both
            directions (`hf_contrastive.losses.cross_view_infonce_loss`), each view against the other view of the
            `N` images only, the benchmark's loss.
        projection_output_batch_norm (`bool`, defaults to `False`): end the projector with a BatchNorm1d after its
            last Linear (which then has no bias), as the benchmark's projector (lightly's `SimCLRProjectionHead`).
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two input views
            (`hf_contrastive.data.VIEW_KINDS`); SimCLR uses two strong views.
    """

    model_type = "simclr"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        negatives: str = "all_views",
        projection_output_batch_norm: bool = False,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.negatives = negatives
        self.projection_output_batch_norm = projection_output_batch_norm
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim")
        self.check_positive("tau")
        self.check_choice("negatives", SIMCLR_NEGATIVES)
        self.check_views("SimCLR", 2)


SIMCLR_NEGATIVES = ("all_views", "other_view")
