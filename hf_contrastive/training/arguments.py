"""Command-line and YAML arguments of ``recipes/train.py``.

Precedence: command-line flags > the ``--config`` YAML file > the defaults below. The defaults are the paper
protocol (methods.md section 0), except the dataset, which defaults to the small CIFAR-10 sample shipped in the package
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

from ..data import SAMPLE_DATASET, view_options
from ..registry import available_methods, get_method

REPORT_TO_CHOICES = ("tensorboard", "trackio", "wandb", "all", "none")
# torch.compile's modes; "reduce-overhead" replays each compiled graph as a CUDA graph (inductor's cudagraph trees).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# The embedded default job: MNN on the shipped 2,000-image sample, about 5 minutes on 2 CPU cores. The standard
# ResNet stem (7x7 stride-2 conv + max-pool) at 32 px costs 1/16 of the CIFAR recipes' small-image stem, which buys
# 20 epochs (300 steps) in that time; kNN every 5 epochs. What it shows: the pipeline end to end and a kNN above the
# same network at random init (24.8% vs 23.2% on the 500 test images, 2026-12-06), not the method's accuracy.
SAMPLE_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 20,
    "per_device_train_batch_size": 128,
    "warmup_epochs": 1,
    "knn_every_n_epochs": 5,
    "config_overrides": {"queue_size": 1024, "small_image_stem": False},
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
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
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
    data_on_device: bool = False
    torch_compile: bool = False
    torch_compile_mode: str = "default"
    skip_bad_images: bool = False
    streaming: bool = False
    shuffle_buffer_size: int = 10_000
    streaming_knn_bank_size: int = 10_000
    knn_every_n_epochs: int = 1
    knn_random_init: bool = True
    card_plots: bool = True
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
        if (self.image_mean is None) != (self.image_std is None):
            raise ValueError("--image_mean and --image_std go together: pass both (3 numbers each, red green blue), "
                             "e.g. --image_mean 0.5 0.5 0.5 --image_std 0.25 0.25 0.25.")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is None:
                continue
            numbers = isinstance(value, list | tuple) and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            if not (numbers and len(value) == 3):
                raise ValueError(f"--{name} takes 3 finite numbers (red green blue), got {value!r}.")
            setattr(self, name, [float(v) for v in value])
        if self.image_std is not None and min(self.image_std) <= 0:
            raise ValueError(f"--image_std must be positive, got {self.image_std}.")
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
        if self.torch_compile_mode not in COMPILE_MODES:
            raise ValueError(f"--torch_compile_mode must be one of {COMPILE_MODES}, got {self.torch_compile_mode!r}.")
        if self.torch_compile_mode != "default" and not self.torch_compile:
            raise ValueError(f"--torch_compile_mode {self.torch_compile_mode} needs --torch_compile.")
        if self.data_on_device and self.streaming:
            raise ValueError("--data_on_device holds the whole training split on the device and --streaming never "
                             "reads it whole: drop one of the two flags.")
        if self.data_on_device and self.augment_on_device:
            raise ValueError("--data_on_device already makes every view on the device: drop --augment_on_device.")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-username/mnn-resnet18).")

    @property
    def is_sample_dataset(self) -> bool:
        return Path(self.dataset_name).resolve() == SAMPLE_DATASET.resolve()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# One entry per TrainingArguments field (build_parser fails on a field without one). `build_parser` appends
# "(default: X)"; a field whose default is None says in its text what happens when it is not given.
HELP = {
    "method": "Method to pretrain, one of: {methods}. `hf-contrastive methods` describes each (paper, views, config "
    "fields).",  # {methods}: the registered names, filled in by build_parser
    "dataset_name": "Hub dataset id, local parquet folder or image folder (default: the CIFAR-10 sample shipped with "
    "the package, 2,000 train / 500 test images).",
    "output_dir": "Where checkpoints, logs, all_results.json and the Hub folder (model/) go (default: "
    "outputs/METHOD-BACKBONE).",
    "config": "A recipe YAML file (recipes/configs/); command-line flags override it (default: none).",
    "backbone": "timm model name (default: the recipe's model.backbone, else the method's; see "
    "`hf-contrastive methods NAME`).",
    "image_size": "Training/eval image side in pixels (default: the recipe's model.image_size, else the method's; "
    "see `hf-contrastive methods NAME`).",
    "image_column": "Image column (default: detected, e.g. img or image).",
    "label_column": "Label column for the kNN monitor (default: detected, e.g. label or fine_label; without one the "
    "monitor is off).",
    "train_split": "Training split.",
    "eval_split": "Eval split (default: test, validation or valid; else 10%% of train is held out).",
    "dataset_stats": "Normalisation mean/std: cifar10, cifar100, stl10, tiny-imagenet or imagenet (default: guessed "
    "from the dataset name, else imagenet; the run prints which).",
    "image_mean": "Normalisation mean, 3 numbers (red green blue, images scaled to [0, 1]); with --image_std it "
    "replaces the --dataset_stats values in training and in the exported preprocessor_config.json (default: from "
    "--dataset_stats).",
    "image_std": "Normalisation std, 3 positive numbers; goes with --image_mean (default: from --dataset_stats).",
    "num_train_epochs": "Training epochs (unless --max_train_steps is given).",
    "max_train_steps": "Total optimiser steps; overrides --num_train_epochs (default: epochs x steps per epoch).",
    "per_device_train_batch_size": "Batch per process; the global batch is this x processes x accumulation.",
    "per_device_eval_batch_size": "Batch per process of the kNN monitor's feature extraction.",
    "gradient_accumulation_steps": "Batches accumulated into one optimiser step.",
    "learning_rate": "Peak learning rate (default: --base_learning_rate x global batch / 256).",
    "base_learning_rate": "Learning rate per 256 images of global batch (the linear scaling rule), used when "
    "--learning_rate is not given.",
    "min_learning_rate": "Where the cosine decay ends (PatchMix's official value: 1e-6).",
    "optimizer": "sgd (momentum, weight decay on every parameter: the CNN protocol) or adamw (ViTs, MoCo v3 / "
    "PatchMix: no weight decay on biases and normalisation weights).",
    "momentum": "SGD momentum.",
    "weight_decay": "Weight decay (adamw: not on biases, normalisation weights and ViT tokens).",
    "weight_decay_end": "Anneal the weight decay of the decayed parameters from --weight_decay to this value "
    "along a per-step cosine (DINO / PatchMix) (default: none, a constant weight decay).",
    "warmup_epochs": "Linear warm-up epochs (fractions allowed) before the cosine decay; a run shorter than its "
    "warm-up gets a warning.",
    "seed": "Seed of the model initialisation, the augmentations and the sampler.",
    "max_train_samples": "Keep the first N training images (default: all).",
    "max_eval_samples": "Keep the first N eval images (default: all).",
    "dataloader_num_workers": "DataLoader worker processes (0: load in the main process).",
    "skip_bad_images": "Check every image once before training and drop the undecodable ones (counted and "
    "reported) instead of stopping at the first one.",
    "channels_last": "Convolutional backbones in channels-last memory format (faster convolutions on GPUs with "
    "bf16/fp16).",
    "augment_on_device": "The loader only crops and flips (uint8 tensors); colour jitter, grayscale, blur and "
    "normalisation run per batch on the training device with per-sample random parameters drawn there, so a GPU is "
    "not held back by CPU augmentation. Views stay a pure function of the seed (resumable).",
    "data_on_device": "Decode the training split once into a uint8 tensor on the training device (it must fit, all "
    "images of one size) and make every view there, crops included: no loader workers, no host-to-device copies. "
    "For CIFAR-sized data on a GPU. Views stay a pure function of the seed (resumable).",
    "torch_compile": "Compile the step with torch.compile (inductor): the model with its loss (through Accelerate), "
    "the teachers' EMA and the queue update, and with --data_on_device the views; the first steps are slow.",
    "torch_compile_mode": "torch.compile's mode with --torch_compile: default, reduce-overhead (CUDA graphs: each "
    "compiled graph replayed in one launch, for launch-bound GPU steps), max-autotune, max-autotune-no-cudagraphs.",
    "streaming": "Read the train split as a stream (datasets streaming: nothing downloaded first); each process "
    "reads its own shards (split_dataset_by_node) through a shuffle buffer; epochs are counted in steps from the "
    "split's row count (or --max_train_samples).",
    "shuffle_buffer_size": "--streaming: rows in the shuffle buffer of each process/worker.",
    "streaming_knn_bank_size": "--streaming: the kNN monitor's bank is the first N train rows, held in memory.",
    "knn_every_n_epochs": "kNN monitor frequency in epochs (0: only at the end).",
    "card_plots": "Write the kNN-over-training plot and a t-SNE map of the test embeddings next to the model card "
    "(the t-SNE takes a while on a large test split).",
    "knn_random_init": "Measure the kNN top-1 of the network as initialised, before the first step (one extra kNN "
    "pass), and report it beside the final one: the baseline that shows what training added.",
    "knn_k": "Neighbours in the kNN monitor's weighted vote.",
    "knn_temperature": "Temperature T of the kNN monitor's vote weights exp(similarity / T).",
    "logging_steps": "Log loss and learning rate every N optimiser steps.",
    "checkpointing_steps": "Save a checkpoint every N optimiser steps, or 'epoch' (default: none, no periodic "
    "checkpoints).",
    "checkpoints_total_limit": "Keep only the newest N checkpoints.",
    "resume_from_checkpoint": "A checkpoint folder; 'latest' (the newest under output_dir/checkpoints); or 'auto' "
    "(the newest if there is one, else start: one command line for a job that is requeued after preemption) "
    "(default: none, a new run).",
    "init_from": "Start from a Hub folder or id of ours (full pretraining state: teachers, heads, queues) "
    "instead of a fresh model; the optimiser and schedule start anew (default: none, a fresh model).",
    "report_to": "Experiment tracker: tensorboard, trackio, wandb, all or none.",
    "push_to_hub": "Upload the Hub folder to --hub_model_id at the end.",
    "hub_model_id": "Hub repository, e.g. your-name/mnn-resnet18 (default: none).",
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


def _method_name(text: str) -> str:
    """``--method`` as the registry spells it (``MNN``, ``multinet-gl`` are accepted)."""
    return text.lower().replace("-", "_")


def _help_with_default(spec: dataclasses.Field) -> str:
    text = HELP[spec.name]
    if spec.default is None:
        return text
    shown = "off" if spec.default is False else str(spec.default)
    return f"{text.removesuffix('.')} (default: {shown.replace('%', '%%')})."


DESCRIPTION = """Pretrain a contrastive image encoder.

