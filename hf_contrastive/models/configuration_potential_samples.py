"""Mining of potential samples configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig
from .configuration_mocov2 import validate_moco_fields

SOFT_SUPPORTS = ("topk", "queue")
NEGATIVE_SELECTIONS = ("band", "all")


class PotentialSamplesConfig(ContrastiveConfig):
    r"""Configuration of "Rethinking Samples Selection for Contrastive Learning: Mining of Potential Samples"
    (Dong, Long, Li, arXiv 2311.00358).

    Reconstruction: built from the abstract; not verified against the paper's tables. The paper's full text and code
    are not public here, so every design choice below is a field, and the defaults are our choices unless a field
    says otherwise.

    Frame: MoCo v2 (student backbone -> MLP head gives queries; EMA teacher backbone -> head gives keys; a queue of
    teacher keys), symmetric over two views, as the MNN benchmark's MoCo v2 (methods.md section 3). For each query
    the positives are the teacher key of the other view (weight 1) plus "mined views": queue entries near that key,
    weighted by a mix of hard (top-k, 0/1) and soft (softmax of similarity) weights. The negatives are "neither too
    hard nor too easy": the queue entries whose similarity rank to the key lies in a band. Formula:
    `hf_contrastive.losses.potential_samples_loss`. Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the MoCo v2 MLP head (Linear, ReLU, Linear;
            biases, no BatchNorm), as the MoCo v2 baseline.
        projection_dim (`int`, defaults to 128): output size of the head (`D`), as MoCo v2.
        tau (`float`, defaults to 0.2): InfoNCE temperature (the MNN benchmark's MoCo v2 value). Must be > 0.
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum `m` in [0, 1) (benchmark CIFAR; 0.996 for
            Tiny-ImageNet/STL-10).
        queue_size (`int`, defaults to 4096): length `K` of the key queue (benchmark CIFAR; 16384 for
            Tiny-ImageNet/STL-10). The keys of BOTH views are enqueued, so it must hold 2 x the global batch.
        nn_topk (`int`, defaults to 5): number `k` of mined positives: the `k` queue entries most similar (cosine)
            to the teacher key. 5 as MSF/MNN; between 1 and queue_size - 1.
        mined_weight (`float`, defaults to 1.0): weight of each hard-mined positive relative to the key's weight 1
            (so the mined views carry a total weight `mined_weight * k`, whatever `soft_weight`). 0 turns mining off
            (MoCo v2 with the negative selection below). Must be >= 0.
        soft_weight (`float`, defaults to 0.5): mix `alpha` in [0, 1] of the two weighting strategies of the mined
            views: `w = mined_weight * ((1 - alpha) * hard + alpha * k * soft)`, with `hard` 1 on the top-k and 0
            elsewhere and `soft` a softmax (summing to 1) of the similarities to the key; 0 is hard weighting only,
            1 soft only. The abstract says both are combined; 0.5 is our choice.
        soft_tau (`float`, defaults to 0.1): temperature of the soft weights' softmax over cosine similarities to
            the key (lower: closer to the hard 1-of-k weighting of the nearest neighbour). Must be > 0.
        soft_support (`str`, defaults to `"topk"`): which queue entries the soft weights spread over. `"topk"`: the
            `k` hard-mined entries only, so soft and hard weighting differ only in how they share the mined weight
            and the negative band stays meaningful. `"queue"`: every queue entry (a ReSSL-like target); every entry
            then is a (weighted) positive and sits in the denominator, so the negative selection has no effect
            while `soft_weight > 0`.
        negative_selection (`str`, defaults to `"band"`): `"band"`: the negatives are the queue entries whose rank
            of similarity to the key (0 = most similar) lies in `[negative_rank_low, negative_rank_high)`, minus the
            mined positives: the hardest ones (likely false negatives, largest gradients) and the easiest ones
            (softmax weight, hence gradient, near 0) are left out, as the abstract's gradient analysis suggests.
            `"all"`: every queue entry that is not a mined positive (MoCo v2's negatives).
        negative_rank_low (`int`, defaults to 32): first similarity rank (inclusive) of the negative band. Our choice.
        negative_rank_high (`int`, defaults to 2048): end rank (exclusive) of the negative band; values above
            `queue_size` mean "to the end of the queue". Our choice (half of a 4096 queue).
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two input views
            (`hf_contrastive.data.VIEW_KINDS`); two strong views as MoCo v2.
    """

    model_type = "potential_samples"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        nn_topk: int = 5,
        mined_weight: float = 1.0,
        soft_weight: float = 0.5,
        soft_tau: float = 0.1,
        soft_support: str = "topk",
        negative_selection: str = "band",
        negative_rank_low: int = 32,
        negative_rank_high: int = 2048,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.nn_topk = nn_topk
        self.mined_weight = mined_weight
        self.soft_weight = soft_weight
        self.soft_tau = soft_tau
        self.soft_support = soft_support
        self.negative_selection = negative_selection
        self.negative_rank_low = negative_rank_low
        self.negative_rank_high = negative_rank_high
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    @property
    def negative_band(self) -> tuple[int, int] | None:
        """``(negative_rank_low, negative_rank_high)`` for ``negative_selection="band"``, ``None`` for ``"all"``."""
        if self.negative_selection == "all":
            return None
        return (self.negative_rank_low, self.negative_rank_high)

    def validate_fields(self) -> None:
        super().validate_fields()
        validate_moco_fields(self)
        self.check_positive("soft_tau")
        if not 1 <= self.nn_topk < self.queue_size:
            raise ValueError(
                f"nn_topk must be between 1 and queue_size - 1 ({self.queue_size - 1}), got {self.nn_topk}."
            )
        self.check_non_negative("mined_weight")
        if not 0.0 <= self.soft_weight <= 1.0:
            raise ValueError(f"soft_weight must be in [0, 1], got {self.soft_weight}.")
        if self.soft_support not in SOFT_SUPPORTS:
            raise ValueError(f"soft_support must be one of {SOFT_SUPPORTS}, got {self.soft_support!r}.")
        if self.negative_selection not in NEGATIVE_SELECTIONS:
            raise ValueError(
                f"negative_selection must be one of {NEGATIVE_SELECTIONS}, got {self.negative_selection!r}."
            )
        if not 0 <= self.negative_rank_low < self.negative_rank_high:
            raise ValueError(
                f"negative ranks must satisfy 0 <= negative_rank_low < negative_rank_high, got "
                f"[{self.negative_rank_low}, {self.negative_rank_high})."
            )
        if self.negative_selection == "band" and max(self.negative_rank_low, self.nn_topk) >= min(
            self.negative_rank_high, self.queue_size
        ):
            raise ValueError(
                f"the negative band [{self.negative_rank_low}, {self.negative_rank_high}) must contain a rank in "
                f"[nn_topk, queue_size) = [{self.nn_topk}, {self.queue_size}), or it holds no negatives."
            )
        self.check_views("Mining of potential samples", 2)
