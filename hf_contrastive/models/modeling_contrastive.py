"""Building blocks shared by every method: backbone, heads, queue, EMA and the base model classes.

Hub boundary: imports only torch, timm, transformers and siblings, so that ``save_pretrained`` can copy this file
next to the weights as remote code.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.utils import ModelOutput

from .configuration_contrastive import ContrastiveConfig

# How many submodules, parameters and buffers have been registered anywhere in this process (setattr, add_module,
# convert_sync_batchnorm, load_state_dict(assign=True), ...), plus every move or cast of a split norm (which gives it
# new buffers). A list made by walking a module tree, or of a split norm's tensors, stays valid while this count is
# unchanged, so a training step need not walk its backbones again (`ContrastiveModel.batch_norms`).
_module_registrations = 0


def _count_registration(module: nn.Module, name: str, value) -> None:
    global _module_registrations
    _module_registrations += 1


torch.nn.modules.module.register_module_module_registration_hook(_count_registration)
torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)
torch.nn.modules.module.register_module_buffer_registration_hook(_count_registration)


def _set_call_state(module: nn.Module, name: str, value) -> None:
    """Per-call state of a module (neither parameter, buffer nor submodule), set straight into its ``__dict__``:
    ``nn.Module.__setattr__``'s checks cost more than the rest of a prepared batch norm call."""
    module.__dict__[name] = value


