"""Command-line and YAML arguments of ``recipes/train.py``.

Precedence: command-line flags > the ``--config`` YAML file > the defaults below. The defaults are the paper
protocol (methods.md section 0), except the dataset, which defaults to the small CIFAR-10 sample shipped in the repo
so that ``accelerate launch recipes/train.py`` runs a short end-to-end job out of the box (see ``SAMPLE_DEFAULTS``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import view_options
from ..registry import get_method

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATASET = REPO_ROOT / "data" / "cifar10_sample"
REPORT_TO_CHOICES = ("tensorboard", "trackio", "wandb", "all", "none")

# The embedded default job: MNN on the shipped 2,000-image sample, a few minutes on 2 CPU cores.
SAMPLE_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 2,
    "per_device_train_batch_size": 128,
    "warmup_epochs": 1,
    "config_overrides": {"queue_size": 1024},
}


@dataclass
class TrainingArguments:
    """Every option of a pretraining run. Field names follow transformers' example scripts."""

    method: str = "mnn"
    dataset_name: str | None = None
    output_dir: str | None = None
    config: str | None = None
    backbone: str | None = None
    image_size: int | None = None
    image_column: str | None = None
    label_column: str | None = None
    train_split: str = "train"
    eval_split: str | None = None
    dataset_stats: str | None = None
    num_train_epochs: int = 200
    max_train_steps: int | None = None
    per_device_train_batch_size: int = 256
    per_device_eval_batch_size: int = 512
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = None
    base_learning_rate: float = 0.06
    min_learning_rate: float = 0.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weight_decay_end: float | None = None
    warmup_epochs: float = 5.0
    seed: int = 42
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    dataloader_num_workers: int = 2
    channels_last: bool = False
    augment_on_device: bool = False
    torch_compile: bool = False
    skip_bad_images: bool = False
    streaming: bool = False
    shuffle_buffer_size: int = 10_000
    streaming_knn_bank_size: int = 10_000
    knn_every_n_epochs: int = 1
    knn_k: int = 200
    knn_temperature: float = 0.1
    logging_steps: int = 10
    checkpointing_steps: str | None = None
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None
    init_from: str | None = None
    report_to: str = "tensorboard"
    push_to_hub: bool = False
    hub_model_id: str | None = None
    config_overrides: dict = field(default_factory=dict)
    augmentations: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.method = self.method.lower().replace("-", "_")
        if self.dataset_name is None:
            self.dataset_name = str(SAMPLE_DATASET)
        if self.output_dir is None:
            self.output_dir = f"outputs/{self.method}-{self.backbone or 'resnet18'}"
        if self.report_to not in REPORT_TO_CHOICES:
            raise ValueError(f"--report_to must be one of {REPORT_TO_CHOICES}, got {self.report_to!r}.")
        if self.checkpointing_steps is not None:
            self.checkpointing_steps = str(self.checkpointing_steps)
            if self.checkpointing_steps != "epoch" and not (
                self.checkpointing_steps.isdigit() and int(self.checkpointing_steps) > 0
            ):
                raise ValueError(
                    f"--checkpointing_steps must be a positive integer or 'epoch', got {self.checkpointing_steps!r}."
                )
        for spec in dataclasses.fields(self):  # NaN and inf pass every comparison below: refuse them first
            value = getattr(self, spec.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"--{spec.name} must be a finite number, got {value}.")
        for name in ("learning_rate", "base_learning_rate", "knn_temperature"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value:g}.")
        if self.warmup_epochs < 0:
            raise ValueError(f"--warmup_epochs must be >= 0, got {self.warmup_epochs:g}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must lie in [0, 1), got {self.momentum:g}.")
        positive = ("num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
                    "gradient_accumulation_steps", "knn_k", "logging_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.min_learning_rate < 0:
            raise ValueError(f"--min_learning_rate must be >= 0, got {self.min_learning_rate}.")
        if self.weight_decay < 0:
            raise ValueError(f"--weight_decay must be >= 0, got {self.weight_decay}.")
        if self.weight_decay_end is not None and (self.weight_decay_end < 0 or self.weight_decay <= 0):
            raise ValueError(f"--weight_decay_end must be >= 0 and needs --weight_decay > 0 (where its cosine starts), "
                             f"got --weight_decay {self.weight_decay}, --weight_decay_end {self.weight_decay_end}.")
        for kind, options in self.augmentations.items():  # unknown kinds or options fail here, not after loading
            if not isinstance(options, dict):
                raise TypeError(f"augmentations: the options of the {kind!r} view must be a mapping, got {options!r}.")
            view_options(kind, options)
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-username/mnn-resnet18).")

    @property
    def is_sample_dataset(self) -> bool:
        return Path(self.dataset_name).resolve() == SAMPLE_DATASET.resolve()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


