"""Linear probe of a frozen encoder (methods.md section 0) and the pieces shared by the evaluation recipes.

Protocol (MNN / MSVQ reference code): the backbone is frozen and kept in eval mode (BatchNorm uses its running
statistics), a ``Linear(num_features, C)`` head (weights N(0, 0.01), zero bias, as the reference ``LinearHead``) is
trained with SGD (nesterov, momentum 0.9, no weight decay) for 100 epochs with batch 256, and the test top-1 is
measured after every epoch. ``--protocol`` picks a reference's whole recipe (`LINEAR_PROTOCOLS`):

* ``mnn`` (MNN repo, the default): ``step`` schedule, lr 30, x0.1 at epochs 60 and 80 (at 60% and 80% of
  ``num_epochs`` when it is not 100);
* ``msvq`` (MSVQ repo): ``cosine`` schedule, lr 1.0, ``lr x 0.5 (1 + cos(pi t / T))`` over the T optimiser steps of
  the run, set at every step (its ``CosineAnnealingLR(T_max=epochs x iterations)``);
* ``patchmix`` (visresearch/patchmix ``main_linear.py``): ``cosine_per_epoch`` schedule (``CosineAnnealingLR`` over
  the epochs, stepped once per epoch), lr 0.02 x global batch / 256, torch's default head init, bicubic train crops,
  and a test transform of ``Resize(size x 256/224, bicubic) + CenterCrop(size)`` (36 then 32 px on CIFAR);
* ``cacr`` (JegZheng/CACR-SSL ``small_scale_experiments/*/linear_eval.py``): Adam (lr 1e-3, betas (0.5, 0.999)),
  ``step`` schedule with x0.2 at epochs 60 and 80, batch 128, torch's default head init, train crops of scale
  0.2-1 (its STL-10 script: 0.08-1, pass ``--min_crop_scale 0.08``). Its STL-10 test images are
  ``Resize(70) + CenterCrop(64)``; here they are resized to the folder's size.

Train-time augmentation is the reference linear evaluation's: ``RandomResizedCrop(size)`` (torchvision's default
scale 0.08-1) + horizontal flip + normalisation (:func:`build_linear_train_transform`); the test set uses the
protocol's eval transform (``data.build_view_transform("eval", ...)``, or PatchMix's resize and centre crop). The
crops are ``size`` = the encoder's training ``image_size``; the test images are the folder's processor size, which
is larger where the references evaluate at the native resolution (STL-10: 64 px crops, 96 px test images; a
globally pooled CNN takes both). The backbone runs under ``torch.no_grad`` on
every training batch (the augmented crops change every epoch, so train features cannot be cached); test features
are deterministic and are extracted once, then every epoch's head is evaluated on them, which gives the same
numbers as re-encoding the test set each epoch. The reference repos report the best test epoch: the results give
the best epoch *and* the last one.

Everything is Accelerate-aware: the head is wrapped for DDP, the training data are sharded, per-epoch losses and
accuracies are reduced over processes and test features are collected with ``gather_for_metrics``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm.auto import tqdm

from .. import data as data_lib
from ..distributed import distributed_without_gpu
from ..hub import hub_dataset_id
from ..model_index import update_model_index

LR_SCHEDULES = ("step", "cosine", "cosine_per_epoch")
OPTIMIZERS = ("sgd", "adam")
#: Default learning rate of each schedule (MNN repo: 30 with steps; MSVQ repo: 1.0 with cosine; PatchMix: 0.02 per
#: 256 images of global batch, scaled in `LinearEvalArguments.resolve`).
DEFAULT_LEARNING_RATES = {"step": 30.0, "cosine": 1.0, "cosine_per_epoch": 0.02}
#: Keys every protocol sets; ``None`` in `LINEAR_PROTOCOLS` means the shared default.
_SHARED = {"optimizer": "sgd", "learning_rate": None, "lr_gamma": 0.1, "batch_size": 256, "min_crop_scale": 0.08}
HEAD_INITS = ("normal", "torch")
#: Each reference's linear protocol: schedule, head init, crop interpolation, test transform, lr scaling.
LINEAR_PROTOCOLS = {
    "mnn": {**_SHARED, "lr_schedule": "step", "head_init": "normal", "interpolation": "bilinear", "test": "resize",
            "lr_scales_with_batch": False},
    "msvq": {**_SHARED, "lr_schedule": "cosine", "head_init": "normal", "interpolation": "bilinear", "test": "resize",
             "lr_scales_with_batch": False},
    "patchmix": {**_SHARED, "lr_schedule": "cosine_per_epoch", "head_init": "torch", "interpolation": "bicubic",
                 "test": "resize_center_crop", "lr_scales_with_batch": True},
    "cacr": {**_SHARED, "optimizer": "adam", "learning_rate": 1e-3, "lr_gamma": 0.2, "batch_size": 128,
             "min_crop_scale": 0.2, "lr_schedule": "step", "head_init": "torch", "interpolation": "bilinear",
             "test": "resize", "lr_scales_with_batch": False},
}
#: Epochs (out of 100) at which the ``step`` schedule multiplies the learning rate by 0.1.
REFERENCE_MILESTONES = (60, 80)
REFERENCE_EPOCHS = 100


# ----------------------------------------------------------------------------- arguments


@dataclass
class FrozenEvalArguments:
    """Options shared by ``recipes/knn_eval.py`` and ``recipes/linear_eval.py`` (names as in ``recipes/train.py``)."""

    model_name_or_path: str = field(metadata={"help": "A Hub-ready folder written by recipes/train.py (or a Hub id)."})
    dataset_name: str | None = field(default=None, metadata={
        "help": "Hub dataset id, local parquet folder or image folder (default: the shipped CIFAR-10 sample)."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where eval_results.json goes (default: next to the folder, e.g. outputs/mnn-resnet18/linear_eval)."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: detected)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: detected)."})
    train_split: str = field(default="train", metadata={"help": "Split used as kNN bank / linear training set."})
    eval_split: str | None = field(default=None, metadata={
        "help": "Evaluated split (default: test, validation or valid; else 10%% of train is held out)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N eval images."})
    dataset_stats: str | None = field(default=None, metadata={
        "help": "Normalisation: cifar10, cifar100, stl10, tiny-imagenet or imagenet (default: the folder's "
                "preprocessor_config.json, i.e. what the encoder was trained with)."})
    image_size: int | None = field(default=None, metadata={"help": "Image side (default: the folder's)."})
    per_device_eval_batch_size: int = field(default=512, metadata={"help": "Batch per process for feature extraction."})
    dataloader_num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run the folder's own Python code, for model types hf_contrastive does not register (ours and native "
                "timm folders never need it). Only for folders you trust."})
    update_model_card: bool = field(default=True, metadata={
        "help": "Add the result to the folder's README.md (model-index + Evaluation results table)."})

    def __post_init__(self) -> None:
        if self.dataset_name is None:
            self.dataset_name = str(data_lib.SAMPLE_DATASET)
        if self.per_device_eval_batch_size <= 0:
            raise ValueError(f"--per_device_eval_batch_size must be positive, got {self.per_device_eval_batch_size}.")

    def default_output_dir(self, recipe: str) -> Path:
        """Next to the evaluated folder: a run's ``outputs/run/model`` -> ``outputs/run/<recipe>``; any other
        folder ``models/a`` -> ``models/a-<recipe>``, so folders side by side do not share one."""
        if self.output_dir:
            return Path(self.output_dir)
        folder = Path(self.model_name_or_path)
        if folder.is_dir():
            folder = folder.resolve()
            return folder.parent / (recipe if folder.name == "model" else f"{folder.name}-{recipe}")
        return Path("outputs") / f"{self.model_name_or_path.replace('/', '--')}-{recipe}"


@dataclass
class LinearEvalArguments(FrozenEvalArguments):
    """``recipes/linear_eval.py``: the linear probe of methods.md section 0."""

    protocol: str = field(default="mnn", metadata={
        "help": "The reference protocol: mnn (SGD, step schedule, lr 30), msvq (SGD, per-step cosine, lr 1.0), "
                "patchmix (SGD, per-epoch cosine, lr 0.02 x batch/256, bicubic crops, resize + centre-crop test "
                "images, default head init) or cacr (Adam lr 1e-3, x0.2 at 60/80, batch 128, crops 0.2-1). "
                "--lr_schedule, --learning_rate, --head_init, --per_device_train_batch_size and --min_crop_scale "
                "override its parts."})
    num_train_epochs: int = field(default=REFERENCE_EPOCHS, metadata={"help": "Epochs of linear training."})
    per_device_train_batch_size: int | None = field(default=None, metadata={
        "help": "Batch per process (default: the protocol's, 256; CACR's 128)."})
    lr_schedule: str | None = field(default=None, metadata={
        "help": "step: x0.1 at epochs 60 and 80 (MNN repo); cosine: cosine over every optimiser step (MSVQ repo); "
                "cosine_per_epoch: cosine set once per epoch (PatchMix). Default: the protocol's."})
    learning_rate: float | None = field(default=None, metadata={
        "help": "Overrides the default learning rate (30 for step, 1.0 for cosine, 0.02 x global batch / 256 for "
                "cosine_per_epoch)."})
    head_init: str | None = field(default=None, metadata={
        "help": "normal: weights N(0, 0.01) and zero bias (MNN/MSVQ repos); torch: nn.Linear's default (PatchMix). "
                "Default: the protocol's."})
    lr_milestones: str | None = field(default=None, metadata={
        "help": "Epochs of the step schedule's decays (x0.1; CACR's x0.2), e.g. '60,80' (default: 60%% and 80%% of "
                "--num_train_epochs)."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (nesterov); not used by Adam (cacr)."})
    weight_decay: float = field(default=0.0, metadata={"help": "SGD weight decay (protocol: 0)."})
    min_crop_scale: float | None = field(default=None, metadata={
        "help": "RandomResizedCrop scale lower bound of the train augmentation (torchvision's default 0.08)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.protocol not in LINEAR_PROTOCOLS:
            raise ValueError(f"--protocol must be one of {list(LINEAR_PROTOCOLS)}, got {self.protocol!r}.")
        preset = LINEAR_PROTOCOLS[self.protocol]
        self.lr_schedule = self.lr_schedule or preset["lr_schedule"]
        self.head_init = self.head_init or preset["head_init"]
        if self.per_device_train_batch_size is None:
            self.per_device_train_batch_size = preset["batch_size"]
        if self.min_crop_scale is None:
            self.min_crop_scale = preset["min_crop_scale"]
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"--head_init must be one of {HEAD_INITS}, got {self.head_init!r}.")
        for name in ("num_train_epochs", "per_device_train_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")

    def peak_learning_rate(self, global_batch_size: int) -> float:
        """``--learning_rate``, else the schedule's default (PatchMix's scaled by the global batch / 256)."""
        if self.learning_rate is not None:
            return self.learning_rate
        preset = LINEAR_PROTOCOLS[self.protocol]
        if preset["learning_rate"] is not None and self.lr_schedule == preset["lr_schedule"]:
            return preset["learning_rate"]
        base = DEFAULT_LEARNING_RATES[self.lr_schedule]
        return base * global_batch_size / 256 if LINEAR_PROTOCOLS[self.protocol]["lr_scales_with_batch"] else base

    @property
    def milestones(self) -> tuple[int, ...]:
        if self.lr_milestones:
            return tuple(int(part) for part in self.lr_milestones.split(",") if part.strip())
        return default_milestones(self.num_train_epochs)


# ----------------------------------------------------------------------------- schedule and transforms


def default_milestones(num_epochs: int) -> tuple[int, ...]:
    """The reference's (60, 80) out of 100 epochs, scaled to ``num_epochs``."""
    return tuple(round(m * num_epochs / REFERENCE_EPOCHS) for m in REFERENCE_MILESTONES)


