"""Base configuration shared by every contrastive method.

This file is part of the Hub boundary: it imports only transformers and the
standard library, so ``save_pretrained`` can ship it as remote code.
"""

from __future__ import annotations

import inspect
import types
import typing

from transformers import PretrainedConfig

# Fields of ``PretrainedConfig`` itself that are not ours to validate.
_BASE_FIELDS = {"self", "kwargs"}


class ContrastiveConfig(PretrainedConfig):
    r"""Backbone settings shared by every method (the method's config adds its own hyper-parameters).

    Args:
        backbone (`str`, defaults to `"resnet18"`):
            A timm model name (see `timm.list_models()`). It is always built from scratch, never downloaded.
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model`, e.g. `{"img_size": 32, "patch_size": 4}` for a ViT.
        small_image_stem (`bool`, defaults to `True`):
            Replace a ResNet's 7x7 stride-2 first conv with a 3x3 stride-1 conv (no bias), as in the CIFAR
            protocol. Only for timm models with `conv1`/`maxpool` (ResNets).
        stem_max_pool (`bool`, defaults to `False`):
            Keep the stem max-pool when `small_image_stem` is on: off for 32 px inputs, on for 64 px inputs.
        image_size (`int`, defaults to 32):
            Side of the square training crops, and of the evaluation images unless `eval_image_size` is set.
        eval_image_size (`int`, *optional*):
            Side the evaluation images are resized to (kNN monitor, exported image processor, linear-probe test set)
            when it differs from `image_size`: the STL-10 recipes train on 64 px crops and evaluate the native 96 px
            images, as the reference code does (a globally pooled CNN takes both).
        num_channels (`int`, defaults to 3):
            Input channels.
        bn_splits (`int`, defaults to 1):
            Split every BatchNorm of the backbone into this many groups during training, simulating multi-GPU BN
            on one device (the reference code uses 8). The per-device batch must be divisible by it.
        distributed_batchnorm (`str`, defaults to `"local"`):
            BatchNorm statistics when training with several processes. `"local"`: each process normalises its own
            per-device batch (DDP's default; with `bn_splits` it is further split, as on one GPU). `"sync"`: every
            BatchNorm (student, teachers, heads) normalises with the statistics of the global batch across
            processes: the multi-process counterpart of the reference code's SplitBatchNorm + shuffle-BN, and the
            setting under which N processes compute what one process with the global batch computes.
            Needs `bn_splits: 1`. The training loop applies it (`torch.nn.SyncBatchNorm` on GPUs, an equivalent
            all-reduce BatchNorm on CPU); one process is unaffected.
        stack_views (`bool`, defaults to `True`):
            Training: views of one shape go through a backbone in one call (stacked) rather than one call per view,
            with every BatchNorm normalising each view on its own, so losses and gradients are unchanged and a GPU
            step launches far fewer kernels. Differs only in the BatchNorm running statistics: one update per call
            with the views' mean statistics instead of one update per view. `False` gives one call per view.
        ema_momentum_schedule (`str`, defaults to `"constant"`):
            Methods with an EMA teacher: `"constant"` keeps the method's `ema_momentum`; `"cosine"` raises it to 1
            over training (BYOL / MoCo v3: `1 - (1 - m) (cos(pi t / T) + 1) / 2`). Ignored by methods without a
            teacher.
        hidden_size (`int`, *optional*):
            Pooled feature size of the backbone. Filled in when the model is built.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        backbone_kwargs: dict | None = None,
        small_image_stem: bool = True,
        stem_max_pool: bool = False,
        image_size: int = 32,
        eval_image_size: int | None = None,
        num_channels: int = 3,
        bn_splits: int = 1,
        distributed_batchnorm: str = "local",
        stack_views: bool = True,
        ema_momentum_schedule: str = "constant",
        hidden_size: int | None = None,
        **kwargs,
    ):
        self.backbone = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.small_image_stem = small_image_stem
        self.stem_max_pool = stem_max_pool
        self.image_size = image_size
        self.eval_image_size = eval_image_size
        self.num_channels = num_channels
        self.bn_splits = bn_splits
        self.distributed_batchnorm = distributed_batchnorm
        self.stack_views = stack_views
        self.ema_momentum_schedule = ema_momentum_schedule
        self.hidden_size = hidden_size
        super().__init__(**kwargs)
        self.validate_fields()

    @property
    def evaluation_image_size(self) -> int:
        """Side of the evaluation images: ``eval_image_size``, else ``image_size``."""
        return self.eval_image_size or self.image_size

    def validate_fields(self) -> None:
        """Check every field declared in the ``__init__`` signatures against its type annotation.

        Raises a ``TypeError`` naming the field, the expected type and the value, so that a typo in a YAML recipe
        (``queue_size: "4096"``) fails at start-up instead of deep inside training.
        """
        for klass in type(self).__mro__:
            if klass is PretrainedConfig or not issubclass(klass, ContrastiveConfig):
                continue
            hints = typing.get_type_hints(klass.__init__)
            for name in inspect.signature(klass.__init__).parameters:
                if name in _BASE_FIELDS or name not in hints:
                    continue
                value = getattr(self, name)
                if not _matches(value, hints[name]):
                    raise TypeError(
                        f"{type(self).__name__}.{name} must be {_describe(hints[name])}, got {value!r} "
                        f"({type(value).__name__}). Fix the value in your recipe or --config_overrides."
                    )
        if self.image_size <= 0 or self.num_channels <= 0 or self.bn_splits <= 0:
            raise ValueError("image_size, num_channels and bn_splits must be positive integers.")
        if self.eval_image_size is not None and self.eval_image_size <= 0:
            raise ValueError(f"eval_image_size must be a positive integer or null, got {self.eval_image_size}.")
        if self.distributed_batchnorm not in ("local", "sync"):
            raise ValueError(f"distributed_batchnorm must be 'local' or 'sync', got {self.distributed_batchnorm!r}.")
        if self.ema_momentum_schedule not in ("constant", "cosine"):
            raise ValueError(f"ema_momentum_schedule must be 'constant' or 'cosine', got {self.ema_momentum_schedule!r}.")
        if self.distributed_batchnorm == "sync" and self.bn_splits != 1:
            raise ValueError(
                f"distributed_batchnorm='sync' takes the statistics of the global batch; bn_splits={self.bn_splits} "
                "simulates per-device statistics on one device instead. Use one of them (set bn_splits: 1)."
            )

    # Range checks shared by the methods' ``validate_fields``: one field per message, worded the same everywhere.

    def check_sizes(self, *names: str) -> None:
        """Each named field (a head width, a queue length) must be >= 1."""
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")

    def check_positive(self, *names: str) -> None:
        """Each named field (a temperature, a sharpness) must be > 0."""
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")

    def check_non_negative(self, *names: str) -> None:
        """Each named field (a loss weight, a count that may be switched off with 0) must be >= 0."""
        for name in names:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")

    def check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        """The named field (a variant of the method) must be one of ``choices``."""
        if getattr(self, name) not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}.")

    def check_momentum(self, *names: str) -> None:
        """Each named field (an EMA momentum) must be in [0, 1): 1 would freeze the teacher."""
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")

    def check_views(self, method: str, count: int, roles: str = "", presets: tuple[str, ...] | None = None) -> None:
        """``views`` must hold exactly ``count`` entries and, when ``presets`` is given, only those view kinds."""
        if len(self.views) != count:
            roles = f" ({roles})" if roles else ""
            raise ValueError(
                f"{method} reads exactly {_NUMBER_WORDS.get(count, count)} views{roles}, got views={self.views}."
            )
        if presets is not None:
            self.check_view_presets(presets)

    def check_view_presets(self, presets: tuple[str, ...]) -> None:
        """Every entry of ``views`` must be one of ``presets``."""
        unknown = [kind for kind in self.views if kind not in presets]
        if unknown:
            raise ValueError(f"views must be presets from {list(presets)}, got {unknown} in {self.views}.")


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


def _matches(value, annotation) -> bool:
    """isinstance for the simple annotations used by our configs (int, float, bool, str, list, dict, Optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is not None:
        annotation = origin
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe(annotation) -> str:
    args = typing.get_args(annotation)
    if args:
        return " or ".join(_describe(arg) for arg in args)
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))