HELP = {
    "method": "Method name (see hf_contrastive.available_methods()).",
    "dataset_name": "Hub dataset id, local parquet folder or image folder (default: the shipped CIFAR-10 sample).",
    "output_dir": "Where checkpoints, logs, all_results.json and the Hub folder (model/) go.",
    "config": "A recipe YAML file (recipes/configs/); command-line flags override it.",
    "backbone": "timm model name (overrides the recipe's model.backbone).",
    "image_size": "Training/eval image side in pixels (overrides model.image_size).",
    "image_column": "Image column (default: detected, e.g. img or image).",
    "label_column": "Label column for the kNN monitor (default: detected, e.g. label or fine_label).",
    "eval_split": "Eval split (default: test, validation or valid; else 10%% of train is held out).",
    "dataset_stats": "Normalisation statistics: cifar10, cifar100, stl10, tiny-imagenet or imagenet (default: guessed).",
    "max_train_steps": "Total optimiser steps; overrides --num_train_epochs.",
    "per_device_train_batch_size": "Batch per process; the global batch is this x processes x accumulation.",
    "learning_rate": "Peak learning rate (default: base_learning_rate x global batch / 256).",
    "warmup_epochs": "Linear warm-up epochs before the cosine decay.",
    "min_learning_rate": "Where the cosine decay ends (default 0; PatchMix's official 1e-6).",
    "optimizer": "sgd (momentum, weight decay on every parameter: the CNN protocol) or adamw (ViTs, MoCo v3 / "
    "PatchMix: no weight decay on biases and normalisation weights).",
    "weight_decay_end": "Anneal the weight decay of the decayed parameters from --weight_decay to this value "
    "along a per-step cosine (DINO / PatchMix); default: constant.",
    "max_train_samples": "Keep the first N training images.",
    "max_eval_samples": "Keep the first N eval images.",
    "skip_bad_images": "Check every image once before training and drop the undecodable ones (counted and "
    "reported) instead of stopping at the first one.",
    "channels_last": "Convolutional backbones in channels-last memory format (faster convolutions on GPUs with "
    "bf16/fp16).",
    "augment_on_device": "The loader only crops and flips (uint8 tensors); colour jitter, grayscale, blur and "
    "normalisation run per batch on the training device with per-sample random parameters (kornia), so a GPU is not "
    "held back by CPU augmentation. Views stay a pure function of the seed (resumable).",
    "torch_compile": "Compile the model with torch.compile (inductor, through Accelerate); the first steps are slow.",
    "streaming": "Read the train split as a stream (datasets streaming: nothing downloaded first); each process "
    "reads its own shards (split_dataset_by_node) through a shuffle buffer; epochs are counted in steps from the "
    "split's row count (or --max_train_samples).",
    "shuffle_buffer_size": "--streaming: rows in the shuffle buffer of each process/worker.",
    "streaming_knn_bank_size": "--streaming: the kNN monitor's bank is the first N train rows, held in memory.",
    "knn_every_n_epochs": "kNN monitor frequency in epochs (0: only at the end).",
    "logging_steps": "Log loss and learning rate every N optimiser steps.",
    "checkpointing_steps": "Save a checkpoint every N optimiser steps, or 'epoch'.",
    "checkpoints_total_limit": "Keep only the newest N checkpoints.",
    "resume_from_checkpoint": "A checkpoint folder; 'latest' (the newest under output_dir/checkpoints); or 'auto' "
    "(the newest if there is one, else start: one command line for a job that is requeued after preemption).",
    "init_from": "Start from a Hub folder or id of ours (full pretraining state: teachers, heads, queues) "
    "instead of a fresh model; the optimiser and schedule start anew.",
    "report_to": "Experiment tracker: tensorboard, trackio, wandb, all or none.",
    "push_to_hub": "Upload the Hub folder to --hub_model_id at the end.",
    "hub_model_id": "Hub repository, e.g. your-name/mnn-resnet18.",
}