def linear_probe_lr(
    epoch: int, base_lr: float, schedule: str, num_epochs: int, milestones: Sequence[int] = REFERENCE_MILESTONES,
    step_in_epoch: int = 0, steps_per_epoch: int = 1, gamma: float = 0.1,
) -> float:
    """Learning rate of optimiser step ``step_in_epoch`` (0-based) of ``epoch`` (0-based):

    * ``step``: ``base_lr x gamma^(number of milestones <= epoch)`` (gamma 0.1; CACR's 0.2), constant within an epoch;
    * ``cosine``: ``base_lr x 0.5 (1 + cos(pi t / T))`` with ``t = epoch x steps_per_epoch + step_in_epoch`` and
      ``T = num_epochs x steps_per_epoch`` (a cosine over every step, as MSVQ's per-iteration ``CosineAnnealingLR``);
    * ``cosine_per_epoch``: ``base_lr x 0.5 (1 + cos(pi epoch / num_epochs))``, constant within an epoch.
    """
    if schedule == "step":
        return base_lr * gamma ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        progress = (epoch * steps_per_epoch + step_in_epoch) / (num_epochs * steps_per_epoch)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "cosine_per_epoch":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / num_epochs))
    raise ValueError(f"Unknown lr schedule {schedule!r}; valid: {LR_SCHEDULES}.")


