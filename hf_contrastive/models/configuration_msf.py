"""MSF (Mean Shift) configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

# The view presets MSF can read (``hf_contrastive.data.VIEW_KINDS`` without the deterministic ``eval``).
_TRAIN_VIEW_KINDS = ("strong", "weak")


class MSFConfig(ContrastiveConfig):
    r"""Configuration of MSF, Mean Shift for self-supervised learning (Koohpayegani, Tejankar, Pirsiavash,
    arXiv 2105.07269; ICCV 2021).

    Student backbone -> projector -> predictor; EMA teacher backbone -> projector; a queue of teacher projections of
    the weak view. The prediction is pulled towards the teacher target and its `nn_topk` nearest queue entries.
    Defaults are the CIFAR-10 recipe of the MNN benchmark (methods.md sections 0 and 3;
    pc-cp/Benchmark-Methods-For-MNN, `network/MSF.py`). Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of projector and predictor (Linear without
            bias, BatchNorm, ReLU, Linear), as BYOL/MNN in the benchmark.
        projection_dim (`int`, defaults to 128): output size of projector and predictor (`D`).
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum `m` (0.996 for STL-10/Tiny-ImageNet; 0.99 is
            also the official MSF default).
        queue_size (`int`, defaults to 4096): queue length `K` (16384 for STL-10/Tiny-ImageNet; the official MSF
            ImageNet recipe uses 1,024,000).
        nn_topk (`int`, defaults to 5): queue neighbours `k` of each target (the official MSF default).
        symmetric (`bool`, defaults to `False`): one direction (strong view -> student, weak view -> teacher), as
            the official MSF code (UMBCvision/MSF). `True` adds the reverse direction (weak -> student,
            strong -> teacher, nothing enqueued from it) and averages the two, as the MNN benchmark's runs
            (`--symmetric`); both directions read the same pre-step queue.
        views (`list[str]`, defaults to `["strong", "weak"]`): augmentation preset of each input view, in the order
            the model reads them (`hf_contrastive.data.VIEW_KINDS`): the first goes to the student, the second to the
            teacher, whose projections of it are enqueued.
    """

    model_type = "msf"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        nn_topk: int = 5,
        symmetric: bool = False,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.nn_topk = nn_topk
        self.symmetric = symmetric
        self.views = list(views) if views is not None else ["strong", "weak"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "queue_size")
        self.check_momentum("ema_momentum")
        if self.nn_topk < 1 or self.nn_topk > self.queue_size:
            raise ValueError(f"nn_topk must be between 1 and queue_size ({self.queue_size}), got {self.nn_topk}.")
        self.check_views("MSF", 2, roles="student, teacher", presets=_TRAIN_VIEW_KINDS)
