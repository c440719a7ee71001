"""NNCLR configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig


class NNCLRConfig(ContrastiveConfig):
    r"""Configuration of NNCLR (Dwibedi, Aytar, Tompson, Sermanet, Zisserman, arXiv 2104.14548).

    One network: backbone -> projector -> predictor; a support queue of the network's own projections. The positive
    of each prediction is the nearest queue neighbour of the other view's projection (InfoNCE over the batch). No EMA
    teacher. The defaults are the NNCLR paper's definition at the MNN benchmark's CIFAR sizes; the benchmark
    (pc-cp/Benchmark-Methods-For-MNN, methods.md section 3) adds the reverse loss term
    (`prediction_to_neighbors=True`) and reports `nn_topk=5`, as `recipes/configs/nnclr_cifar10.yaml` sets.
    Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projector (paper and benchmark: 2048).
        projection_layers (`int`, defaults to 3): Linear layers of the projector, each followed by BatchNorm (and
            ReLU except the last), as the paper and the benchmark. 2 gives Linear, BN, ReLU, Linear, BN.
        projection_dim (`int`, defaults to 128): output size of projector and predictor (`D`; benchmark 128,
            NNCLR on ImageNet 256).
        prediction_hidden_size (`int`, defaults to 2048): hidden width of the predictor (Linear no bias, BN, ReLU,
            Linear). The benchmark uses 2048 on CIFAR; NNCLR uses 4096 on ImageNet.
        tau (`float`, defaults to 0.2): InfoNCE temperature (benchmark `--tem 0.2`; NNCLR paper 0.1). Must be > 0.
        queue_size (`int`, defaults to 4096): support queue length `K` (benchmark CIFAR; 16384 for Tiny-ImageNet;
            the NNCLR paper uses 98304 on ImageNet). Must hold at least one global batch.
        nn_topk (`int`, defaults to 1): neighbours `k` per sample; the NNCLR paper uses 1. With `k > 1` every rank of
            neighbours is one InfoNCE loss and the losses are averaged (`nnclr_loss`; the benchmark's table uses 5).
        prediction_to_neighbors (`bool`, defaults to `False`): also contrast each prediction against all neighbours
            of the batch, its own `k` as positives with their log-probabilities summed, and average this term with
            the paper's (`hf_contrastive.losses.nnclr_loss`), as the benchmark's NNCLR.
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two input views
            (`hf_contrastive.data.VIEW_KINDS`). The projections of the first view are enqueued (the benchmark
            enqueues the second; both are strong views drawn alike).
    """

    model_type = "nnclr"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_layers: int = 3,
        projection_dim: int = 128,
        prediction_hidden_size: int = 2048,
        tau: float = 0.2,
        queue_size: int = 4096,
        nn_topk: int = 1,
        prediction_to_neighbors: bool = False,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_layers = projection_layers
        self.projection_dim = projection_dim
        self.prediction_hidden_size = prediction_hidden_size
        self.tau = tau
        self.queue_size = queue_size
        self.nn_topk = nn_topk
        self.prediction_to_neighbors = prediction_to_neighbors
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "prediction_hidden_size", "queue_size")
        self.check_positive("tau")
        if self.projection_layers < 2:
            raise ValueError(f"projection_layers must be >= 2, got {self.projection_layers}.")
        if self.nn_topk < 1 or self.nn_topk > self.queue_size:
            raise ValueError(f"nn_topk must be between 1 and queue_size ({self.queue_size}), got {self.nn_topk}.")
        self.check_views("NNCLR", 2)