Each value comes from the command line, else the --config YAML file (every flag is also a YAML key), else the
default shown below. The defaults are the CIFAR-10 paper protocol (200 epochs, 5 warm-up epochs, batch 256,
32 px images): for your own dataset start from a recipe in recipes/configs/, or set at least --num_train_epochs,
--warmup_epochs, --image_size and the normalisation (--dataset_stats, or --image_mean and --image_std)."""


def _epilog() -> str:
    sample = " ".join(f"--{key} {value}" for key, value in SAMPLE_DEFAULTS.items() if key != "config_overrides")
    model = ",".join(f"{key}={str(value).lower() if isinstance(value, bool) else value}"
                     for key, value in SAMPLE_DEFAULTS["config_overrides"].items())
    return (
        "Without --config and --dataset_name it runs the embedded sample job on the CIFAR-10 sample shipped with the\n"
        f"package: {sample} --config_overrides {model}.\n\n"
        "Examples:\n"
        "  accelerate launch recipes/train.py                       # the sample job, a few minutes on a CPU\n"
        "  accelerate launch recipes/train.py --config recipes/configs/mnn_cifar10.yaml --output_dir outputs/mnn\n"
        "  hf-contrastive methods mnn                               # a method's paper, views and config fields"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=_epilog(),
        usage="%(prog)s [--config RECIPE.yaml] [--method METHOD] [--dataset_name DATASET] [--FLAG VALUE ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the paragraphs; flag help is still wrapped
        argument_default=argparse.SUPPRESS,  # only flags actually given override the YAML file
    )
    types = {int: int, float: float, str: str}
    for spec in dataclasses.fields(TrainingArguments):
        if spec.name in ("config_overrides", "augmentations"):
            continue
        flag, help_text = f"--{spec.name}", _help_with_default(spec)
        if spec.name == "method":
            methods = available_methods()
            parser.add_argument(flag, type=_method_name, choices=methods, metavar="METHOD",
                                help=help_text.format(methods=", ".join(methods)))
        elif spec.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=help_text)
            if spec.default is True:  # as transformers' HfArgumentParser: --no_<name> turns it off
                parser.add_argument(f"--no_{spec.name}", dest=spec.name, action="store_false",
                                    help=f"Turn off {flag} (default: on).")
        elif spec.type.startswith("list[float]"):  # --image_mean R G B
            parser.add_argument(flag, type=float, nargs=3, metavar=("R", "G", "B"), help=help_text)
        else:
            base_type = next((t for name, t in types.items() if spec.type.startswith(name.__name__)), str)
            parser.add_argument(flag, type=base_type, help=help_text)
    parser.add_argument(
        "--config_overrides",
        type=parse_overrides,
        help="Model config fields, e.g. 'queue_size=1024,nn_topk=3' (overrides the YAML 'model:' section) (default: "
        "none, the recipe's or the method's values; `hf-contrastive methods NAME` lists the fields).",
    )
    parser.add_argument(
        "--augmentations",
        type=_parse_augmentations,
        help="View options per view kind, e.g. 'local={crop_scale: [0.14, 1.0], size: 32}' (updates that kind's "
        "options in the YAML 'augmentations:' section; the options are data.build_view_transform's) (default: none, "
        "the recipe's or the views' defaults).",
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
