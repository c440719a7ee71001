"""ReSSL configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

# The view presets ReSSL can read (``hf_contrastive.data.VIEW_KINDS`` without the deterministic ``eval``).
_TRAIN_VIEW_KINDS = ("strong", "weak")


class ReSSLConfig(ContrastiveConfig):
    r"""Configuration of ReSSL, Relational Self-Supervised Learning with weak augmentation (Zheng et al.,
    arXiv 2107.09282; NeurIPS 2021). ISD (arXiv 2008.13168) uses the same relational loss.

    Student backbone -> head; EMA teacher backbone -> head; a queue of teacher projections of the weak view. The
    student's similarity distribution over the queue is matched to the teacher's sharper one; no positive term, no
    predictor. Defaults are the CIFAR-10 recipe of the MNN benchmark (methods.md sections 0 and 3;
    pc-cp/Benchmark-Methods-For-MNN, `network/ReSSL.py`, `--tem 0.04 --momentum 0.99 --weak --queue_size 4096`).
    Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the head (Linear, ReLU, Linear; biases,
            no BatchNorm), the MoCo v2 head of the benchmark code (also MSVQ's head).
        projection_dim (`int`, defaults to 128): output size of the head (`D`).
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum `m` (0.996 for STL-10/Tiny-ImageNet).
        queue_size (`int`, defaults to 4096): queue length `K` (16384 for STL-10/Tiny-ImageNet).
        tau_student (`float`, defaults to 0.1): temperature `tau_s` of the student's similarity distribution.
        tau_teacher (`float`, defaults to 0.04): temperature `tau_t` of the teacher's (sharper) distribution.
        symmetric (`bool`, defaults to `False`): one direction (strong view -> student, weak view -> teacher), as
            ReSSL and the benchmark run. `True` adds the reverse direction (weak -> student, strong -> teacher,
            nothing enqueued from it) and averages the two, as the benchmark code's `--symmetric` option.
        views (`list[str]`, defaults to `["strong", "weak"]`): augmentation preset of each input view, in the order
            the model reads them (`hf_contrastive.data.VIEW_KINDS`): the first goes to the student, the second to the
            teacher, whose projections of it are enqueued.
    """

    model_type = "ressl"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        tau_student: float = 0.1,
        tau_teacher: float = 0.04,
        symmetric: bool = False,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.tau_student = tau_student
        self.tau_teacher = tau_teacher
        self.symmetric = symmetric
        self.views = list(views) if views is not None else ["strong", "weak"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "queue_size")
        self.check_momentum("ema_momentum")
        self.check_positive("tau_student", "tau_teacher")
        self.check_views("ReSSL", 2, roles="student, teacher", presets=_TRAIN_VIEW_KINDS)