def parse_overrides(text: str, flag: str = "--config_overrides") -> dict[str, Any]:
    """``"queue_size=1024,nn_topk=3"`` -> ``{"queue_size": 1024, "nn_topk": 3}`` (values parsed as YAML).

    Commas inside brackets belong to the value: ``backbone_kwargs={img_size: 32, patch_size: 4},views=[strong, weak]``.
    Errors are ``argparse.ArgumentTypeError`` so that argparse prints their message, not only "invalid value".
    """
    parts, depth, current = [], 0, ""
    for char in text:
        depth += 1 if char in "[{" else -1 if char in "]}" else 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    overrides = {}
    for item in filter(None, (part.strip() for part in parts)):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"{flag} takes key=value pairs separated by commas, got {item!r}.")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise argparse.ArgumentTypeError(f"{flag}: the value of {key.strip()!r} is not valid YAML ({value!r}): "
                                             f"{error}") from error
    return overrides


def _parse_augmentations(text: str) -> dict[str, dict[str, Any]]:
    """``"local={crop_scale: [0.14, 1.0], size: 32}"`` -> ``{"local": {"crop_scale": [0.14, 1.0], "size": 32}}``."""
    augmentations = parse_overrides(text, "--augmentations")
    for kind, options in augmentations.items():
        if not isinstance(options, dict):
            raise argparse.ArgumentTypeError(
                f"--augmentations {kind}={options!r}: the value must be a mapping of view options, e.g. "
                f"'{kind}={{crop_scale: [0.14, 1.0]}}'.")
    return augmentations


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Pretrain a contrastive image encoder. Every flag can also be set in the --config YAML file.",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the YAML file
    )
    types = {int: int, float: float, str: str}
    for spec in dataclasses.fields(TrainingArguments):
        if spec.name in ("config_overrides", "augmentations"):
            continue
        flag = f"--{spec.name}"
        if spec.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=HELP.get(spec.name))
            continue
        base_type = next((t for name, t in types.items() if spec.type.startswith(name.__name__)), str)
        parser.add_argument(flag, type=base_type, help=HELP.get(spec.name))
    parser.add_argument(
        "--config_overrides",
        type=parse_overrides,
        help="Model config fields, e.g. 'queue_size=1024,nn_topk=3' (overrides the YAML 'model:' section).",
    )
    parser.add_argument(
        "--augmentations",
        type=_parse_augmentations,
        help="View options per view kind, e.g. 'local={crop_scale: [0.14, 1.0], size: 32}' (updates that kind's "
        "options in the YAML 'augmentations:' section; the options are data.build_view_transform's).",
    )
    return parser


def load_yaml_config(path: str) -> dict[str, Any]:
    """Read a recipe. Top-level keys are `TrainingArguments` fields; ``model:`` holds config fields."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config {path}: no such file. Recipes live in recipes/configs/.")
    content = yaml.safe_load(file.read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold a YAML mapping of argument names to values.")
    content = dict(content)
    content["config_overrides"] = content.pop("model", None) or {}
    known = {spec.name for spec in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(content) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}. Valid keys: {sorted(known - {'config_overrides'})} and 'model'.")
    return content


def parse_args(argv: list[str] | None = None) -> TrainingArguments:
    """Merge defaults, the YAML file and the command line into `TrainingArguments`."""
    cli = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config_path = cli.get("config")
    if config_path:
        values.update(load_yaml_config(config_path))
    elif "dataset_name" not in cli:
        # The embedded default job; its model settings apply where the chosen method has them.
        values.update(SAMPLE_DEFAULTS)
        method_fields = get_method(cli.get("method", "mnn")).config_class().to_dict()
        values["config_overrides"] = {k: v for k, v in SAMPLE_DEFAULTS["config_overrides"].items() if k in method_fields}
    overrides = {**values.get("config_overrides", {}), **cli.pop("config_overrides", {})}
    recipe_views, cli_views = values.get("augmentations") or {}, cli.pop("augmentations", {})
    if not isinstance(recipe_views, dict) or not all(isinstance(o, dict | None) for o in recipe_views.values()):
        raise ValueError(f"{config_path}: 'augmentations:' must map view kinds to mappings of their options, "
                         f"e.g. 'strong: {{crop_scale: [0.1, 1.0]}}'.")
    augmentations = {kind: {**(recipe_views.get(kind) or {}), **(cli_views.get(kind) or {})}
                     for kind in {**recipe_views, **cli_views}}
    values.update(cli)
    values["config_overrides"] = overrides
    values["augmentations"] = augmentations
    for spec in dataclasses.fields(TrainingArguments):
        value = values.get(spec.name)
        if value is not None and spec.type.startswith(("int", "float")) and isinstance(value, str):
            raise TypeError(f"{spec.name} must be a number, got {value!r}.")
    return TrainingArguments(**values)
