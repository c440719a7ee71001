"""PatchMix: Inter-Instance Similarity Modeling for Contrastive Learning (arXiv 2306.12243).

Follows the official code (visresearch/patchmix: ``module/mix.py``, ``main_pretrain.py``, ``module/frame``).
Hub boundary: imports only torch, timm, transformers and siblings.
"""

from __future__ import annotations

import math

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .configuration_patchmix import PatchMixConfig
from .losses import patchmix_loss
from .modeling_contrastive import (
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainingOutput,
    all_gather_with_grad,
)

# ----------------------------------------------------------------------------- patch mixing


def draw_mix_groups(num_cells: int, num_mix: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Which image of the mixture each of ``num_cells`` patch cells comes from: ``[num_cells]`` long in
    ``[0, num_mix)`` (0: the image itself, ``g``: its ``g``-th successor in the batch).

    As the official ``PatchMixer``: one uniformly random permutation of the cells (drawn on ``device`` from torch's
    default generator for that device, which checkpoints restore), its first ``num_cells // num_mix`` cells go to
    group 0, the next as many to group 1, and so on; the ``num_cells % num_mix`` left over stay with the image itself.
    One draw is shared by the batch. Everything is created where it is used: no host-to-device copy in a step.
    """
    if not 1 <= num_mix <= num_cells:
        raise ValueError(f"num_mix must be in [1, num_cells={num_cells}], got {num_mix}.")
    per_group = num_cells // num_mix
    ranks = torch.arange(num_cells, device=device)
    groups = torch.empty(num_cells, dtype=torch.long, device=device)
    groups[torch.randperm(num_cells, device=device)] = torch.where(ranks < per_group * num_mix, ranks // per_group, 0)
    return groups


def patch_mix(
    pixel_values: torch.Tensor, groups: torch.Tensor, patch_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the patches of the images of a batch (pure function).

    The images are cut into cells of ``patch_size`` pixels, numbered row-major on the ``H/ph x W/pw`` grid (the
    order of a ViT's patch tokens). Cell ``c`` of mixed image ``i`` is cell ``c`` of image ``(i + groups[c]) % B``:
    a patch keeps its position, so for a ViT whose patches are these cells this equals mixing the patch tokens.

    Args:
        pixel_values: ``[B, C, H, W]``; ``H`` and ``W`` divisible by ``patch_size``.
        groups: ``[H/ph * W/pw]`` long, the source offset of each cell (see `draw_mix_groups`).
        patch_size: ``(ph, pw)``.

    Returns:
        ``mixed`` ``[B, C, H, W]`` and ``shares`` ``[B, B]`` float32: ``shares[i, j]`` is the fraction of the cells of
        mixed image ``i`` taken from image ``j`` (rows sum to 1).
    """
    batch, channels, height, width = pixel_values.shape
    patch_h, patch_w = patch_size
    if height % patch_h or width % patch_w:
        raise ValueError(f"Images of {height}x{width} px cannot be cut into {patch_h}x{patch_w} patches.")
    grid = (height // patch_h, width // patch_w)
    if groups.shape != (grid[0] * grid[1],):
        raise ValueError(f"groups must be [{grid[0] * grid[1]}] (one entry per cell), got {tuple(groups.shape)}.")
    if groups.device != pixel_values.device:  # a silent copy here would be a host sync inside every step
        raise ValueError(f"groups are on {groups.device} but the images on {pixel_values.device}: draw them there "
                         "(draw_mix_groups(..., device=pixel_values.device)).")
    offsets = groups.view(grid).repeat_interleave(patch_h, dim=0).repeat_interleave(patch_w, dim=1)  # [H, W]
    rows = torch.arange(batch, device=pixel_values.device)
    sources = (rows.view(batch, 1, 1) + offsets) % batch  # [B, H, W]
    mixed = torch.gather(pixel_values, 0, sources.unsqueeze(1).expand(batch, channels, height, width))
    cell_sources = (rows.view(batch, 1) + groups.view(1, -1)) % batch  # [B, cells]
    shares = torch.zeros(batch, batch, device=pixel_values.device)
    shares.scatter_add_(1, cell_sources, torch.full(cell_sources.shape, 1.0 / groups.numel(), device=shares.device))
    return mixed, shares


# ----------------------------------------------------------------------------- heads and init


def _moco_mlp(num_layers: int, in_features: int, hidden_features: int, out_features: int) -> nn.Sequential:
    """MoCo v3's MLP as the official PatchMix code builds it: ``Linear(no bias) -> BN -> ReLU`` for every layer but
    the last, then ``Linear(no bias) -> BN(affine=False)`` (official ``last_bn=True`` for projector and predictor)."""
    layers: list[nn.Module] = []
    for index in range(num_layers):
        last = index == num_layers - 1
        width_in = in_features if index == 0 else hidden_features
        width_out = out_features if last else hidden_features
        layers.append(nn.Linear(width_in, width_out, bias=False))
        layers += [nn.BatchNorm1d(width_out, affine=False)] if last else [nn.BatchNorm1d(width_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _init_vit_moco_(vit: VisionTransformer) -> None:
    """The ViT init of the official code (``module/vits.py``, MoCo v3's): xavier-uniform Linear layers, the fused qkv
    matrix as three xavier blocks, zero biases, xavier-uniform patch embedding, cls token N(0, 1e-6). The position
    embedding keeps timm's init. Uses ``nn.init`` so transformers' loading guard skips weights read from a file."""
    for name, module in vit.named_modules():
        if isinstance(module, nn.Linear):
            if "qkv" in name:
                bound = math.sqrt(6.0 / (module.weight.shape[0] // 3 + module.weight.shape[1]))
                nn.init.uniform_(module.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if getattr(vit, "cls_token", None) is not None:
        nn.init.normal_(vit.cls_token, std=1e-6)
    projection = vit.patch_embed.proj
    fan_in = projection.in_channels * projection.kernel_size[0] * projection.kernel_size[1]
    bound = math.sqrt(6.0 / (fan_in + projection.out_channels))
    nn.init.uniform_(projection.weight, -bound, bound)
    if projection.bias is not None:
        nn.init.zeros_(projection.bias)


def _disable_drop_path_(module: nn.Module) -> None:
    """The official momentum encoder is built without stochastic depth (only the base encoder has drop_path)."""
    for child in module.modules():
        if isinstance(child, timm.layers.DropPath):
            child.drop_prob = 0.0


def _block_diagonal(gathered_shares: torch.Tensor, batch: int) -> torch.Tensor:
    """``[P * B, B]`` per-process share matrices (rank order) -> the ``[P * B, P * B]`` global one: every process
    mixes only its own images, so process ``r``'s shares sit on diagonal block ``r``."""
    return torch.block_diag(*gathered_shares.split(batch))


# ----------------------------------------------------------------------------- models


class PatchMixModel(ContrastiveModel):
    """The PatchMix encoder (a timm ViT by default): ``forward(pixel_values)`` -> ``last_hidden_state`` (tokens),
    ``pooler_output`` (timm's pre-logits features: the cls token after the final norm for a ViT)."""

    config_class = PatchMixConfig

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # Children are initialised before their parent, so the ViT-level init has the last word on its layers.
        if self.config.moco_vit_init and isinstance(module, VisionTransformer):
            _init_vit_moco_(module)


class PatchMixForImageClassification(ContrastiveForImageClassification):
    """The PatchMix encoder with a linear classifier on its pooled features."""

    config_class = PatchMixConfig

    def __init__(self, config: PatchMixConfig):
        super().__init__(config, encoder_class=PatchMixModel)


class PatchMixForPreTraining(ContrastiveForPreTraining):
    """PatchMix pretraining in a MoCo v3 frame, as the official code (``main_pretrain.py``, ``mix_p = 1``).

    ``forward(views=[x_1, x_2])``:
    ```
    mix_v, P_v = patch_mix(x_v, draw_mix_groups(cells, m), patch)   # one random cell split per view
    q_1  = predictor(projector(student_encoder(x_1)))                 # student, with grad
    mq_2 = predictor(projector(student_encoder(mix_2)))
    k_1, k_2, mk_1 = teacher_projector(encoder(.)) of x_1, x_2, mix_1   # EMA (momentum) teacher, no grad
    loss = patchmix_loss(q_1, k_2, mq_2, k_1, mk_1, P_2, P_1, tau)   # all gathered across processes
    ```
    (formula in `hf_contrastive.losses.patchmix_loss`). Mixed image ``i`` takes about ``1/m`` of its cells from each
    of images ``i, ..., i+m-1`` of the per-device batch. Queries and keys are gathered from every process
    (`all_gather_with_grad`), so the keys of the whole global batch are the candidates, as the official
    ``concat_all_gather``; each process mixes only its own images, so the global share matrices are block-diagonal.
    ``symmetric=True`` averages this with the same loss with the views swapped. Every student/teacher call is a
    separate forward, so the heads' BatchNorm sees one batch of images per call, as officially (the global batch with
    ``distributed_batchnorm='sync'``, the default, as the official SyncBN). No queue: ``queue_keys`` is None.

    Unlike the rest of the family, ``encoder`` is the EMA (momentum) encoder, frozen, and the student is
    ``student_encoder``: PatchMix evaluates and publishes the momentum encoder, as MoCo v3.
    """

    config_class = PatchMixConfig
    student_network = ("student_encoder", "projector", "predictor")
    teacher_shuffle_bn = False  # as the official code (MoCo v3 frame: no shuffle-BN)

    def __init__(self, config: PatchMixConfig):
        super().__init__(config)
        self.student_encoder = PatchMixModel(config)
        self.projector = _moco_mlp(config.projection_layers, config.hidden_size, config.projection_hidden_size,
                                   config.projection_dim)
        self.predictor = _moco_mlp(config.prediction_layers, config.projection_dim, config.projection_hidden_size,
                                   config.projection_dim)
        # The momentum encoder sits at ``encoder``, the family's published slot, because it is the one PatchMix
        # evaluates and releases (official config/knn/knn.py: encoder = 'momentum_encoder'). So kNN, the Hub folder,
        # AutoModel and AutoModelForImageClassification all get it; the gradient-trained one is ``student_encoder``.
        self.add_ema_teacher({"encoder": "student_encoder", "teacher_projector": "projector"})
        _disable_drop_path_(self.encoder)
        self.mix_patch_size = self._resolve_mix_patch_size(config)
        self.post_init()

    def _resolve_mix_patch_size(self, config: PatchMixConfig) -> tuple[int, int]:
        if config.mix_patch_size is not None:
            patch = (config.mix_patch_size, config.mix_patch_size)
        else:
            patch_embed = getattr(self.encoder.backbone, "patch_embed", None)
            if patch_embed is None or not hasattr(patch_embed, "patch_size"):
                raise ValueError(
                    f"{config.backbone!r} has no patch_embed.patch_size to mix patches on: use a ViT backbone or set "
                    "mix_patch_size."
                )
            patch = tuple(int(side) for side in patch_embed.patch_size)
        if config.image_size % patch[0] or config.image_size % patch[1]:
            raise ValueError(f"image_size {config.image_size} is not divisible by the mixing patch size {patch}.")
        cells = (config.image_size // patch[0]) * (config.image_size // patch[1])
        if config.mix_num > cells:
            raise ValueError(f"mix_num {config.mix_num} exceeds the {cells} patches of an image.")
        return patch

    def _mix(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = pixel_values.shape[-2:]
        cells = (height // self.mix_patch_size[0]) * (width // self.mix_patch_size[1])
        groups = draw_mix_groups(cells, self.config.mix_num, pixel_values.device)
        return patch_mix(pixel_values, groups, self.mix_patch_size)

    def _loss(self, query, key, mixed_query, source_key, mixed_key, query_shares, key_shares) -> torch.Tensor:
        batch = query.shape[0]
        gather = all_gather_with_grad
        return patchmix_loss(
            gather(query), gather(key), gather(mixed_query), gather(source_key), gather(mixed_key),
            _block_diagonal(gather(query_shares), batch), _block_diagonal(gather(key_shares), batch),
            tau=self.config.tau, mixed_to_original_weight=self.config.mixed_to_original_weight,
            mixed_to_mixed_weight=self.config.mixed_to_mixed_weight,
        )

    def forward(self, views: list[torch.Tensor], return_dict: bool | None = None, **kwargs) -> ContrastivePreTrainingOutput:
        """``views``: ``[x_1, x_2]``, each ``[B, C, H, W]``; row ``i`` of both is the same image."""
        if len(views) != 2:
            raise ValueError(f"PatchMix takes two views, got {len(views)}.")
        x1, x2 = views
        mixed1, shares1 = self._mix(x1)  # drawn first, as the official mixer(images[0]) then mixer(images[1])
        mixed2, shares2 = self._mix(x2)
        if not self.config.symmetric:
            q1, mq2 = self.student_embeddings([x1, mixed2])
            k1, k2, mk1 = self.teacher_embeddings([x1, x2, mixed1])
            return ContrastivePreTrainingOutput(loss=self._loss(q1, k2, mq2, k1, mk1, shares2, shares1), queue_keys=None)
        q1, mq2, q2, mq1 = self.student_embeddings([x1, mixed2, x2, mixed1])
        k1, k2, mk1, mk2 = self.teacher_embeddings([x1, x2, mixed1, mixed2])
        loss = 0.5 * (self._loss(q1, k2, mq2, k1, mk1, shares2, shares1) + self._loss(q2, k1, mq1, k2, mk2, shares1, shares2))
        return ContrastivePreTrainingOutput(loss=loss, queue_keys=None)
