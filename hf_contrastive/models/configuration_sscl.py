"""SSCL configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig
from .configuration_mocov2 import validate_moco_fields


class SSCLConfig(ContrastiveConfig):
    r"""Configuration of SSCL, synthetic hard negative samples for contrastive learning (Dong, Long, Li, Chen,
    arXiv 2304.02971).

    Reconstruction: built from the abstract; not verified against the paper's tables.

    The abstract names three ingredients; each is rebuilt from the closest published component (methods.md
    section 4) on the MoCo v2 frame of this package (symmetric loss, queue of EMA-teacher keys):
    1. more and harder negatives by mixing negatives: MoCHi-style `norm(a n_i + (1 - a) n_j)`, `a ~ U(0, 1)`,
       `n_i, n_j` drawn uniformly from each query's `N` hardest queue entries (detached);
    2. "sampling them by controlling the contrast of the anchor with the other negatives": hardness-aware
       importance weights `w` proportional to `exp(beta <q, n>)` over all negatives (Robinson et al., arXiv 2010.04592);
    3. debiasing for false negatives: Chuang et al.'s (arXiv 2007.00224) corrected denominator
       `Ng = max((sum_j w_j exp(<q, n_j>/tau) - tau_plus exp(<q, k>/tau)) / (1 - tau_plus), exp(-1/tau))`.
    Loss: `hf_contrastive.losses.sscl_loss`. Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the MoCo v2 MLP head (Linear, ReLU, Linear;
            no BatchNorm). Choice: MoCo v2 base, as the MNN benchmark.
        projection_dim (`int`, defaults to 128): output size of the head (`D`).
        tau (`float`, defaults to 0.2): InfoNCE temperature (MoCo v2 / MNN benchmark). Must be > 0.
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum in [0, 1) (benchmark CIFAR; 0.996 for
            STL-10 / Tiny-ImageNet).
        queue_size (`int`, defaults to 4096): queue length `K`. Both views' keys are enqueued, so it must hold at
            least twice the global batch.
        num_hard_negatives (`int`, defaults to 256): `N`, size of each query's pool of hardest queue entries that
            are mixed. In [1, queue_size]. Choice: MoCHi's ImageNet-100 ratio N/K = 1/16 applied to K = 4096.
        num_synthetic_negatives (`int`, defaults to 256): `s`, synthetic negatives per query, added to the `K` queue
            negatives (so `M = K + s`). >= 0; 0 drops ingredient 1. Choice: MoCHi's ratio s/N = 1.
        hardness_beta (`float`, defaults to 2.0): `beta` of the weights `exp(beta <q, n>)`. >= 0; 0 gives uniform
            weights (drops ingredient 2). Choice: HCL's CIFAR-10 setting (its code's `beta = 1` on logits at
            temperature 0.5 is `beta = 1 / 0.5 = 2` on cosine similarities).
        tau_plus (`float`, defaults to 0.1): class prior of a negative being a false negative, in [0, 1); 0 drops
            the debiasing (ingredient 3). Choice: 1/10 for CIFAR-10 as Chuang et al. and HCL; 0.01 for CIFAR-100.
        detach_hardness_weights (`bool`, defaults to `False`): stop gradients through the weights `w`. Choice:
            `False`, as HCL's code, where the weights carry gradients.
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two views
            (`hf_contrastive.data.VIEW_KINDS`), as MoCo v2.
    """

    model_type = "sscl"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        num_hard_negatives: int = 256,
        num_synthetic_negatives: int = 256,
        hardness_beta: float = 2.0,
        tau_plus: float = 0.1,
        detach_hardness_weights: bool = False,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.num_hard_negatives = num_hard_negatives
        self.num_synthetic_negatives = num_synthetic_negatives
        self.hardness_beta = hardness_beta
        self.tau_plus = tau_plus
        self.detach_hardness_weights = detach_hardness_weights
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        validate_moco_fields(self)
        if not 1 <= self.num_hard_negatives <= self.queue_size:
            raise ValueError(
                f"num_hard_negatives must be in [1, queue_size={self.queue_size}], got {self.num_hard_negatives}."
            )
        self.check_non_negative("num_synthetic_negatives", "hardness_beta")
        if not 0.0 <= self.tau_plus < 1.0:
            raise ValueError(f"tau_plus must be in [0, 1), got {self.tau_plus}.")
        self.check_views("SSCL", 2)
