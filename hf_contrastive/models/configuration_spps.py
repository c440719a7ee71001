"""SPPS configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

BASES = ("simclr", "mocov2")


class SPPSConfig(ContrastiveConfig):
    r"""Configuration of SPPS, "Semantic Positive Pairs for Enhancing Visual Representation Learning of Instance
    Discrimination Methods" (Alkhalefi, Leontidis, Zhong, arXiv 2306.16122).

    Reconstruction: built from the abstract; not verified against the paper's tables. The paper's exact loss is not
    public here, so every design choice below is a field and the defaults are our choices unless a field says
    otherwise.

    A frozen pretrained encoder (`mining_encoder`, e.g. a BYOL or MNN folder of ours) embeds every training image
    once before training; each image's `mining_k` most similar other images (cosine similarity of pooled features)
    are its semantic neighbours (`hf_contrastive.mining`). Every epoch the data pipeline draws one of them per image
    and gives its `neighbour_views`; their projections are extra ("semantic") positives of both views of the image
    in a multi-positive InfoNCE on a SimCLR or MoCo v2 frame (`base`). Formula: `hf_contrastive.losses.spps_loss`.
    Called without neighbour views, the model computes the plain base loss (NT-Xent, or MoCo v2's symmetric
    InfoNCE). Backbone fields: see `ContrastiveConfig`.

    Args:
        base (`str`, defaults to `"simclr"`): the instance-discrimination frame, `"simclr"` or `"mocov2"`.
            `"simclr"`: one network + projector (Linear no bias, BN, ReLU, Linear), in-batch negatives gathered
            from every process with gradients, the neighbour views go through the student. `"mocov2"`: student +
            MoCo v2 head (no BN) gives queries, an EMA teacher gives the keys of both views and of the neighbour
            views, a queue of the views' keys gives the negatives (the paper's abstract reports its headline gain on
            MoCo v2).
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projector (MNN benchmark value for
            SimCLR and MoCo v2).
        projection_dim (`int`, defaults to 128): output size of the projector (`D`).
        tau (`float`, defaults to 0.2): InfoNCE temperature (the MNN benchmark's SimCLR / MoCo v2 value). Must be > 0.
        semantic_positive_weight (`float`, defaults to 1.0): weight `w` of each neighbour-view positive relative to
            the other view's weight 1 in the weighted average over positives (1.0: every positive counts the same,
            as SupCon's average over positives; our choice). 0 keeps the neighbour only as a candidate in the
            denominator. Must be >= 0.
        neighbours_as_negatives (`bool`, defaults to `True`): whether the neighbour projections of the other images
            of the batch are candidates (negatives) of an anchor too, as every non-self row is in SupCon. False: an
            anchor's candidates are the base frame's (the other views of the batch, or the queue) plus its own
            neighbour views. With `base="mocov2"` these are the teacher keys of the per-device batch (keys carry no
            gradient and MoCo v2 itself has no in-batch negatives, so they are not gathered).
        ema_momentum (`float`, defaults to 0.99): teacher EMA momentum in [0, 1) (`base="mocov2"` only; MNN
            benchmark CIFAR value, 0.996 for STL-10 / Tiny-ImageNet).
        queue_size (`int`, defaults to 4096): length `K` of the key queue (`base="mocov2"` only; benchmark CIFAR
            value). Both views' keys are enqueued (the neighbour keys are not), so it must hold 2 x the global batch.
        neighbour_views (`list[str]`, defaults to `["strong"]`): augmentation preset of each view of the drawn
            neighbour image (`hf_contrastive.data.VIEW_KINDS`); each is one extra positive. One strong view: the
            neighbour is treated like a third augmented view. At least one.
        mining_encoder (`str`, *optional*): folder (a Hub folder of ours, e.g. `outputs/byol-resnet18/model`, or a
            native timm export) or Hub id of the frozen encoder that mines the neighbours once before training; its
            own preprocessing (image processor) is used. None: every image is its own neighbour (the neighbour view
            is then one more augmented view of the same image) until the first re-mining.
        mining_k (`int`, defaults to 5): neighbours mined per image; one of them is drawn per image and epoch. 5 as
            the neighbour count of the NNCLR / MSF / MNN protocol (methods.md section 3): enough variety across
            epochs while staying mostly within the class (a BYOL ResNet-18 reaches about 87.5% 200-NN accuracy on
            CIFAR-10, so its 5 nearest neighbours are mostly of the same class). Must be >= 1 and < the number of
            training images.
        mining_every_n_epochs (`int`, defaults to 0): 0: mine once with `mining_encoder` (the paper's pretrained
            sampler). E > 0: mine again with the current student encoder at epochs E, 2E, ... Must be >= 0.
        views (`list[str]`, defaults to `["strong", "strong"]`): augmentation preset of each of the two views of the
            image (two strong views, as SimCLR and MoCo v2).
    """

    model_type = "spps"

    def __init__(
        self,
        base: str = "simclr",
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        tau: float = 0.2,
        semantic_positive_weight: float = 1.0,
        neighbours_as_negatives: bool = True,
        ema_momentum: float = 0.99,
        queue_size: int = 4096,
        neighbour_views: list | None = None,
        mining_encoder: str | None = None,
        mining_k: int = 5,
        mining_every_n_epochs: int = 0,
        views: list | None = None,
        **kwargs,
    ):
        self.base = base
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.tau = tau
        self.semantic_positive_weight = semantic_positive_weight
        self.neighbours_as_negatives = neighbours_as_negatives
        self.ema_momentum = ema_momentum
        self.queue_size = queue_size
        self.neighbour_views = list(neighbour_views) if neighbour_views is not None else ["strong"]
        self.mining_encoder = mining_encoder
        self.mining_k = mining_k
        self.mining_every_n_epochs = mining_every_n_epochs
        self.views = list(views) if views is not None else ["strong", "strong"]
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}.")
        self.check_sizes("projection_hidden_size", "projection_dim")
        self.check_positive("tau")
        self.check_non_negative("semantic_positive_weight")
        self.check_momentum("ema_momentum")
        if self.queue_size < 2:
            raise ValueError(
                f"queue_size must be >= 2 (and at least 2 x the global batch with base='mocov2', since both views' "
                f"keys are enqueued), got {self.queue_size}."
            )
        if len(self.neighbour_views) < 1 or not all(isinstance(kind, str) for kind in self.neighbour_views):
            raise ValueError(
                f"neighbour_views must list at least one view kind (e.g. ['strong']), got {self.neighbour_views}."
            )
        if self.mining_encoder is not None and not self.mining_encoder.strip():
            raise ValueError("mining_encoder must be a folder or Hub id, or None (no initial mining); got ''.")
        if self.mining_k < 1:
            raise ValueError(f"mining_k must be >= 1 (and < the number of training images), got {self.mining_k}.")
        if self.mining_every_n_epochs < 0:
            raise ValueError(
                f"mining_every_n_epochs must be >= 0 (0: never re-mine), got {self.mining_every_n_epochs}."
            )
        self.check_views("SPPS", 2, roles="of the image; its neighbour's views are set by neighbour_views")
