"""MoCo v2 configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig


class MoCoV2Config(ContrastiveConfig):
    r"""Configuration of MoCo v2 (Chen, Fan, Girshick, He, arXiv 2003.04297) in the MNN benchmark protocol.

    Student backbone -> projector (queries); EMA teacher backbone -> projector (keys); a queue of teacher keys used as
    negatives. Symmetric loss over the two views, as MoCo's CIFAR demo and the MNN benchmark. The defaults are the
    benchmark's CIFAR sizes (pc-cp/Benchmark-Methods-For-MNN, methods.md section 3) with MoCo's CIFAR demo's queue
    update (both views' keys enqueued); the benchmark enqueues one view's keys (`enqueue_both_views=False`), as
    `recipes/configs/mocov2_cifar10.yaml` sets. Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the MoCo v2 MLP head (Linear, ReLU, Linear;
            biases, no BatchNorm), as MoCo v2 and the benchmark.
        projection_dim (`int`, defaults to 128): output size of the head (`D`), as MoCo v2.
        tau (`float`, defaults to 0.2): InfoNCE temperature (MoCo v2 and benchmark `--tem 0.2`). Must be > 0.
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum `m` in [0, 1) (benchmark CIFAR; 0.996 for
            Tiny-ImageNet/STL-10; 0.999 in MoCo v2 on ImageNet).
        queue_size (`int`, defaults to 4096): length `K` of the key queue (benchmark CIFAR; 16384 for
            Tiny-ImageNet/STL-10; 65536 in MoCo v2 on ImageNet). Every step adds `global batch` keys per enqueued
            view, so `queue_size` must hold at least that many.
        enqueue_both_views (`bool`, defaults to `True`): enqueue the keys of both views (`2 x global batch` per
            step), as MoCo's CIFAR demo; `False` enqueues only the second view's keys, as the MNN benchmark (its
            `update=True` direction takes the second view as keys).
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two input views
            (`hf_contrastive.data.VIEW_KINDS`); MoCo v2 uses two strong views.
    """

    model_type = "mocov2"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        enqueue_both_views: bool = True,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.enqueue_both_views = enqueue_both_views
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        validate_moco_fields(self)
        self.check_views("MoCo v2", 2)


def validate_moco_fields(config) -> None:
    """Range checks of the MoCo v2 frame's fields (head sizes, tau, EMA momentum, queue), shared by the configs
    built on it (MoCHi, SSCL, potential samples)."""
    config.check_sizes("projection_hidden_size", "projection_dim")
    config.check_positive("tau")
    config.check_momentum("ema_momentum")
    if config.queue_size < 2:
        raise ValueError(
            f"queue_size must be >= 2 (and hold the keys of one step: the global batch per enqueued view), "
            f"got {config.queue_size}."
        )
