"""Linear probe of a frozen encoder (methods.md section 0) and the pieces shared by the evaluation recipes.

Protocol (MNN / MSVQ reference code): the backbone is frozen and kept in eval mode (BatchNorm uses its running
statistics), a ``Linear(num_features, C)`` head is trained with SGD (nesterov, momentum 0.9, no weight decay) for 100
epochs with batch 256, and the test top-1 is measured after every epoch. Two learning-rate schedules:

* ``step`` (MNN repo): lr 30, x0.1 at epochs 60 and 80 (at 60% and 80% of ``num_epochs`` when it is not 100);
* ``cosine`` (MSVQ repo): lr 1.0, ``lr x 0.5 (1 + cos(pi epoch / num_epochs))``, set at the start of each epoch.

Train-time augmentation is the reference linear evaluation's: ``RandomResizedCrop(size)`` (torchvision's default
scale 0.08-1) + horizontal flip + normalisation (:func:`build_linear_train_transform`); the test set uses the
protocol's eval transform (``data.build_view_transform("eval", ...)``). The backbone runs under ``torch.no_grad`` on
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
from ..training.arguments import SAMPLE_DATASET

LR_SCHEDULES = ("step", "cosine")
#: Default learning rate of each schedule (MNN repo: 30 with steps; MSVQ repo: 1.0 with cosine).
DEFAULT_LEARNING_RATES = {"step": 30.0, "cosine": 1.0}
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
    trust_remote_code: bool = field(default=True, metadata={
        "help": "Allow the folder's own code for model types hf_contrastive does not register (ours always use the "
                "installed classes)."})
    update_model_card: bool = field(default=True, metadata={
        "help": "Add the result to the folder's README.md (model-index + Evaluation results table)."})

    def __post_init__(self) -> None:
        if self.dataset_name is None:
            self.dataset_name = str(SAMPLE_DATASET)
        if self.per_device_eval_batch_size <= 0:
            raise ValueError(f"--per_device_eval_batch_size must be positive, got {self.per_device_eval_batch_size}.")

    def default_output_dir(self, recipe: str) -> Path:
        """``<folder>/../<recipe>`` for a local folder (``outputs/run/model`` -> ``outputs/run/<recipe>``)."""
        if self.output_dir:
            return Path(self.output_dir)
        folder = Path(self.model_name_or_path)
        if folder.is_dir():
            return folder.resolve().parent / recipe
        return Path("outputs") / f"{self.model_name_or_path.replace('/', '--')}-{recipe}"


@dataclass
class LinearEvalArguments(FrozenEvalArguments):
    """``recipes/linear_eval.py``: the linear probe of methods.md section 0."""

    num_train_epochs: int = field(default=REFERENCE_EPOCHS, metadata={"help": "Epochs of linear training."})
    per_device_train_batch_size: int = field(default=256, metadata={"help": "Batch per process (protocol: 256)."})
    lr_schedule: str = field(default="step", metadata={
        "help": "step: lr 30, x0.1 at epochs 60 and 80 (MNN repo); cosine: lr 1.0 cosine (MSVQ repo)."})
    learning_rate: float | None = field(default=None, metadata={
        "help": "Overrides the schedule's default learning rate (30 for step, 1.0 for cosine)."})
    lr_milestones: str | None = field(default=None, metadata={
        "help": "Epochs of the x0.1 steps, e.g. '60,80' (default: 60%% and 80%% of --num_train_epochs)."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (nesterov)."})
    weight_decay: float = field(default=0.0, metadata={"help": "SGD weight decay (protocol: 0)."})
    min_crop_scale: float = field(default=0.08, metadata={
        "help": "RandomResizedCrop scale lower bound of the train augmentation (torchvision's default 0.08)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        for name in ("num_train_epochs", "per_device_train_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")

    @property
    def peak_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.lr_schedule]

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
    epoch: int, base_lr: float, schedule: str, num_epochs: int, milestones: Sequence[int] = REFERENCE_MILESTONES
) -> float:
    """Learning rate of (0-based) ``epoch``: ``step`` -> ``base_lr x 0.1^(milestones <= epoch)``;
    ``cosine`` -> ``base_lr x 0.5 (1 + cos(pi epoch / num_epochs))``. Set once at the start of each epoch."""
    if schedule == "step":
        return base_lr * 0.1 ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / num_epochs))
    raise ValueError(f"Unknown lr schedule {schedule!r}; valid: {LR_SCHEDULES}.")


def build_linear_train_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip_p: float = 0.5,
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """Train augmentation of the reference linear evaluation: ``RandomResizedCrop(image_size, scale=crop_scale)``
    (torchvision's default scale), horizontal flip, then rescale to [0, 1] and normalise. RGB PIL image ->
    float32 ``[3, image_size, image_size]``. Also the light augmentation of ``recipes/finetune.py`` (scale 0.5-1)."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True),
        v2.RandomHorizontalFlip(p=flip_p),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


# ----------------------------------------------------------------------------- encoder and preprocessing


@dataclass
class Preprocessing:
    """Image side and normalisation used to evaluate a folder, and where they came from."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


def load_frozen_encoder(model_name_or_path: str, trust_remote_code: bool = True) -> nn.Module:
    """``AutoModel`` of a folder (our methods resolve to the installed classes; a native timm folder gives
    ``TimmWrapperModel``), in eval mode with every parameter frozen. Its ``forward(pixel_values)`` must return a
    ``pooler_output`` ``[B, D]``."""
    import hf_contrastive  # noqa: F401  (registers our model types with the Auto classes)
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
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
) -> dict[str, Any]:
    """Train ``Linear(D, num_classes)`` on the frozen ``encoder``'s pooled features; evaluate after every epoch.

    Args:
        encoder: returns ``pooler_output`` ``[B, D]``; it is frozen and kept in eval mode here.
        train_dataloader: *unprepared* loader of ``data.MultiViewDataset`` batches (``views[0]`` is the augmented
            image; its ``set_epoch`` is called every epoch, so augmentations depend on (seed, epoch, index) only).
        test_dataloader: *unprepared* loader of ``data.EvalImageDataset`` batches (deterministic transform).
        milestones: epochs of the x0.1 steps of the ``step`` schedule (default: 60% and 80% of ``num_epochs``).

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

    head = nn.Linear(test_features.shape[1], num_classes)
    optimizer = torch.optim.SGD(head.parameters(), lr=learning_rate, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)
    head, optimizer, train_loader = accelerator.prepare(head, optimizer, train_dataloader)
    dataset = train_dataloader.dataset
    history: list[dict[str, float]] = []
    progress = tqdm(range(num_epochs), desc="linear probe", disable=not accelerator.is_local_main_process,
                    dynamic_ncols=True)
    for epoch in progress:
        lr = linear_probe_lr(epoch, learning_rate, lr_schedule, num_epochs, milestones)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        head.train()
        totals = torch.zeros(3, device=accelerator.device, dtype=torch.float64)  # loss sum, correct, count
        for batch in train_loader:
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
    train_transform = build_linear_train_transform(prep.image_size, prep.mean, prep.std,
                                                   crop_scale=(args.min_crop_scale, 1.0))
    train_dataset = data_lib.MultiViewDataset(splits.train, splits.image_column, splits.label_column,
                                              [train_transform], seed=args.seed)
    workers = args.dataloader_num_workers
    train_dataloader = DataLoader(
        train_dataset, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=False,
        collate_fn=data_lib.collate_views, num_workers=workers, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    test_transform = data_lib.build_view_transform("eval", prep.image_size, prep.mean, prep.std)
    test_dataloader = eval_dataloader(splits.eval, splits, test_transform, args.per_device_eval_batch_size, workers)
    global_batch = args.per_device_train_batch_size * accelerator.num_processes
    accelerator.print(
        f"linear probe | {args.model_name_or_path} | {len(splits.train)} train / {len(splits.eval)} "
        f"{splits.eval_split_name} images, {splits.num_classes} classes | {args.num_train_epochs} epochs | "
        f"global batch {global_batch} | {args.lr_schedule} schedule, lr {args.peak_learning_rate:g}"
        + (f", x0.1 at epochs {list(args.milestones)}" if args.lr_schedule == "step" else "")
    )
    probe = train_linear_probe(
        encoder, train_dataloader, test_dataloader, accelerator, splits.num_classes,
        num_epochs=args.num_train_epochs, learning_rate=args.peak_learning_rate, lr_schedule=args.lr_schedule,
        milestones=args.milestones, momentum=args.momentum, weight_decay=args.weight_decay,
    )
    dataset_id, dataset_label = detect_dataset_id(args.dataset_name, args.dataset_stats)
    protocol = {
        "epochs": args.num_train_epochs, "global_batch_size": global_batch, "optimizer": "SGD nesterov",
        "momentum": args.momentum, "weight_decay": args.weight_decay, "lr_schedule": args.lr_schedule,
        "learning_rate": args.peak_learning_rate,
        "lr_milestones": list(args.milestones) if args.lr_schedule == "step" else None,
        "train_augmentation": f"RandomResizedCrop({prep.image_size}, scale=({args.min_crop_scale}, 1)) + flip",
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
