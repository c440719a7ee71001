"""Multi-network GL configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

# Presets a global view may use (the teacher sees them at full resolution), and presets any further view may use.
_GLOBAL_VIEW_KINDS = ("strong", "weak")
_LOCAL_VIEW_KINDS = ("strong", "weak", "local")


class MultiNetGLConfig(ContrastiveConfig):
    r"""Configuration of multi-network contrastive learning with global and local representations (Li, Long, Li,
    arXiv 2306.15930).

    Reconstruction: built from the abstract; not verified against the paper's tables. The abstract says that several
    networks embed global and local (multi-crop) views of an image and that embedding pairs across networks are
    contrasted, which enlarges the number of contrasted samples. Everything else is a choice of this reconstruction,
    each one a field below: an online network (backbone -> projector [-> predictor]) embeds every view; one or more
    momentum networks (EMA copies of backbone + projector, no gradient) embed the global views only; every online
    embedding is contrasted (InfoNCE) with each momentum network's embedding of every *other* global view of the
    same image, against the other images' keys of that network and view (in-batch) and/or that network's queue.
    Defaults that are not the paper's come from the MoCo v2 baseline of the same group's benchmark (methods.md
    sections 0 and 3) and from multi-crop (SwAV/DINO: 2 global + small local crops). Backbone fields: see
    `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projector (and predictor).
        projection_dim (`int`, defaults to 128): output size `D` of the projector (and predictor).
        projection_batch_norm (`bool`, defaults to `False`): BatchNorm after the hidden Linear of the projector (and
            predictor). `False` is the MoCo v2 head (Linear, ReLU, Linear with biases); `True` the BYOL/SimCLR head.
        use_predictor (`bool`, defaults to `False`): put a predictor MLP (`D -> prediction_hidden_size -> D`) on the
            online network only (BYOL / MoCo v3 asymmetry). Off by default: plain InfoNCE needs no predictor.
        prediction_hidden_size (`int`, defaults to 2048): hidden width of the predictor (unused without one).
        num_momentum_networks (`int`, defaults to 1): number `N` of momentum (EMA) networks. Each has its own
            backbone + projector, its own EMA rate and its own queue; the online queries are contrasted with the
            keys of every one of them, so the number of contrasted pairs grows with `N`.
        ema_momentum (`float` or `list[float]`, defaults to 0.99): EMA momentum in [0, 1) of the momentum
            network(s). A float is allowed only for one network; several networks need a list of `N` different
            values (all start as copies of the online network, so equal rates would make them identical copies).
            0.99 is the benchmark's CIFAR value; MSVQ, by the same group, uses two teachers with 0.99 and 0.95.
        num_global_views (`int`, defaults to 2): the first `G` entries of `views` are global views, seen by the online
            and the momentum networks; the other entries are local views, seen by the online network only (as in
            multi-crop, teachers never see local crops). Must be >= 2 so every global view has a partner.
        tau (`float`, defaults to 0.2): InfoNCE temperature (MoCo v2 / benchmark `--tem 0.2`). Must be > 0.
        use_batch_negatives (`bool`, defaults to `True`): use the other images' keys of the same network and global
            view, gathered from every process, as negatives (MoCo v3 / CLIP style).
        queue_size (`int`, defaults to 4096): length `K` of each momentum network's key queue (benchmark CIFAR
            value); 0 means no queue. Each step enqueues the network's keys of all `G` global views, i.e.
            `G x global batch` keys per queue, so a non-zero size must hold at least that many. At least one
            negative source (`use_batch_negatives` or a queue) is required.
        views (`list[str]`, defaults to `["strong", "strong", "local", "local", "local", "local"]`): augmentation
            preset of each input view (`hf_contrastive.data.VIEW_KINDS`), global views first. The default is 2
            global crops at `image_size` (32 px on CIFAR) and 4 local crops at `image_size // 2` (16 px), as the
            suggested reconstruction (methods.md section 4). Global views are `strong` or `weak`; local views
            `local`, `strong` or `weak`.
    """

    model_type = "multinet_gl"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_dim: int = 128,
        projection_batch_norm: bool = False,
        use_predictor: bool = False,
        prediction_hidden_size: int = 2048,
        num_momentum_networks: int = 1,
        ema_momentum: float | list = 0.99,
        num_global_views: int = 2,
        tau: float = 0.2,
        use_batch_negatives: bool = True,
        queue_size: int = 4096,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.projection_batch_norm = projection_batch_norm
        self.use_predictor = use_predictor
        self.prediction_hidden_size = prediction_hidden_size
        self.num_momentum_networks = num_momentum_networks
        self.ema_momentum = list(ema_momentum) if isinstance(ema_momentum, (list, tuple)) else ema_momentum
        self.num_global_views = num_global_views
        self.tau = tau
        self.use_batch_negatives = use_batch_negatives
        self.queue_size = queue_size
        self.views = (
            list(views) if views is not None else ["strong", "strong", "local", "local", "local", "local"]
        )
        super().__init__(**kwargs)

    @property
    def ema_momenta(self) -> list[float]:
        """One EMA momentum per momentum network (``ema_momentum`` as a list of length ``num_momentum_networks``)."""
        if isinstance(self.ema_momentum, list):
            return [float(m) for m in self.ema_momentum]
        return [float(self.ema_momentum)] * self.num_momentum_networks

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "prediction_hidden_size", "num_momentum_networks")
        values = self.ema_momentum if isinstance(self.ema_momentum, list) else [self.ema_momentum]
        for momentum in values:
            if not isinstance(momentum, (int, float)) or isinstance(momentum, bool) or not 0.0 <= momentum < 1.0:
                raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}.")
        if isinstance(self.ema_momentum, list):
            if len(self.ema_momentum) != self.num_momentum_networks:
                raise ValueError(
                    f"ema_momentum must list one value per momentum network ({self.num_momentum_networks}), "
                    f"got {self.ema_momentum}."
                )
            if len(set(self.ema_momentum)) != len(self.ema_momentum):
                raise ValueError(
                    f"ema_momentum values must differ between momentum networks (equal rates give identical "
                    f"networks), got {self.ema_momentum}."
                )
        elif self.num_momentum_networks > 1:
            raise ValueError(
                f"ema_momentum must be a list of {self.num_momentum_networks} different values when "
                f"num_momentum_networks > 1 (equal rates give identical networks), got {self.ema_momentum}."
            )
        self.check_positive("tau")
        if self.num_global_views < 2:
            raise ValueError(
                f"num_global_views must be >= 2 (each global view is contrasted with the others), "
                f"got {self.num_global_views}."
            )
        if len(self.views) < self.num_global_views:
            raise ValueError(
                f"views must hold at least num_global_views={self.num_global_views} entries, got views={self.views}."
            )
        global_views, local_views = self.views[: self.num_global_views], self.views[self.num_global_views :]
        if any(kind not in _GLOBAL_VIEW_KINDS for kind in global_views):
            raise ValueError(
                f"the first num_global_views={self.num_global_views} views are global and must be presets from "
                f"{list(_GLOBAL_VIEW_KINDS)}, got {global_views}."
            )
        if any(kind not in _LOCAL_VIEW_KINDS for kind in local_views):
            raise ValueError(f"local views must be presets from {list(_LOCAL_VIEW_KINDS)}, got {local_views}.")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0 (0: no queue), got {self.queue_size}.")
        if 0 < self.queue_size < self.num_global_views:
            raise ValueError(
                f"queue_size must be 0 or >= num_global_views={self.num_global_views} (each image enqueues one key "
                f"per global view), got {self.queue_size}."
            )
        if not self.use_batch_negatives and self.queue_size == 0:
            raise ValueError(
                "InfoNCE needs negatives: set use_batch_negatives=True or queue_size > 0 (got False and 0)."
            )