# ----------------------------------------------------------------------------- backbone


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that, in training, normalises ``num_splits`` equal groups of the batch separately.

    Simulates the per-GPU statistics of multi-GPU training on one device (MoCo's CIFAR demo, used by the MNN/MSVQ
    reference code): split ``j`` holds rows ``j, j + num_splits, ...`` of the batch, normalised with its own biased
    statistics. Parameters and buffers have the plain BatchNorm2d names, so checkpoints stay interchangeable; in eval
    mode it is exactly BatchNorm2d.

    Stacked views (`ContrastiveModel.encode_views`): with ``view_groups = V`` the batch holds ``V`` views interleaved
    (row ``i * V + v`` is image ``i`` of view ``v``) and every (split, view) pair is normalised on its own, so one
    call equals ``V`` calls of one view each in outputs and gradients. The running statistics then get one update per
    call with the mean over the views' statistics (instead of one update per view). With ``num_splits = 1`` and
    ``view_groups = 1`` a training call is plain BatchNorm2d.

    Running statistics: each split keeps its own (``split_running_mean`` / ``split_running_var``, ``[num_splits *
    C]``, not saved), updated inside the batch-norm kernel. Through `ContrastiveModel` the weight and bias repeated
    per group (and, for stacked views, the statistics expanded per view) are made for all norms of the backbone at
    once (`prepare_split_calls`), so a training call costs about the launches of a plain BatchNorm.
    ``running_mean`` / ``running_var`` are their mean over the splits, written whenever they are read:
    ``state_dict()`` (hence ``save_pretrained`` and checkpoints), an eval-mode call, or `sync_running_stats`. Both
    updates are linear, so this equals averaging after every step (the reference code's update) up to rounding.
    Loading a state dict (or ``from_pretrained``) starts every split from the loaded statistics. For a bit-exact
    resume the per-split statistics travel with the training checkpoint (`split_batchnorm_state`).
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits
        # How many views a stacked batch holds; set by ContrastiveModel.encode_views for one call.
        self.view_groups = 1
        # (weight, bias, running mean, running var) for one training call, made by `prepare_split_calls` for all of a
        # backbone's norms at once, or None: made here.
        self.prepared_call: tuple[torch.Tensor, ...] | None = None
        self.register_buffer("split_running_mean", self.running_mean.repeat(num_splits), persistent=False)
        self.register_buffer("split_running_var", self.running_var.repeat(num_splits), persistent=False)
        # True once a training call has moved the split statistics past running_mean/var.
        self.splits_ahead = False
        self.register_state_dict_pre_hook(lambda module, prefix, keep_vars: module.sync_running_stats())
        self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.reset_split_stats())

    @torch.no_grad()
    def sync_running_stats(self) -> None:
        """Write the mean over splits of the split statistics into ``running_mean`` / ``running_var``."""
        if self.splits_ahead:
            torch.mean(self.split_running_mean.view(self.num_splits, -1), dim=0, out=self.running_mean)
            torch.mean(self.split_running_var.view(self.num_splits, -1), dim=0, out=self.running_var)
            self.splits_ahead = False

    @torch.no_grad()
    def reset_split_stats(self) -> None:
        """Start every split from ``running_mean`` / ``running_var`` (after they were loaded or reset)."""
        self.split_running_mean.copy_(self.running_mean.repeat(self.num_splits))
        self.split_running_var.copy_(self.running_var.repeat(self.num_splits))
        self.splits_ahead = False

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if hasattr(self, "split_running_mean"):  # nn.BatchNorm2d.__init__ calls this before the buffers exist
            self.reset_split_stats()

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        _count_registration(self, "", None)  # .to() / .double() give the buffers (maybe the parameters) new tensors
        return module

    def split_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The buffers holding the per-split running mean and variance ``[num_splits * C]`` (with one split:
        ``running_mean`` / ``running_var`` themselves)."""
        if self.num_splits == 1:
            return self.running_mean, self.running_var
        return self.split_running_mean, self.split_running_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits, views = self.num_splits, self.view_groups
        groups = splits * views
        if not self.training or groups == 1:
            self.sync_running_stats()
            return super().forward(x)
        batch, channels, height, width = x.shape
        if batch % groups:
            raise ValueError(
                f"bn_splits={splits} needs a per-device batch divisible by it, got {batch // views}. "
                "Change --per_device_train_batch_size or bn_splits."
            )
        prepared = self.prepared_call
        if prepared is None:  # alone: what `prepare_split_calls` does for all norms at once, for this one
            self.num_batches_tracked.add_(1)
            weight, bias = self.weight.repeat(groups), self.bias.repeat(groups)
            split_mean, split_var = self.split_stats()
            # Every (split, view) group starts from its split's statistics; the views are averaged back below.
            running_mean = split_mean.view(splits, 1, channels).expand(splits, views, channels).reshape(-1)
            running_var = split_var.view(splits, 1, channels).expand(splits, views, channels).reshape(-1)
        else:
            weight, bias, running_mean, running_var = prepared
        # Groups become channel groups of one (batch / groups, channels x groups) batch: row n * groups + g is in group
        # g. That merge is a view of a contiguous tensor but needs a copy of a channels-last one (--channels_last),
        # whose layout is restored after.
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        # torch.batch_norm, not F.batch_norm, whose Python checks add about 3 us a call; the one that matters is here.
        if batch == groups and height * width == 1:
            raise ValueError(f"bn_splits={splits} leaves one value per channel in each split of a {batch // views}-image "
                             "batch at a 1x1 feature map: use a larger batch or image, or fewer bn_splits.")
        out = torch.batch_norm(x.reshape(-1, channels * groups, height, width), weight, bias, running_mean, running_var,
                               True, self.momentum, self.eps, torch.backends.cudnn.enabled)
        if prepared is None and views > 1:
            with torch.no_grad():
                torch.mean(running_mean.view(splits, views, channels), dim=1, out=split_mean.view(splits, channels))
                torch.mean(running_var.view(splits, views, channels), dim=1, out=split_var.view(splits, channels))
        # Not a view of the batch-norm output: the in-place ReLU that follows would make autograd rebuild the base
        # in backward (clone, zeros and copies on every call).
        out = torch.ops.aten._unsafe_view(out, (batch, channels, height, width))
        if splits > 1 and not self.splits_ahead:
            self.splits_ahead = True
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out


@functools.lru_cache(maxsize=32)
def _repeat_per_group(sizes: tuple[tuple[int, int], ...], device: torch.device) -> tuple[torch.Tensor, tuple[int, ...]]:
    """For norms of ``(channels, groups)`` ``sizes``: the index into ``cat(weight_0, bias_0, weight_1, ...)`` that
    repeats every weight and bias ``groups`` times (``w.repeat(groups)`` each), and the length of each repeated
    piece. Made once per backbone layout and device: a step then makes no index."""
    pieces, lengths, offset = [], [], 0
    for channels, groups in sizes:
        for _ in ("weight", "bias"):
            pieces.append(torch.arange(offset, offset + channels, device=device).repeat(groups))
            lengths.append(channels * groups)
            offset += channels
    return torch.cat(pieces), tuple(lengths)  # cached: nothing the caller can change


@dataclass
class SplitNorms:
    """Split norms and the tensors a training call reads from them, listed once (`SplitNorms.of`): reading a
    module's parameters and buffers one attribute at a time costs more host time than the launches of its prepared
    batch norm. Valid while the module tree and its tensors are unchanged (`ContrastiveModel.batch_norms` keeps one
    per backbone)."""

    norms: list[SplitBatchNorm2d]
    affine: list[torch.Tensor]  # weight and bias of each norm: weight_0, bias_0, weight_1, ...
    counters: list[torch.Tensor]  # num_batches_tracked of each norm
    stats: list[tuple[torch.Tensor, torch.Tensor]]  # split_stats() of each norm

    @classmethod
    def of(cls, norms: Iterable[SplitBatchNorm2d]) -> SplitNorms:
        norms = list(norms)
        return cls(norms, [p for norm in norms for p in (norm.weight, norm.bias)],
                   [norm.num_batches_tracked for norm in norms], [norm.split_stats() for norm in norms])


def prepare_split_calls(norms: SplitNorms) -> list:
    """Before one backbone call in training: what each split norm's forward would make for itself (its weight and
    bias repeated per group, its statistics expanded per view of a stacked batch, ``num_batches_tracked + 1``), made
    for all of ``norms`` together, as ``norm.prepared_call``: one gather repeats every norm's weight and bias, and
    stacked views' statistics take a few launches per channel count. A ResNet call then costs a few launches for its
    norms besides the batch norms themselves, instead of four to eight per norm; values, gradients and statistics
    are those of the per-norm path. Returns what `finish_split_calls` needs after the call."""
    def active(norm: SplitBatchNorm2d) -> bool:
        return norm.training and norm.num_splits * norm.view_groups > 1

    listed = norms if all(active(norm) for norm in norms.norms) else SplitNorms.of(filter(active, norms.norms))
    if not listed.norms:
        return []
    with torch.no_grad():
        torch._foreach_add_(listed.counters, 1)
    sizes, same_shape = [], {}  # (channels, groups) per norm; positions of the norms with stacked views, by shape
    for position, norm in enumerate(listed.norms):
        sizes.append((norm.num_features, norm.num_splits * norm.view_groups))
        if norm.view_groups > 1:
            same_shape.setdefault((norm.num_features, norm.num_splits, norm.view_groups), []).append(position)
    index, lengths = _repeat_per_group(tuple(sizes), listed.affine[0].device)
    affine = torch.cat(listed.affine).index_select(0, index).split(lengths)
    stats = list(listed.stats)  # views == 1: the split statistics themselves are updated by the batch norm
    expanded_stats = []
    for (channels, splits, views), positions in same_shape.items():
        # [2K, splits, views, C]: every (split, view) group starts from its split's statistics
        with torch.no_grad():
            split_stats = torch.stack([buffer for position in positions for buffer in listed.stats[position]])
            expanded = split_stats.view(2 * len(positions), splits, 1, channels).expand(-1, -1, views, -1).contiguous()
        rows = expanded.view(2 * len(positions), -1).unbind()
        for order, position in enumerate(positions):
            stats[position] = rows[2 * order: 2 * order + 2]
        expanded_stats.append(([listed.stats[position] for position in positions], expanded))
    for position, norm in enumerate(listed.norms):
        _set_call_state(norm, "prepared_call", (affine[2 * position], affine[2 * position + 1], *stats[position]))
    return expanded_stats


@torch.no_grad()
def finish_split_calls(norms: SplitNorms, expanded_stats: list) -> None:
    """After the call `prepare_split_calls` prepared: the stacked views' statistics averaged back into their splits
    (one mean and one copy per channel count), and the prepared tensors released."""
    for norm in norms.norms:
        _set_call_state(norm, "prepared_call", None)
    for split_stats, expanded in expanded_stats:
        averaged = expanded.mean(dim=2).view(expanded.shape[0], -1).unbind()
        torch._foreach_copy_([buffer for pair in split_stats for buffer in pair], list(averaged))


def split_batchnorm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The per-split running statistics of every `SplitBatchNorm2d` in ``model`` (not part of its state dict), keyed
    ``{module name}.split_running_mean`` / ``.split_running_var``: what a training checkpoint needs besides the state
    dict for a bit-exact resume."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, SplitBatchNorm2d) and module.num_splits > 1:
            module.sync_running_stats()
            state[f"{name}.split_running_mean"] = module.split_running_mean
            state[f"{name}.split_running_var"] = module.split_running_var
    return state


@torch.no_grad()
def load_split_batchnorm_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore what `split_batchnorm_state` returned (after the model's state dict was loaded)."""
    modules = {name: module for name, module in model.named_modules()
               if isinstance(module, SplitBatchNorm2d) and module.num_splits > 1}
    expected = {f"{name}.{buffer}" for name in modules for buffer in ("split_running_mean", "split_running_var")}
    if set(state) != expected:
        raise ValueError(f"Split BatchNorm state does not fit this model: {len(set(state) ^ expected)} names differ, "
                         f"e.g. {sorted(set(state) ^ expected)[:3]}.")
    for name, module in modules.items():
        module.split_running_mean.copy_(state[f"{name}.split_running_mean"])
        module.split_running_var.copy_(state[f"{name}.split_running_var"])
        module.splits_ahead = False  # running_mean/var, loaded with the state dict, are the mean of these


