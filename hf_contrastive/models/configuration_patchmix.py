"""PatchMix configuration (Hub boundary: imports only transformers and siblings)."""

from __future__ import annotations

from .configuration_contrastive import ContrastiveConfig

#: The official CIFAR backbone (visresearch/patchmix ``config/pretrain/vit_small_pretrain.py`` + ``module/vits.py``):
#: ViT-S (384-d, 12 blocks, 12 heads as in MoCo v3, not timm's 6) with 2x2 patches on 32 px images, drop path 0.1.
DEFAULT_BACKBONE = "vit_small_patch16_224"
DEFAULT_BACKBONE_KWARGS = {"img_size": 32, "patch_size": 2, "num_heads": 12, "drop_path_rate": 0.1}


class PatchMixConfig(ContrastiveConfig):
    r"""Configuration of PatchMix (Shen, Liu, Tang, Qu, Wang, "Inter-Instance Similarity Modeling for Contrastive
    Learning", arXiv 2306.12243), following the official code (visresearch/patchmix).

    A ViT in a MoCo v3 frame (student backbone + projector + predictor; EMA teacher backbone + projector) trained with
    soft-target InfoNCE against the in-batch keys of all processes, on original images and on images whose patches are
    mixed from `mix_num` images of the batch. Defaults are the official CIFAR recipe (ViT-S/2). Backbone fields: see
    `ContrastiveConfig`; here `backbone` defaults to a timm ViT and `small_image_stem` to False.

    Args:
        backbone (`str`, defaults to `"vit_small_patch16_224"`): timm model name. Any timm ViT works (the mixing reads
            its `patch_embed.patch_size`); for another backbone set `mix_patch_size`.
        backbone_kwargs (`dict`, *optional*): `timm.create_model` kwargs. When left out with the default `backbone`:
            `{"img_size": 32, "patch_size": 2, "num_heads": 12, "drop_path_rate": 0.1}` (official ViT-S/2 for CIFAR);
            with another `backbone`: `{}`.
        small_image_stem (`bool`, defaults to `False`): the ResNet small-image stem; a ViT has none.
        distributed_batchnorm (`str`, defaults to `"sync"`): the heads' BatchNorm1d layers normalise over the global
            batch of all processes, as the official code (`convert_sync_batchnorm`); one process is unaffected.
        projection_hidden_size (`int`, defaults to 4096): hidden width of projector and predictor (official
            `hidden_dim`).
        projection_dim (`int`, defaults to 256): output size `D` of projector and predictor (official `out_dim`).
        projection_layers (`int`, defaults to 3): Linear layers of the projector (official `proj_layer`); every Linear
            has no bias and is followed by BatchNorm1d (+ ReLU except after the last, whose BN has no affine), as MoCo v3.
        prediction_layers (`int`, defaults to 2): Linear layers of the predictor (official `pred_layer`), same layout;
            unlike MoCo v3 the official PatchMix predictor also ends with a non-affine BatchNorm1d.
        tau (`float`, defaults to 0.2): temperature of every soft-target cross entropy (official `temp`; its warm-up
            starts at the same 0.2, so it is constant). Must be > 0.
        ema_momentum (`float`, defaults to 0.996): teacher EMA momentum in [0, 1) (official `moco_m`).
        ema_momentum_schedule (`str`, defaults to `"cosine"`): the official code raises the momentum from
            `ema_momentum` to 1 with a cosine schedule over training (`moco_m_cos`); `"constant"` keeps it fixed.
        mix_num (`int`, defaults to 2): number `m` of images mixed into one (official `mix_num`). Mixed image `i` takes
            its patches from images `i, i+1, ..., i+m-1` of the per-device batch (wrapping around), about `1/m` of the
            cells each. Must be >= 1 (1: no mixing).
        mix_patch_size (`int`, *optional*): side in pixels of the mixed cells (official `mix_size`, = the ViT's patch
            size). None: the backbone's `patch_embed.patch_size`.
        mixed_to_original_weight (`float`, defaults to 0.5): weight of the mixed -> original term (official `/ 2.0`).
        mixed_to_mixed_weight (`float`, defaults to 0.5): weight of the mixed -> mixed term (official `/ 2.0`).
        symmetric (`bool`, defaults to `False`): False is the official loss (original queries from view 1 and mixed
            queries from view 2 only). True averages it with the same loss with the views swapped (MoCo v3's
            symmetrisation; 4 student and 4 teacher forwards per step instead of 2 and 3).
        moco_vit_init (`bool`, defaults to `True`): initialise a timm ViT backbone as the official code (MoCo v3's ViT
            init: xavier-uniform Linear layers, the qkv matrix as three separate xavier blocks, zero biases,
            xavier-uniform patch embedding, cls token N(0, 1e-6)). False keeps the package's generic init.
        views (`list[str]`, defaults to `["byol_blur", "byol_solarize"]`): augmentation preset of each of the two
            views (`hf_contrastive.data.VIEW_KINDS`): the official pair (BYOL's: saturation 0.2, bicubic crops, blur
            p=1.0 on the first view, blur p=0.1 and solarize p=0.2 on the second).
    """

    model_type = "patchmix"

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        backbone_kwargs: dict | None = None,
        small_image_stem: bool = False,
        distributed_batchnorm: str = "sync",
        ema_momentum_schedule: str = "cosine",
        projection_hidden_size: int = 4096,
        projection_dim: int = 256,
        projection_layers: int = 3,
        prediction_layers: int = 2,
        tau: float = 0.2,
        ema_momentum: float = 0.996,
        mix_num: int = 2,
        mix_patch_size: int | None = None,
        mixed_to_original_weight: float = 0.5,
        mixed_to_mixed_weight: float = 0.5,
        symmetric: bool = False,
        moco_vit_init: bool = True,
        views: list | None = None,
        **kwargs,
    ):
        if backbone_kwargs is None and backbone == DEFAULT_BACKBONE:
            backbone_kwargs = dict(DEFAULT_BACKBONE_KWARGS)
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.projection_layers = projection_layers
        self.prediction_layers = prediction_layers
        self.tau = tau
        self.ema_momentum = ema_momentum
        self.mix_num = mix_num
        self.mix_patch_size = mix_patch_size
        self.mixed_to_original_weight = mixed_to_original_weight
        self.mixed_to_mixed_weight = mixed_to_mixed_weight
        self.symmetric = symmetric
        self.moco_vit_init = moco_vit_init
        self.views = list(views) if views is not None else ["byol_blur", "byol_solarize"]
        super().__init__(backbone=backbone, backbone_kwargs=backbone_kwargs, small_image_stem=small_image_stem,
                         distributed_batchnorm=distributed_batchnorm, ema_momentum_schedule=ema_momentum_schedule,
                         **kwargs)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_sizes("projection_hidden_size", "projection_dim", "projection_layers", "prediction_layers")
        self.check_positive("tau")
        self.check_momentum("ema_momentum")
        if self.mix_num < 1:
            raise ValueError(f"mix_num must be >= 1 (1: no mixing), got {self.mix_num}.")
        if self.mix_patch_size is not None and self.mix_patch_size < 1:
            raise ValueError(f"mix_patch_size must be >= 1 or None (the ViT's patch size), got {self.mix_patch_size}.")
        self.check_non_negative("mixed_to_original_weight", "mixed_to_mixed_weight")
        if self.bn_splits != 1:
            # The only BatchNorms are the heads' BatchNorm1d (global with distributed_batchnorm='sync', as the
            # official SyncBN); SplitBatchNorm2d and shuffle-BN belong to the CNN protocol.
            raise ValueError(f"PatchMix does not use split BatchNorm: bn_splits must be 1, got {self.bn_splits}.")
        self.check_views("PatchMix", 2)