def build_linear_train_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip_p: float = 0.5,
    interpolation: str = "bilinear",
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """Train augmentation of the reference linear evaluation: ``RandomResizedCrop(image_size, scale=crop_scale)``
    (torchvision's default scale; bicubic in PatchMix's), horizontal flip, then rescale to [0, 1] and normalise. RGB
    PIL image -> float32 ``[3, image_size, image_size]``. Also the light augmentation of ``recipes/finetune.py``
    (scale 0.5-1)."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True,
                             interpolation=data_lib.INTERPOLATIONS[interpolation]),
        v2.RandomHorizontalFlip(p=flip_p),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


def build_resize_center_crop_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PatchMix's linear-evaluation test transform: ``Resize(int(image_size / 224 x 256), bicubic)`` (the shorter
    side), ``CenterCrop(image_size)``, rescale, normalise: 36 then 32 px on CIFAR."""
    return v2.Compose([
        v2.Resize(int(image_size / 224 * 256), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(image_size),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


def build_linear_head(num_features: int, num_classes: int, init: str = "normal") -> nn.Linear:
    """``Linear(num_features, num_classes)``; ``init="normal"``: weights N(0, 0.01) and zero bias, as the MNN/MSVQ
    reference ``LinearHead``; ``"torch"``: nn.Linear's default (PatchMix)."""
    if init not in HEAD_INITS:
        raise ValueError(f"head init must be one of {HEAD_INITS}, got {init!r}.")
    head = nn.Linear(num_features, num_classes)
    if init == "normal":
        nn.init.normal_(head.weight, mean=0.0, std=0.01)
        nn.init.zeros_(head.bias)
    return head


# ----------------------------------------------------------------------------- encoder and preprocessing


@dataclass
class Preprocessing:
    """Image side and normalisation used to evaluate a folder, and where they came from."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


def load_frozen_encoder(model_name_or_path: str, trust_remote_code: bool = False) -> nn.Module:
    """``AutoModel`` of a folder (our methods resolve to the installed classes; a native timm folder gives
    ``TimmWrapperModel``), in eval mode with every parameter frozen. Its ``forward(pixel_values)`` must return a
    ``pooler_output`` ``[B, D]``. The folder's own code runs only with ``trust_remote_code``."""
    from transformers import AutoModel

    import hf_contrastive  # noqa: F401  (registers our model types with the Auto classes)

    try:
        encoder = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    except ValueError as error:
        if trust_remote_code or "trust_remote_code" not in str(error):
            raise
        raise ValueError(f"{model_name_or_path} is a model type hf_contrastive does not register and ships its own "
                         "code; pass --trust_remote_code if you trust that code.") from None
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder


def resolve_preprocessing(
    model_name_or_path: str, encoder: nn.Module, *, dataset_stats: str | None = None, image_size: int | None = None
) -> Preprocessing:
    """Image side and mean/std: the folder's image processor (what the encoder was trained with), overridden by
    ``dataset_stats`` (a key of ``data.DATASET_STATS``) and ``image_size``; the config's ``image_size`` if there is no
    processor."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(model_name_or_path)
    except (OSError, ValueError):
        processor = None
    size, mean, std, source = None, None, None, "preprocessor_config.json"
    if processor is not None:
        data_config = getattr(processor, "data_config", None)  # TimmWrapperImageProcessor
        if data_config:
            size, mean, std = data_config["input_size"][-1], data_config["mean"], data_config["std"]
        else:
            side = getattr(processor, "size", None) or {}
            size = side.get("height") or side.get("shortest_edge")
            mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if dataset_stats is not None:
        if dataset_stats not in data_lib.DATASET_STATS:
            raise ValueError(f"--dataset_stats must be one of {sorted(data_lib.DATASET_STATS)}, got {dataset_stats!r}.")
        mean, std = data_lib.DATASET_STATS[dataset_stats]
        source = f"dataset_stats={dataset_stats}"
    if mean is None or std is None:
        raise ValueError(
            f"{model_name_or_path} has no image processor with a mean/std (preprocessor_config.json); "
            f"pass --dataset_stats (one of {sorted(data_lib.DATASET_STATS)})."
        )
    size = image_size or size or getattr(encoder.config, "image_size", None)
    if not size:
        raise ValueError(f"Could not tell the image size of {model_name_or_path}; pass --image_size.")
    return Preprocessing(int(size), tuple(float(m) for m in mean), tuple(float(s) for s in std), source)


def detect_dataset_id(dataset_name: str, dataset_stats: str | None) -> tuple[str | None, str]:
    """(Hub id for the model-index, readable name), as the training card does: a local copy of a known dataset
    maps to its Hub id (guessed from the folder name when ``dataset_stats`` is not given)."""
    stats = data_lib.detect_dataset_stats(dataset_name, dataset_stats)
    dataset_id = hub_dataset_id(dataset_name, stats)
    return dataset_id, dataset_id or Path(dataset_name).name


def load_labelled_splits(args: FrozenEvalArguments) -> data_lib.ImageDatasetSplits:
    """``data.load_image_dataset`` with the recipe's flags; the evaluation protocols need labels."""
    splits = data_lib.load_image_dataset(
        args.dataset_name,
        image_column=args.image_column,
        label_column=args.label_column,
        train_split=args.train_split,
        eval_split=args.eval_split,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        seed=args.seed,
    )
    if splits.label_column is None or not splits.num_classes:
        raise ValueError(f"{args.dataset_name} has no label column; pass --label_column (kNN/linear need labels).")
    return splits


def eval_dataloader(
    split, splits: data_lib.ImageDatasetSplits, transform, batch_size: int, num_workers: int
) -> DataLoader:
    """Unprepared, unshuffled loader of ``{"pixel_values", "labels", "index"}`` batches."""
    dataset = data_lib.EvalImageDataset(split, splits.image_column, splits.label_column, transform)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=data_lib.collate_eval, num_workers=num_workers)


@torch.no_grad()
def extract_pooled_features(
    encoder: nn.Module, dataloader: DataLoader, accelerator: Accelerator, description: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (not normalised) pooled features ``[N, D]`` (float32) and labels ``[N]`` of a prepared loader, gathered
    from every process in order (``gather_for_metrics``), so every process returns the whole split."""
    features, labels = [], []
    for batch in tqdm(dataloader, desc=description, leave=False, disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            pooled = encoder(batch["pixel_values"]).pooler_output
        pooled, batch_labels = accelerator.gather_for_metrics((pooled.float(), batch["labels"]))
        features.append(pooled)
        labels.append(batch_labels)
    return torch.cat(features), torch.cat(labels)


# ----------------------------------------------------------------------------- the probe


def train_linear_probe(
    encoder: nn.Module,
    train_dataloader: DataLoader,
    test_dataloader: DataLoader,
    accelerator: Accelerator,
    num_classes: int,
    *,
    num_epochs: int = REFERENCE_EPOCHS,
    learning_rate: float = DEFAULT_LEARNING_RATES["step"],
    lr_schedule: str = "step",
    milestones: Sequence[int] | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = True,
    head_init: str = "normal",
    optimizer_name: str = "sgd",
    lr_gamma: float = 0.1,
) -> dict[str, Any]:
    """Train ``Linear(D, num_classes)`` on the frozen ``encoder``'s pooled features; evaluate after every epoch.

    Args:
        encoder: returns ``pooler_output`` ``[B, D]``; it is frozen and kept in eval mode here.
        train_dataloader: *unprepared* loader of ``data.MultiViewDataset`` batches (``views[0]`` is the augmented
            image; its ``set_epoch`` is called every epoch, so augmentations depend on (seed, epoch, index) only).
        test_dataloader: *unprepared* loader of ``data.EvalImageDataset`` batches (deterministic transform).
        milestones: epochs of the x0.1 steps of the ``step`` schedule (default: 60% and 80% of ``num_epochs``).
        head_init: ``normal`` (N(0, 0.01), zero bias) or ``torch`` (`build_linear_head`).
        optimizer_name: ``sgd`` (``momentum``, ``nesterov``, ``weight_decay``) or ``adam`` (CACR's: betas (0.5, 0.999),
            ``weight_decay``). lr_gamma: the ``step`` schedule's factor at each milestone.

    Returns a JSON-able dict: ``history`` (per epoch: ``epoch`` (1-based), ``lr``, ``train_loss``, ``train_top1``
    on the augmented training batches, ``test_top1``), ``best_top1``, ``best_epoch``, ``last_top1``, ``num_features``,
    ``train_samples``, ``eval_samples``. Accuracies are in [0, 1].
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}.")
    milestones = tuple(milestones) if milestones is not None else default_milestones(num_epochs)
    encoder.eval()
    encoder.requires_grad_(False)
    encoder.to(accelerator.device)
    test_dataloader = accelerator.prepare(test_dataloader)
    test_features, test_labels = extract_pooled_features(encoder, test_dataloader, accelerator, "test features")

    head = build_linear_head(test_features.shape[1], num_classes, head_init)
    if optimizer_name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer_name!r}.")
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate, betas=(0.5, 0.999), weight_decay=weight_decay)
    else:
        optimizer = torch.optim.SGD(head.parameters(), lr=learning_rate, momentum=momentum, nesterov=nesterov,
                                    weight_decay=weight_decay)
    head, optimizer, train_loader = accelerator.prepare(head, optimizer, train_dataloader)
    dataset = train_dataloader.dataset
    history: list[dict[str, float]] = []
    progress = tqdm(range(num_epochs), desc="linear probe", disable=not accelerator.is_local_main_process,
                    dynamic_ncols=True)
    steps_per_epoch = len(train_loader)
    for epoch in progress:
        lr = linear_probe_lr(epoch, learning_rate, lr_schedule, num_epochs, milestones, gamma=lr_gamma)  # 1st step
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        head.train()
        totals = torch.zeros(3, device=accelerator.device, dtype=torch.float64)  # loss sum, correct, count
        for step_in_epoch, batch in enumerate(train_loader):
            for group in optimizer.param_groups:
                group["lr"] = linear_probe_lr(epoch, learning_rate, lr_schedule, num_epochs, milestones,
                                              step_in_epoch, steps_per_epoch, gamma=lr_gamma)
            with torch.no_grad(), accelerator.autocast():
                features = encoder(batch["views"][0]).pooler_output
            logits = head(features.float())
            loss = F.cross_entropy(logits, batch["labels"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            size = batch["labels"].shape[0]
            totals += torch.stack([loss.detach().double() * size,
                                   (logits.argmax(1) == batch["labels"]).sum().double(),
                                   torch.tensor(size, dtype=torch.float64, device=accelerator.device)])
        totals = accelerator.reduce(totals, reduction="sum")
        test_top1 = _accuracy(accelerator.unwrap_model(head), test_features, test_labels)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": (totals[0] / totals[2]).item(),
                  "train_top1": (totals[1] / totals[2]).item(), "test_top1": test_top1}
        history.append(record)
        progress.set_postfix(loss=f"{record['train_loss']:.4f}", test_top1=f"{100 * test_top1:.2f}%")
    progress.close()

    best = max(history, key=lambda record: record["test_top1"])  # first epoch among ties
    return {
        "best_top1": best["test_top1"],
        "best_epoch": best["epoch"],
        "last_top1": history[-1]["test_top1"],
        "last_epoch": history[-1]["epoch"],
        "num_features": int(test_features.shape[1]),
        "num_classes": num_classes,
        "train_samples": len(dataset),
        "eval_samples": int(test_labels.shape[0]),
        "history": history,
    }


@torch.no_grad()
def _accuracy(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, chunk_size: int = 4096) -> float:
    was_training = head.training
    head.eval()
    correct = sum(
        (head(features[i : i + chunk_size]).argmax(1) == labels[i : i + chunk_size]).sum().item()
        for i in range(0, features.shape[0], chunk_size)
    )
    head.train(was_training)
    return correct / max(1, features.shape[0])


# ----------------------------------------------------------------------------- recipes


def make_accelerator(seed: int) -> Accelerator:
    """The Accelerator of the evaluation recipes: seedable sampler (the shuffling depends on ``seed`` only)."""
    accelerator = Accelerator(
        cpu=distributed_without_gpu(),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
    )
    set_seed(seed)
    return accelerator


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran, for the card and the results: ``accelerate launch recipes/<script> <argv>``
    (``argv`` defaults to ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([f"accelerate launch recipes/{script}"] + [shlex.quote(str(a)) for a in argv])


def record_results(
    accelerator: Accelerator | None,
    output_dir: Path,
    results: dict[str, Any],
    *,
    model_name_or_path: str,
    update_card: bool,
    entries: list[dict[str, Any]],
) -> None:
    """Write ``output_dir/eval_results.json`` and, for a local folder, add ``entries`` (keyword arguments of
    ``model_index.update_model_index`` without ``folder``) to its model card; on the main process only."""
    is_main = accelerator is None or accelerator.is_main_process
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2, default=str))
        folder = Path(model_name_or_path)
        if update_card and folder.is_dir():
            for entry in entries:
                update_model_index(folder, **entry)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def run_linear_eval(
    args: LinearEvalArguments, accelerator: Accelerator | None = None, command: str | None = None
) -> dict[str, Any]:
    """The whole ``recipes/linear_eval.py``: load the folder and the data, train the probe, write
    ``eval_results.json`` and the model card entries (best and last epoch). Returns the results.
    ``command`` is what the card and the results report as the command line (default: this process's)."""
    accelerator = accelerator or make_accelerator(args.seed)
    encoder = load_frozen_encoder(args.model_name_or_path, args.trust_remote_code)
    prep = resolve_preprocessing(args.model_name_or_path, encoder, dataset_stats=args.dataset_stats,
                                 image_size=args.image_size)
    splits = load_labelled_splits(args)
    preset = LINEAR_PROTOCOLS[args.protocol]
    # Train crops at the encoder's training side, test images at the processor's (larger where the reference
    # evaluates at the native resolution: STL-10 64 / 96 px).
    crop_size = args.image_size or getattr(encoder.config, "image_size", None) or prep.image_size
    train_transform = build_linear_train_transform(crop_size, prep.mean, prep.std,
                                                   crop_scale=(args.min_crop_scale, 1.0),
                                                   interpolation=preset["interpolation"])
    train_dataset = data_lib.MultiViewDataset(splits.train, splits.image_column, splits.label_column,
                                              [train_transform], seed=args.seed)
    workers = args.dataloader_num_workers
    train_dataloader = DataLoader(
        train_dataset, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=False,
        collate_fn=data_lib.collate_views, num_workers=workers, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if preset["test"] == "resize_center_crop":
        test_transform = build_resize_center_crop_transform(prep.image_size, prep.mean, prep.std)
        test_description = f"Resize({int(prep.image_size / 224 * 256)}, bicubic) + CenterCrop({prep.image_size})"
    else:
        test_transform = data_lib.build_view_transform("eval", prep.image_size, prep.mean, prep.std)
        test_description = f"Resize({prep.image_size})"
    test_dataloader = eval_dataloader(splits.eval, splits, test_transform, args.per_device_eval_batch_size, workers)
    global_batch = args.per_device_train_batch_size * accelerator.num_processes
    learning_rate = args.peak_learning_rate(global_batch)
    accelerator.print(
        f"linear probe ({args.protocol} protocol) | {args.model_name_or_path} | {len(splits.train)} train / "
        f"{len(splits.eval)} {splits.eval_split_name} images, {splits.num_classes} classes | {args.num_train_epochs} "
        f"epochs | global batch {global_batch} | {args.lr_schedule} schedule, lr {learning_rate:g}"
        + (f", x{preset['lr_gamma']:g} at epochs {list(args.milestones)}" if args.lr_schedule == "step" else "")
        + f" | {preset['optimizer']}"
        + f" | head init {args.head_init} | train crops {crop_size} px, test {test_description}"
    )
    probe = train_linear_probe(
        encoder, train_dataloader, test_dataloader, accelerator, splits.num_classes,
        num_epochs=args.num_train_epochs, learning_rate=learning_rate, lr_schedule=args.lr_schedule,
        milestones=args.milestones, momentum=args.momentum, weight_decay=args.weight_decay, head_init=args.head_init,
        optimizer_name=preset["optimizer"], lr_gamma=preset["lr_gamma"],
    )
    dataset_id, dataset_label = detect_dataset_id(args.dataset_name, args.dataset_stats)
    protocol = {
        "reference_protocol": args.protocol,
        "epochs": args.num_train_epochs, "global_batch_size": global_batch,
        "optimizer": "Adam betas (0.5, 0.999)" if preset["optimizer"] == "adam" else "SGD nesterov",
        "momentum": args.momentum, "weight_decay": args.weight_decay, "lr_schedule": args.lr_schedule,
        "learning_rate": learning_rate, "head_init": args.head_init,
        "lr_milestones": list(args.milestones) if args.lr_schedule == "step" else None,
        "lr_gamma": preset["lr_gamma"] if args.lr_schedule == "step" else None,
        "train_augmentation": f"RandomResizedCrop({crop_size}, scale=({args.min_crop_scale}, 1), "
                              f"{preset['interpolation']}) + flip",
        "test_transform": test_description,
        "image_size": prep.image_size, "normalisation": prep.source,
        "train_split": args.train_split, "train_samples": probe["train_samples"], "eval_samples": probe["eval_samples"],
    }
    command = command or command_line("linear_eval.py")
    results = {
        "protocol_name": "linear probe (frozen backbone in eval mode + Linear(D, C))",
        "model_name_or_path": args.model_name_or_path,
        "dataset_name": args.dataset_name,
        "eval_split": splits.eval_split_name,
        "reported": "best_top1 is the best test epoch (as the reference repos report); last_top1 the final epoch",
        **{k: v for k, v in probe.items() if k != "history"},
        "protocol": protocol,
        "command": command,
        "history": probe["history"],
    }
    task_name = f"Linear probe (frozen backbone, {args.lr_schedule} schedule)"
    common = dict(task_name=task_name, dataset_id=dataset_id, dataset_name=dataset_label,
                  split=splits.eval_split_name, source=command)
    metric = f"linear probe top-1 ({args.lr_schedule} schedule, {{}} epoch)"
    entries = [
        {**common, "metric_name": metric.format("best"), "value": probe["best_top1"],
         "protocol_args": {**protocol, "best_epoch": probe["best_epoch"]}},
        {**common, "metric_name": metric.format("last"), "value": probe["last_top1"], "protocol_args": protocol},
    ]
    output_dir = args.default_output_dir("linear_eval")
    results["output_dir"] = str(output_dir)
    record_results(accelerator, output_dir, results, model_name_or_path=args.model_name_or_path,
                   update_card=args.update_model_card, entries=entries)
    accelerator.print(
        f"\nLinear probe top-1 on {probe['eval_samples']} {splits.eval_split_name} images: "
        f"best {100 * probe['best_top1']:.2f}% (epoch {probe['best_epoch']}, as the reference repos report), "
        f"last {100 * probe['last_top1']:.2f}% (epoch {probe['last_epoch']})\n"
        f"Results: {output_dir / 'eval_results.json'}"
    )
    return results