def _use_split_batchnorm(module: nn.Module, num_splits: int) -> None:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            split = SplitBatchNorm2d(child.num_features, num_splits, eps=child.eps, momentum=child.momentum)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            _use_split_batchnorm(child, num_splits)


class SmallAlexNet(nn.Module):
    """The small AlexNet of CACR's official small-scale experiments (JegZheng/CACR-SSL, after Wang & Isola 2020), up
    to fc7: the layers its linear evaluation reads (``layer_index=-2``); fc8 (Linear to the embedding, then L2
    normalisation) is the method's projector (`CACRConfig.projection_layers = 1`).

    Five 3x3 conv blocks (no bias) with BatchNorm and ReLU, 96-192-384-384-192 channels, a 3x3 stride-2 max-pool
    after blocks 1, 2 and 5, then fc6 and fc7: Linear (no bias, 4096), BatchNorm1d, ReLU. Weights N(0, 0.02) (each
    layer's ``init_std``), norms identity, as the official ``init_weights_``. The flattened conv output is
    192 x 3 x 3 at 32 px and 192 x 7 x 7 at 64 px (the official CIFAR and STL-10 encoders); it follows
    ``image_size``, so the network takes only that input side.

    The timm-style interface ContrastiveModel reads: ``num_features`` (4096), ``forward_features`` (the conv map
    ``[B, 192, s, s]``) and ``forward_head(map, pre_logits=True)`` (fc7's output ``[B, 4096]``).
    """

    num_features = 4096

    def __init__(self, in_channels: int = 3, image_size: int = 32):
        super().__init__()

        def conv_block(cin: int, cout: int, pool: bool) -> nn.Sequential:
            layers = [nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(cout),
                      nn.ReLU(inplace=True)]
            return nn.Sequential(*layers, nn.MaxPool2d(3, 2)) if pool else nn.Sequential(*layers)

        self.features = nn.Sequential(conv_block(in_channels, 96, True), conv_block(96, 192, True),
                                      conv_block(192, 384, False), conv_block(384, 384, False),
                                      conv_block(384, 192, True))
        side = image_size
        for _ in range(3):  # the three 3x3 stride-2 max-pools (no padding)
            side = (side - 3) // 2 + 1
        if side < 1:
            raise ValueError(f"small_alexnet needs image_size >= 15 (three 3x3 stride-2 max-pools), got {image_size}.")
        self.fc6 = nn.Sequential(nn.Linear(192 * side * side, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(inplace=True))
        self.fc7 = nn.Sequential(nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(inplace=True))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                # Read by ContrastivePreTrainedModel._init_weights, which transformers calls on the layers themselves.
                module.init_std = 0.02
                nn.init.normal_(module.weight, 0.0, module.init_std)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.features(pixel_values)

    def forward_head(self, feature_map: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return self.fc7(self.fc6(feature_map.flatten(1)))


#: Backbones that are not timm models: name -> builder from the config.
NON_TIMM_BACKBONES = {"small_alexnet": lambda config: SmallAlexNet(config.num_channels, config.image_size)}


def build_backbone(config: ContrastiveConfig) -> nn.Module:
    """A timm model without classifier (``num_classes=0``), built from scratch, with the optional small-image stem;
    or one of `NON_TIMM_BACKBONES` (``small_alexnet``)."""
    if config.backbone in NON_TIMM_BACKBONES:
        if config.small_image_stem:
            raise ValueError(f"{config.backbone} has its own small-image layers: set small_image_stem: false.")
        backbone = NON_TIMM_BACKBONES[config.backbone](config)
        _use_split_batchnorm(backbone, config.bn_splits)
        return backbone
    if not timm.is_model(config.backbone):
        close = timm.list_models(f"*{config.backbone.split('_')[0]}*")[:10]
        raise ValueError(
            f"Unknown backbone {config.backbone!r}: not a timm model name. Close matches: {close}. "
            "See timm.list_models() for all names."
        )
    backbone = timm.create_model(
        config.backbone, pretrained=False, num_classes=0, in_chans=config.num_channels, **config.backbone_kwargs
    )
    if config.small_image_stem:
        if not (isinstance(getattr(backbone, "conv1", None), nn.Conv2d) and hasattr(backbone, "maxpool")):
            raise ValueError(
                f"small_image_stem=True needs a ResNet-style backbone with conv1/maxpool; {config.backbone!r} has none. "
                "Set small_image_stem: false (for a ViT, pass backbone_kwargs img_size/patch_size instead)."
            )
        out_channels = backbone.conv1.out_channels
        backbone.conv1 = nn.Conv2d(config.num_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        if not config.stem_max_pool:
            backbone.maxpool = nn.Identity()
    # Also with bn_splits = 1: SplitBatchNorm2d is then plain BatchNorm2d per call, and lets stacked views keep their
    # own statistics (ContrastiveModel.encode_views).
    _use_split_batchnorm(backbone, config.bn_splits)
    return backbone


# ----------------------------------------------------------------------------- heads, queue, EMA


class MLPHead(nn.Sequential):
    """``Linear -> [BN] -> ReLU -> ... -> Linear [-> BN]``: the projector/predictor of the methods.

    ``num_layers`` Linear layers (2: one hidden layer; 1: a single Linear), every hidden one followed by [BN] and
    ReLU.
    ``batch_norm=True`` gives the BYOL/MNN layout (hidden Linears without bias); ``False`` the MoCo v2 / MSVQ layout.
    ``output_batch_norm=True`` ends with a BatchNorm1d after the last Linear (then without bias), as the projectors of
    NNCLR and of the MNN benchmark's SimCLR. The module indices of the default (2 layers, no output BN) are
    ``0 Linear, 1 BN, 2 ReLU, 3 Linear``, as they have always been, so saved weights keep their names.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, batch_norm: bool = True,
                 num_layers: int = 2, output_batch_norm: bool = False):
        if num_layers < 1:
            raise ValueError(f"An MLP head has at least 1 Linear layer, got num_layers={num_layers}.")
        layers = []
        for index in range(num_layers - 1):
            layers.append(nn.Linear(in_features if index == 0 else hidden_features, hidden_features, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_features))
            layers.append(nn.ReLU(inplace=True))
        last_in = in_features if num_layers == 1 else hidden_features
        layers.append(nn.Linear(last_in, out_features, bias=not output_batch_norm))
        if output_batch_norm:
            layers.append(nn.BatchNorm1d(out_features))
        super().__init__(*layers)


class FeatureQueue(nn.Module):
    """A FIFO queue of ``size`` feature vectors of dimension ``dim``, stored raw (not normalised).

    Both buffers are persistent, so the queue travels with ``state_dict``, ``save_pretrained`` and
    ``accelerator.save_state``. Keys are written at ``pointer`` and wrap around the end.
    Multi-process training must pass the keys gathered from all processes, so every process holds the same queue.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.size, self.dim = size, dim
        self.register_buffer("features", torch.empty(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random unit vectors (as the MSF/MNN reference code), pointer at 0."""
        self.features.copy_(F.normalize(torch.randn(self.size, self.dim, device=self.features.device), dim=1))
        self.pointer.zero_()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` ``[N, dim]`` (N <= size) at the pointer, oldest entries first out."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be [N, {self.dim}], got {tuple(keys.shape)}.")
        if keys.shape[0] > self.size:
            raise ValueError(
                f"Cannot enqueue {keys.shape[0]} keys into a queue of {self.size}: the keys of one step "
                "(global batch x keys per image) must not exceed queue_size. Raise queue_size or lower the batch."
            )
        positions = (self.pointer + torch.arange(keys.shape[0], device=self.pointer.device)) % self.size
        self.features.index_copy_(0, positions, keys.detach().to(self.features.dtype))
        self.pointer.copy_((self.pointer + keys.shape[0]) % self.size)


def nearest_neighbors(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` raw rows of ``bank`` ``[K, D]`` with the highest cosine similarity to each query ``[B, D]``.

    Returns ``[B, k, D]``, most similar first. Pass the queue snapshot from before this step's enqueue.
    """
    similarity = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T  # [B, K]
    indices = similarity.topk(k, dim=1).indices  # [B, k]
    return bank[indices]


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients over processes and returns this process's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.batch = torch.distributed.get_rank(), tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad_output = grad_output.contiguous()
        torch.distributed.all_reduce(grad_output)
        return grad_output[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` ``[B, ...]`` from every process in rank order, keeping gradients.

    The backward pass sums the incoming gradients over processes and returns each process its own slice, so a loss
    computed identically on every process from gathered tensors, with DDP averaging, gives the exact gradient of
    the global-batch loss (tests/test_distributed.py). The identity when not distributed. Every process must pass
    the same batch size.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    if torch.distributed.get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def forward_shuffled(module_fn, pixel_values: torch.Tensor, shuffle: bool) -> torch.Tensor:
    """``module_fn(pixel_values)`` with the batch order shuffled and restored (in-process shuffle-BN).

    With split BatchNorm a teacher that sees the batch in another order than the student never normalises a sample
    together with the same neighbours as its other view, as in the reference code. ``shuffle=False`` is a plain call.
    """
    if not shuffle:
        return module_fn(pixel_values)
    order = torch.randperm(pixel_values.shape[0], device=pixel_values.device)
    return module_fn(pixel_values[order])[torch.argsort(order)]


def embed_views(encoder: ContrastiveModel, heads: Sequence[nn.Module], views: list[torch.Tensor],
                shuffle: bool = False) -> list[torch.Tensor]:
    """``heads[-1](...heads[0](encoder(x).pooler_output))`` for every view ``x``: the encoder in as few calls as
    possible (`ContrastiveModel.encode_views`), the heads once per view (their BatchNorm1d normalises one view).

    ``shuffle`` (shuffle-BN, for teachers with split BatchNorm): each view's batch order is shuffled before the
    encoder, with its own permutation drawn in view order, and restored after it, as `forward_shuffled` does for one
    call.
    """
    if shuffle:
        orders = [torch.randperm(x.shape[0], device=x.device) for x in views]
        pooled = encoder.encode_views([x[order] for x, order in zip(views, orders, strict=True)])
        # Row order[i] of the output is image i: one scatter undoes the permutation.
        pooled = [p.new_empty(p.shape).index_copy_(0, order, p) for p, order in zip(pooled, orders, strict=True)]
    else:
        pooled = encoder.encode_views(views)
    outputs = []
    for features in pooled:
        for head in heads:
            features = head(features)
        outputs.append(features)
    return outputs


def scheduled_momentum(base: float, progress: float | None, schedule: str) -> float:
    """The EMA momentum at ``progress`` in [0, 1]: ``base`` (constant), or BYOL's cosine increase from ``base`` to 1."""
    if schedule == "constant" or progress is None:
        return base
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1.0) / 2.0


@torch.no_grad()
def ema_update_(teacher: nn.Module | Sequence[torch.Tensor], student: nn.Module | Sequence[torch.Tensor],
                momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter (one fused call, no
    gradient): two modules with the same parameters, or their parameter lists."""
    teacher_params = list(teacher.parameters()) if isinstance(teacher, nn.Module) else list(teacher)
    student_params = list(student.parameters()) if isinstance(student, nn.Module) else list(student)
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)


# ----------------------------------------------------------------------------- outputs


@dataclass
class ContrastiveEncoderOutput(ModelOutput):
    """Encoder output.

    Args:
        last_hidden_state: ``[B, C, H, W]`` feature map (CNNs) or ``[B, N, C]`` tokens (ViTs).
        pooler_output: ``[B, C]`` globally pooled features (not normalised): the representation.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None


@dataclass
class ContrastivePreTrainingOutput(ModelOutput):
    """Pretraining output.

    Args:
        loss: 0-d training loss.
        queue_keys: queue name -> ``[B, D]`` keys this step wants enqueued. The training loop gathers them across
            processes and calls ``model.enqueue(gathered)`` so every process holds the same queue.
    """

    loss: torch.FloatTensor | None = None
    queue_keys: dict | None = None


# ----------------------------------------------------------------------------- base classes


class ContrastivePreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading conventions shared by every method.

    ``base_model_prefix = "encoder"``: every pretraining and classification model keeps the encoder it publishes at
    ``self.encoder``, so one checkpoint loads into each class of the family.
    """

    config_class = ContrastiveConfig
    base_model_prefix = "encoder"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False
    # Pretraining state (teachers, heads, queues) is expected to be unused when loading the encoder alone.
    _keys_to_ignore_on_load_unexpected = [r"^teacher_", r"^student_", r"^projector\.", r"^predictor\.", r"^queue"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Weights are safetensors only: a pickle checkpoint (pytorch_model.bin) is refused, never unpickled.
        kwargs.setdefault("use_safetensors", True)
        caller_wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        # A folder whose config.json does not describe its weights (another backbone or size) would otherwise load
        # with the missing encoder weights silently random: refuse. Heads and queues may be absent (AutoModel
        # folders, fresh classifiers).
        missing = sorted(key for key in info.get("missing_keys", ()) if key.startswith(("backbone.", "encoder.")))
        if missing:
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            raise ValueError(
                f"{source}: the weights do not match config.json ({model.config.model_type}, backbone "
                f"{model.config.backbone!r}, backbone_kwargs {model.config.backbone_kwargs}): {len(missing)} encoder "
                f"weights are missing from the checkpoint, e.g. {missing[:3]}. Fix config.json or load the folder "
                "these weights were saved with."
            )
        # transformers rebuilds every loaded weight as a trainable Parameter: freeze the teachers again.
        model.freeze_teachers()
        # transformers assigns the loaded tensors without load_state_dict: start the splits from the loaded statistics.
        for module in model.modules():
            if isinstance(module, SplitBatchNorm2d):
                module.reset_split_stats()
        return (model, info) if caller_wants_info else model

    def freeze_teachers(self) -> None:
        """Teachers (attributes named ``teacher_*``) are updated by EMA, never by gradients."""
        for name, parameter in self.named_parameters():
            if name.startswith("teacher_"):
                parameter.requires_grad_(False)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Replaces transformers' normal(0.02) default: convolutions get He init (torchvision's ResNet init, used by
        # the reference code), linear layers torch's default, norms identity; queues random unit vectors.
        if isinstance(module, (nn.Conv2d, nn.Linear)) and hasattr(module, "init_std"):  # SmallAlexNet: N(0, 0.02)
            nn.init.normal_(module.weight, 0.0, module.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            module.reset_parameters()
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                # nn.init, not in-place tensor methods: transformers 5 makes nn.init skip tensors it loaded, and a
                # module with a buffer outside the checkpoint (SplitBatchNorm2d's splits) comes here after loading.
                nn.init.zeros_(module.running_mean)
                nn.init.ones_(module.running_var)
                nn.init.zeros_(module.num_batches_tracked)
            if isinstance(module, SplitBatchNorm2d):
                module.reset_split_stats()
        elif isinstance(module, FeatureQueue):
            module.reset_parameters()


class ContrastiveForPreTraining(ContrastivePreTrainedModel):
    """Base of every ``...ForPreTraining``: student and EMA teachers, teacher EMA and queue updates.

    A subclass builds its modules in ``__init__`` and declares the rest:

    - ``student_network``: the attribute names of the student network's modules, encoder first, then its heads
      (``("encoder", "projector")`` unless the class says otherwise; attributes set to ``None`` are skipped).
      `student_embeddings` runs it.
    - ``self.add_ema_teacher({"teacher_encoder": "encoder", "teacher_projector": "projector"})``, once per EMA
      teacher, at the place in ``__init__`` where the teacher's modules belong: each teacher module is a deep copy of
      the student module it names (teacher encoder first, then its heads), updated by EMA with momentum
      ``config.ema_momentum`` (or another field: ``momentum=``). `teacher_pairs`, `teacher_embeddings`,
      `init_teachers`, `freeze_teachers` and `momentum_update` follow from these declarations.
    - queues as `FeatureQueue` attributes; then ``self.post_init()``, which also sets every teacher to its student
      and freezes it (`init_teachers`).

    and implements ``forward(views) -> ContrastivePreTrainingOutput`` with `student_embeddings` and
    `teacher_embeddings`. ``self.encoder`` is what is evaluated and published; a method that publishes its EMA
    encoder instead (PatchMix, as MoCo v3) keeps that one at ``self.encoder``, names its student ``student_encoder``
    and declares ``add_ema_teacher({"encoder": "student_encoder", ...})``, which freezes it.
    """

    # The student network's modules, encoder first (see the class docstring).
    student_network: tuple[str, ...] = ("encoder", "projector")
    # Shuffle-BN: each teacher view's batch order is shuffled (and restored) when the backbone splits its BatchNorm
    # (``config.bn_splits > 1``), as MoCo's teachers.
    teacher_shuffle_bn: bool = True

    def __init__(self, config: ContrastiveConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        # One entry per EMA teacher: (teacher module names, student module names, momentum field, index in it).
        self.ema_teachers: list[tuple[tuple[str, ...], tuple[str, ...], str, int | None]] = []
        # (registration count, [(teacher, student, their parameters)]): `_teacher_networks_now`' cache.
        self._teacher_networks: tuple[int, list[tuple[nn.ModuleList, nn.ModuleList, list, list]]] = (-1, [])

    def add_ema_teacher(self, modules: dict[str, str], momentum: str = "ema_momentum", index: int | None = None) -> None:
        """Declare one EMA teacher: ``{teacher module name: student module name}``, the teacher's encoder first.

        Each teacher module is created here as a deep copy of its student module and registered under its name (a
        dotted name such as ``"teacher_encoders.0"`` adds it to an existing container). The momentum is
        ``config.<momentum>``, read at every update (``config.<momentum>[index]`` for a field holding one value per
        teacher, as Multi-network GL's ``ema_momenta``).
        """
        for teacher_name, student_name in modules.items():
            parent_name, _, name = teacher_name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            parent.add_module(name, copy.deepcopy(self.get_submodule(student_name)))
        self.ema_teachers.append((tuple(modules), tuple(modules.values()), momentum, index))

    def post_init(self) -> None:
        """transformers' weight initialisation, then every teacher := its student, frozen (`init_teachers`)."""
        super().post_init()
        self.init_teachers()

    def freeze_teachers(self) -> None:
        """Teachers are updated by EMA, never by gradients: the ``teacher_*`` attributes and every module on the
        teacher side of ``teacher_pairs()``."""
        super().freeze_teachers()
        for teacher, _, _ in self.teacher_pairs():
            teacher.requires_grad_(False)

    # Keys each training image adds to each queue per step (MoCo's symmetric loss enqueues both views: 2).
    queue_keys_per_sample: int = 1

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module, float]]:
        """``(teacher, student, momentum)`` for every EMA teacher declared with `add_ema_teacher`, in declaration
        order (teacher and student as ``nn.ModuleList`` of their modules); empty for methods without one."""
        return [(teacher, student, momentum) for teacher, student, _, _, momentum in self._teacher_networks_now()]

    def _teacher_networks_now(self) -> list[tuple[nn.ModuleList, nn.ModuleList, list, list, float]]:
        """(teacher, student, teacher parameters, student parameters, momentum) per EMA teacher. Everything but the
        momentum is listed again only after a module or parameter was registered somewhere, or the model was moved
        or cast (`_apply`): `momentum_update` runs every step. (Making the module lists registers their members,
        hence the count taken after.)"""
        listed_at, networks = self._teacher_networks
        if listed_at != _module_registrations:
            networks = []
            for teacher_names, student_names, _, _ in self.ema_teachers:
                teacher = nn.ModuleList([self.get_submodule(name) for name in teacher_names])
                student = nn.ModuleList([self.get_submodule(name) for name in student_names])
                networks.append((teacher, student, list(teacher.parameters()), list(student.parameters())))
            self._teacher_networks = (_module_registrations, networks)
        listed = []
        for network, (_, _, field, index) in zip(networks, self.ema_teachers, strict=True):
            momentum = getattr(self.config, field)
            listed.append((*network, momentum if index is None else momentum[index]))
        return listed

    def _apply(self, fn, recurse=True):
        self._teacher_networks = (-1, [])  # .to() / .half() may give the parameters new tensors
        return super()._apply(fn, recurse)

    def student_embeddings(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """The student network's output ``[B, D]`` for each view ``[B, C, H, W]``, with gradients: the modules of
        ``student_network`` in order (`embed_views`: the views of one shape in one encoder call)."""
        encoder, *heads = (getattr(self, name) for name in self.student_network)
        return embed_views(encoder, [head for head in heads if head is not None], views)

    @torch.no_grad()
    def teacher_embeddings(self, views: list[torch.Tensor], teacher: int = 0) -> list[torch.Tensor]:
        """EMA teacher ``teacher``'s output ``[B, D]`` for each view ``[B, C, H, W]``, without gradients: its encoder,
        then its heads (`add_ema_teacher` order), with shuffle-BN when ``config.bn_splits > 1`` (and
        ``teacher_shuffle_bn``)."""
        if teacher >= len(self.ema_teachers):
            raise ValueError(f"{type(self).__name__} has {len(self.ema_teachers)} EMA teacher(s), no teacher {teacher}.")
        encoder, *heads = (self.get_submodule(name) for name in self.ema_teachers[teacher][0])
        return embed_views(encoder, heads, views, shuffle=self.teacher_shuffle_bn and self.config.bn_splits > 1)

    @torch.no_grad()
    def init_teachers(self) -> None:
        """Teacher := student, frozen (BYOL/MoCo initialisation)."""
        for teacher, student, _ in self.teacher_pairs():
            teacher.load_state_dict(student.state_dict())
        self.freeze_teachers()

    @torch.no_grad()
    def momentum_update(self, progress: float | None = None) -> None:
        """One EMA step of every teacher towards its student; call after each optimiser step.

        ``progress`` (optimiser steps done / total, in [0, 1]) is used by ``config.ema_momentum_schedule="cosine"``
        (BYOL, MoCo v3): ``m = 1 - (1 - m_0) (cos(pi progress) + 1) / 2``, rising from ``m_0`` to 1. Without it, or
        with the ``"constant"`` schedule, ``m = m_0``.
        """
        for _, _, teacher_params, student_params, momentum in self._teacher_networks_now():
            ema_update_(teacher_params, student_params,
                        scheduled_momentum(momentum, progress, self.config.ema_momentum_schedule))

    @torch.no_grad()
    def enqueue(self, queue_keys: dict[str, torch.Tensor]) -> None:
        """Enqueue ``{queue attribute name: keys [N, D]}`` gathered from all processes (see the output's
        ``queue_keys``), so every process holds the same queues."""
        for name, keys in queue_keys.items():
            getattr(self, name).enqueue(keys)


class ContrastiveModel(ContrastivePreTrainedModel):
    """The encoder alone (AutoModel): ``forward(pixel_values)`` -> ``last_hidden_state``, ``pooler_output``."""

    def __init__(self, config: ContrastiveConfig):
        super().__init__(config)
        self.backbone = build_backbone(config)
        config.hidden_size = self.backbone.num_features
        # The backbone's batch norms, its split norms' tensors and the registration count they were listed at.
        self._batch_norms: list[nn.modules.batchnorm._BatchNorm] = []
        self._split_norms = SplitNorms.of([])
        self._batch_norms_listed_at = -1
        self.post_init()

    def batch_norms(self) -> list[nn.modules.batchnorm._BatchNorm]:
        """Every batch norm of the backbone (any kind), in module order. Listed again only after a module, parameter
        or buffer was registered somewhere (a norm swapped for SyncBatchNorm, say) or a split norm was moved or cast:
        a training step makes several encoder calls, and walking a ResNet's ~100 modules costs more host time than
        its prepared norms."""
        self._list_norms()
        return self._batch_norms

    def split_norms(self) -> SplitNorms:
        """The backbone's `SplitBatchNorm2d` norms with their tensors (`SplitNorms`), listed as `batch_norms`."""
        self._list_norms()
        return self._split_norms

    def _list_norms(self) -> None:
        if self._batch_norms_listed_at != _module_registrations:
            self._batch_norms = [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            self._split_norms = SplitNorms.of([m for m in self._batch_norms if isinstance(m, SplitBatchNorm2d)])
            self._batch_norms_listed_at = _module_registrations

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs
    ) -> ContrastiveEncoderOutput | tuple:
        """``pixel_values`` ``[B, C, H, W]`` normalised images -> encoder output (see `ContrastiveEncoderOutput`)."""
        # Split BatchNorm in training: what every norm needs for the call made together (eager launches; a compiled
        # graph fuses the per-norm ops itself).
        split_norms = self.split_norms() if self.training and not torch.compiler.is_compiling() else SplitNorms.of([])
        expanded_stats = prepare_split_calls(split_norms)
        try:
            feature_map = self.backbone.forward_features(pixel_values)
        finally:
            finish_split_calls(split_norms, expanded_stats)
        pooled = self.backbone.forward_head(feature_map, pre_logits=True)
        if return_dict is False:
            return (feature_map, pooled)
        return ContrastiveEncoderOutput(last_hidden_state=feature_map, pooler_output=pooled)

    def encode_views(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """The pooled features ``[B, D]`` of each view: ``[self(x).pooler_output for x in views]``, in fewer calls.

        Views of the same shape go through the backbone as one stacked batch (row ``i * V + v``), one call instead of
        ``V``: on a GPU, where a CIFAR-sized step is bound by kernel launches, that is most of the step. Every
        `SplitBatchNorm2d` normalises each view (and each of its splits) with its own statistics, so outputs and
        gradients equal the per-view calls up to rounding; the BatchNorm running statistics get one update per call
        with the views' mean statistics instead of one per view. A backbone with any other batch-dependent norm
        (SyncBatchNorm, GlobalBatchNorm, timm's BatchNormAct2d) gets one call per view, as does a single view and
        ``config.stack_views = False``.
        """
        norms = self.batch_norms()
        if len(views) < 2 or not self.config.stack_views or not all(isinstance(m, SplitBatchNorm2d) for m in norms):
            return [self(x).pooler_output for x in views]
        same_shape: dict[tuple, list[int]] = {}
        for index, x in enumerate(views):
            same_shape.setdefault((tuple(x.shape), x.dtype, x.device), []).append(index)
        pooled: list[torch.Tensor | None] = [None] * len(views)
        for indices in same_shape.values():
            if len(indices) == 1:
                pooled[indices[0]] = self(views[indices[0]]).pooler_output
                continue
            first = views[indices[0]]
            stacked = torch.stack([views[i] for i in indices], dim=1).flatten(0, 1)
            if not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
                stacked = stacked.contiguous(memory_format=torch.channels_last)  # --channels_last
            for norm in norms:
                _set_call_state(norm, "view_groups", len(indices))
            try:
                features = self(stacked).pooler_output
            finally:
                for norm in norms:
                    _set_call_state(norm, "view_groups", 1)
            for number, index in enumerate(indices):
                pooled[index] = features[number::len(indices)]
        return pooled


class ContrastiveForImageClassification(ContrastivePreTrainedModel):
    """Encoder + linear classifier on the pooled features, for fine-tuning and linear probing."""

    def __init__(self, config: ContrastiveConfig, encoder_class: type[ContrastiveModel] = ContrastiveModel):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = encoder_class(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        """``pixel_values`` ``[B, C, H, W]``, optional ``labels`` ``[B]`` -> logits ``[B, num_labels]`` (+ CE loss)."""
        pooled = self.encoder(pixel_values).pooler_output
        logits = self.classifier(pooled)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return ImageClassifierOutput(loss=loss, logits=logits)
