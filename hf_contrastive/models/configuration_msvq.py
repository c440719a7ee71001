"""MSVQ configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

# The view presets MSVQ can read (``hf_contrastive.data.VIEW_KINDS`` without the deterministic ``eval``).
_TRAIN_VIEW_KINDS = ("strong", "weak")


class MSVQConfig(ContrastiveConfig):
    r"""Configuration of MSVQ, Multiple Sample Views and Queues (Peng, Long, Li, arXiv 2305.05370; KBS 2024).

    Student backbone -> head; two EMA teachers (backbone + head) with different momenta; two queues of raw teacher
    projections; ReSSL's relational loss against three targets. Defaults are the paper's CIFAR-10 recipe
    (official README, pc-cp/MSVQ). Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the head (Linear, ReLU, Linear; biases,
            no BatchNorm, no predictor).
        projection_dim (`int`, defaults to 128): output size of the head (`D`).
        ema_momentum (`float`, defaults to 0.99): EMA momentum `m1` of teacher 1 (0.996 for STL-10/Tiny-ImageNet).
        ema_momentum_2 (`float`, defaults to 0.95): EMA momentum `m2` of teacher 2 (0.93 for CIFAR-100, 0.99 for
            STL-10/Tiny-ImageNet).
        queue_size (`int`, defaults to 4096): length `K` of each of the two queues (16384 for STL-10/Tiny-ImageNet).
        tau_student (`float`, defaults to 0.1): temperature `tau_s` of the student's similarity distribution.
        tau_teacher (`float`, defaults to 0.04): temperature `tau_t` of the teachers' (sharper) distributions
            (0.03 for CIFAR-100).
        views (`list[str]`, defaults to `["strong", "weak", "weak", "weak"]`): augmentation preset of each input
            view, in the order the model reads them (`hf_contrastive.data.VIEW_KINDS`): `x1` to the student, `x2` and
            `x3` to teacher 1, `x4` to teacher 2. Teacher-1 projections of `x2` fill `queue_1`, teacher-2
            projections of `x4` fill `queue_2`.
    """

    model_type = "msvq"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        ema_momentum: float = 0.99,
        ema_momentum_2: float = 0.95,
        queue_size: int = 4096,
        tau_student: float = 0.1,
        tau_teacher: float = 0.04,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.ema_momentum = ema_momentum
        self.ema_momentum_2 = ema_momentum_2
        self.queue_size = queue_size
        self.tau_student = tau_student
        self.tau_teacher = tau_teacher
        self.views = list(views) if views is not None else ["strong", "weak", "weak", "weak"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "queue_size")
        self.check_momentum("ema_momentum", "ema_momentum_2")
        self.check_positive("tau_student", "tau_teacher")
        self.check_views(
            "MSVQ", 4, roles="student x1; teacher 1 x2, x3; teacher 2 x4", presets=_TRAIN_VIEW_KINDS
        )
