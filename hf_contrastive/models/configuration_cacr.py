"""CACR configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

# The view presets CACR can read (``hf_contrastive.data.VIEW_KINDS`` without the deterministic ``eval``).
_TRAIN_VIEW_KINDS = ("strong", "weak", "local")


class CACRConfig(ContrastiveConfig):
    r"""Configuration of CACR, contrastive attraction and contrastive repulsion (Zheng et al., arXiv 2105.03746).

    One network: backbone -> projector -> L2 normalisation. Every view of an image is an anchor whose positives are
    the other views of that image (attracted with weights that grow with their distance) and whose negatives are
    the other images of the global batch (repelled with weights that grow as they get closer); see
    `hf_contrastive.losses.cacr_loss`. No teacher, no queue. Defaults follow the official small-scale code
    (JegZheng/CACR-SSL, ``small_scale_experiments``, CIFAR-10 command of its README) on the package's ResNet-18, with
    the MNN benchmark's projector (methods.md section 3). The official encoder, whose numbers the paper reports, is a
    small AlexNet: `backbone="small_alexnet"` with `projection_layers=1` (its fc8) is that network
    (`recipes/configs/cacr_cifar10_alexnet.yaml`). Backbone fields: see `ContrastiveConfig`.

    Args:
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projector (Linear no bias, BN, ReLU,
            Linear), as the MNN benchmark's SimCLR.
        projection_layers (`int`, defaults to 2): Linear layers of the projector; 1 is a single Linear with bias
            (the official AlexNet's fc8 on its 4096-d fc7).
        projection_dim (`int`, defaults to 128): output size of the projector (`D`); the official code's
            `--feat_dim 128`.
        tau_pos (`float`, defaults to 1.0): `t+`, sharpness of the positive (attraction) weights
            `softmax(t+ * ||z - z+||^2)` (official `--tau_pos 1.0`). 0 gives uniform weights. Must be >= 0.
        tau_neg (`float`, defaults to 0.9): `t-`, sharpness of the negative (repulsion) weights
            `softmax(-t- * ||z - z-||^2)`: 0.9 for CIFAR-10, 2.0 for CIFAR-100 and STL-10 (official README
            commands). 0 gives uniform weights. Must be >= 0.
        alpha (`float`, defaults to 1.0): weight of the attraction term (official `--alpha 1.0`). Must be > 0.
        beta (`float`, defaults to 1.0): weight of the repulsion term (official README commands `--beta 1.0` on
            every dataset). Must be > 0.
        detach_weights (`bool`, defaults to `False`): compute the softmax weights without gradient. The official
            small-scale code lets gradients flow through them (False); its ImageNet variant detaches them.
        views (`list[str]`, defaults to five `"strong"`): augmentation preset of each input view
            (`hf_contrastive.data.VIEW_KINDS`). The official code draws `Ny + 1 = 5` views with `Ny = 4`, so each
            anchor has 4 positives. At least two views.
    """

    model_type = "cacr"

    def __init__(
        self,
        projection_hidden_size: int = 2048,
        projection_layers: int = 2,
        projection_dim: int = 128,
        tau_pos: float = 1.0,
        tau_neg: float = 0.9,
        alpha: float = 1.0,
        beta: float = 1.0,
        detach_weights: bool = False,
        views: list | None = None,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_layers = projection_layers
        self.projection_dim = projection_dim
        self.tau_pos = tau_pos
        self.tau_neg = tau_neg
        self.alpha = alpha
        self.beta = beta
        self.detach_weights = detach_weights
        self.views = list(views) if views is not None else ["strong"] * 5
        super().__init__(**kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "projection_layers")
        self.check_non_negative("tau_pos", "tau_neg")
        self.check_positive("alpha", "beta")
        if len(self.views) < 2:
            raise ValueError(f"CACR needs at least two views (an anchor and a positive), got views={self.views}.")
        self.check_view_presets(_TRAIN_VIEW_KINDS)
