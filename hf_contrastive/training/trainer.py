"""The Accelerate pretraining loop shared by every method.

One step: forward all views through the method's ``...ForPreTraining`` (it returns the loss and the keys it wants
enqueued) -> backward -> optimiser + schedule step -> teacher EMA (after each optimiser step) -> enqueue the keys
gathered from every process, so every process holds the same queue. See docs/architecture.md.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import math
import os
import platform
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import timm.optim
import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import (
    DataLoaderConfiguration,
    ProjectConfiguration,
    TorchDynamoPlugin,
    send_to_device,
    set_seed,
)
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, get_cosine_with_min_lr_schedule_with_warmup

from .. import data as data_lib
from .. import device_views, mining
from ..card_plots import plot_embedding_map, plot_knn_history
from ..distributed import distributed_without_gpu, use_global_batchnorm
from ..evaluation import extract_features, knn_predict
from ..evaluation.linear import load_frozen_encoder, resolve_preprocessing
from ..export import can_export_timm, export_timm
from ..hub import CardContext, dataset_display_name, push_folder_to_hub, save_hub_folder
from ..models import FeatureQueue, load_split_batchnorm_state, split_batchnorm_state
from ..registry import get_method
from .arguments import TrainingArguments
from .callbacks import TrainerCallback
from .preemption import StopSignals, TrainingInterrupted, ignore_stop_signals

logger = logging.getLogger(__name__)
CHECKPOINT_PREFIX = "step_"
STATE_FILE = "training_state.json"
# Per-split BatchNorm statistics (bn_splits > 1), outside the model's state dict: needed for a bit-exact resume.
SPLIT_BATCHNORM_FILE = "split_batchnorm.safetensors"
# Part of every --augment_on_device seed (see Pretrainer._augment_on_device).
DEVICE_AUGMENT_SEED_TAG = 0xA06


def build_model_config(args: TrainingArguments):
    """The method's config from its defaults, the recipe's ``model:`` section, --config_overrides and the
    top-level --backbone / --image_size flags (which win)."""
    spec = get_method(args.method)
    fields = dict(args.config_overrides)
    if args.backbone is not None:
        fields["backbone"] = args.backbone
    if args.image_size is not None:
        fields["image_size"] = args.image_size
    known = set(spec.config_class().to_dict())
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"Unknown {spec.name} config fields {unknown}. Valid fields: {sorted(known)}.")
    return spec, spec.config_class(**fields)


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict[str, list[torch.Tensor]],
                  progress: float | None = None, forward: Callable[..., Any] | None = None) -> Any:
    """One optimiser step of a ``...ForPreTraining`` model as `Pretrainer` runs it, on one process without
    Accelerate (no gradient accumulation, scheduler, gather or mixed precision): forward on ``inputs`` (``views``,
    and ``neighbour_views`` for SPPS), backward, optimiser step, gradients to None, the teachers' EMA at
    ``progress`` (optimiser steps done / total), the queue keys enqueued. ``forward``: what runs the forward instead
    of ``model`` (a compiled model, or one under autocast). Returns the model's output. For benchmarks and tests
    that time or inspect a step."""
    outputs = (forward or model)(**inputs)
    outputs.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.momentum_update(progress=progress)
    if outputs.queue_keys:
        model.enqueue(outputs.queue_keys)
    return outputs


def cosine_weight_decay(start: float, end: float, step: int, total_steps: int) -> float:
    """Weight decay for optimiser step ``step`` (0-based) of ``total_steps``, DINO's per-iteration cosine as
    PatchMix's official code uses it: ``end + (start - end) (1 + cos(pi step / total_steps)) / 2``, ``start`` at step 0
    and close to ``end`` at the last step."""
    return end + (start - end) * (1.0 + math.cos(math.pi * step / total_steps)) / 2.0


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints ``output_dir/checkpoints/step_N``, oldest first."""
    folders = [
        path for path in (output_dir / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*")
        if path.name[len(CHECKPOINT_PREFIX):].isdigit() and (path / STATE_FILE).is_file()
    ]
    return sorted(folders, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def find_checkpoint(output_dir: Path, resume_from_checkpoint: str) -> Path | None:
    """``latest`` -> the newest complete ``checkpoints/step_N`` under output_dir (an error if there is none);
    ``auto`` -> the same, or None when there is none yet (a requeued job's first start); otherwise the given folder."""
    if resume_from_checkpoint in ("latest", "auto"):
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints and resume_from_checkpoint == "auto":
            return None
        if not checkpoints:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: no checkpoint in {output_dir / 'checkpoints'}. "
                "Start without --resume_from_checkpoint, pass --output_dir of the run to continue, or use "
                "--resume_from_checkpoint auto (resumes when there is a checkpoint, else starts)."
            )
        return checkpoints[-1]
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {path}: not a checkpoint folder (no {STATE_FILE}). "
            f"Pass a folder like {output_dir / 'checkpoints' / 'step_500'}, 'latest' or 'auto'."
        )
    return path


class Pretrainer:
    """Builds data, model, optimiser and Accelerator from `TrainingArguments`, then `train()` runs the loop.

    ``callbacks``: `TrainerCallback` instances whose hooks the loop calls (train begin, step end with a stop flag,
    evaluation, checkpoint, train end); see ``training/callbacks.py``.
    """

    def __init__(self, args: TrainingArguments, callbacks: list[TrainerCallback] | None = None):
        self.args = args
        self.callbacks = list(callbacks or [])
        self.stop_requested = False  # a callback's on_step_end asked to end training
        # Seconds this process spent in kNN evaluations, checkpoint saves and loads, and neighbour mining (methods
        # with mined neighbours), so that callbacks can tell training time from the rest.
        self.seconds_spent = {"knn": 0.0, "checkpoints": 0.0, "mining": 0.0}
        self.output_dir = Path(args.output_dir).resolve()  # printed and recorded paths work from any folder
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise NotADirectoryError(f"--output_dir {self.output_dir} is a file; pass a folder (created if missing).")
        # Looked up first, so that a wrong path fails before the dataset is read.
        self.resume_checkpoint = (find_checkpoint(self.output_dir, args.resume_from_checkpoint)
                                  if args.resume_from_checkpoint else None)
        tracker_package = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}.get(args.report_to)
        if tracker_package and importlib.util.find_spec(tracker_package) is None:
            raise ImportError(f"--report_to {args.report_to} needs `pip install {tracker_package}` (or use --report_to none).")
        self.accelerator = Accelerator(
            cpu=distributed_without_gpu(),
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=None if args.report_to == "none" else args.report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
            # non_blocking host-to-GPU copies need pinned memory, which the loaders use on CUDA.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed,
                                                      non_blocking=torch.cuda.is_available()),
            dynamo_plugin=TorchDynamoPlugin(backend="inductor", mode=args.torch_compile_mode) if args.torch_compile else None,
        )
        set_seed(args.seed)
        self._use_available_cpu_cores()
        if self.accelerator.device.type == "cuda":
            # Every step has the same shapes (drop_last): let cuDNN pick its fastest convolution algorithms once.
            torch.backends.cudnn.benchmark = True
        self.knn_history: list[dict[str, float]] = []
        self.knn_random_init: float | None = None  # kNN top-1 before the first step (--knn_random_init)
        self.spec, self.model_config = build_model_config(args)
        if args.init_from:
            self.model = self._load_pretraining_model(args.init_from)
            self.model_config = self.model.config
        else:
            self.model = self.spec.pretraining_class(self.model_config)
        if self.model_config.distributed_batchnorm == "sync":
            # Before the optimiser is built: the replacement BatchNorms carry the parameters it must see.
            self.model = use_global_batchnorm(self.model, self.accelerator.device)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._build_data()
        self._check_batch_fits()
        self._build_optimisation()

    # ------------------------------------------------------------------ construction

    def _use_available_cpu_cores(self) -> None:
        # `accelerate launch` without --cpu sets OMP_NUM_THREADS=1 on a machine without GPU, which halves CPU
        # training speed on 2 cores; share the cores between the local processes instead.
        if self.accelerator.device.type != "cpu" or torch.get_num_threads() > 1:
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // self.accelerator.num_processes)
        if threads > 1:
            torch.set_num_threads(threads)
            logger.info("CPU training: using %d threads per process.", threads)

    def _load_pretraining_model(self, folder: str):
        """The full pretraining state of a Hub folder of ours (``--init_from``); its config replaces ours."""
        config = AutoConfig.from_pretrained(folder)
        if config.model_type != self.spec.name:
            raise ValueError(
                f"--init_from {folder} holds a {config.model_type!r} model but --method is {self.spec.name!r}; "
                f"pass --method {config.model_type}."
            )
        if self.args.config_overrides or self.args.backbone or self.args.image_size:
            logger.warning("--init_from: the model settings come from %s; --config_overrides/--backbone/--image_size "
                           "are ignored.", folder)
        return self.spec.pretraining_class.from_pretrained(folder)

    def _build_data(self) -> None:
        args = self.args
        common = dict(image_column=args.image_column, label_column=args.label_column, train_split=args.train_split,
                      eval_split=args.eval_split, max_train_samples=args.max_train_samples,
                      max_eval_samples=args.max_eval_samples)
        if args.streaming:
            self.splits = data_lib.load_streaming_image_dataset(args.dataset_name, **common,
                                                                bank_samples=args.streaming_knn_bank_size)
            if self.splits.train_rows is None:
                raise ValueError(f"--streaming: the number of rows of {args.dataset_name!r} split {args.train_split!r} "
                                 "is unknown, so epochs cannot be counted; pass --max_train_samples N.")
            if getattr(self.model_config, "neighbour_views", None):
                raise ValueError(f"--streaming is not supported by {self.spec.name} (its mined neighbours need random "
                                 "access to the training images); train from a local or downloaded dataset.")
        else:
            self.splits = data_lib.load_image_dataset(args.dataset_name, **common, seed=args.seed)
        self.skipped_images: dict[str, list[int]] = {}
        if args.skip_bad_images:
            workers = args.dataloader_num_workers or None
            for split in ("train", "eval"):
                kept, bad = data_lib.drop_undecodable_images(getattr(self.splits, split), self.splits.image_column, workers)
                setattr(self.splits, split, kept)
                if bad:
                    self.skipped_images[split] = bad
                    logger.warning("--skip_bad_images: dropped %d undecodable %s images (rows %s%s).", len(bad), split,
                                   bad[:10], "..." if len(bad) > 10 else "")
        normalisation = data_lib.resolve_normalisation(args.dataset_name, args.dataset_stats, args.image_mean,
                                                       args.image_std)
        self.dataset_stats, self.image_mean, self.image_std = (normalisation.dataset_stats, normalisation.mean,
                                                               normalisation.std)
        if normalisation.source == "fallback":  # ImageNet's values for an unknown dataset: likely worth a look
            logger.warning(normalisation.message)
        else:
            self.accelerator.print(normalisation.message)
        if not args.config and not args.is_sample_dataset:
            length = f"{args.max_train_steps} steps" if args.max_train_steps else f"{args.num_train_epochs} epochs"
            stem = ", the 3x3 small-image ResNet stem" if getattr(self.model_config, "small_image_stem", False) else ""
            logger.warning(
                f"No --config: this run uses the CIFAR-10 protocol's defaults ({length}, "
                f"{self.model_config.image_size} px images{stem}, checkpoints: {args.checkpointing_steps or 'none'}). "
                "For your own images start from a recipe in recipes/configs/, or set at least --num_train_epochs, "
                "--image_size and --checkpointing_steps epoch.")
        size = self.model_config.image_size
        view_kinds = list(self.model_config.views)
        # Methods with mined positives (SPPS) name the views of the neighbour image in `config.neighbour_views`.
        neighbour_kinds = list(getattr(self.model_config, "neighbour_views", None) or [])
        if args.data_on_device:
            self._build_device_data(view_kinds, neighbour_kinds)
            return
        on_device = args.augment_on_device
        view_transforms, neighbour_transforms = (
            [data_lib.build_view_transform(kind, size, self.image_mean, self.image_std, photometric_on_device=on_device,
                                           **args.augmentations.get(kind, {})) for kind in kinds]
            for kinds in (view_kinds, neighbour_kinds)
        )
        # --augment_on_device: the loader crops and flips (uint8); jitter, grayscale, blur and normalisation run on
        # the batch where the model is (DevicePhotometricAugment), taking most of the per-image CPU work off the loader.
        self.device_view_augments, self.device_neighbour_augments = (
            [device_views.DevicePhotometricAugment(kind, size, self.image_mean, self.image_std,
                                                   **args.augmentations.get(kind, {})) for kind in kinds]
            if on_device else None
            for kinds in (view_kinds, neighbour_kinds)
        )
        self._neighbour_table_tag: str | None = None
        if args.streaming:
            stream = split_dataset_by_node(self.splits.train_stream, rank=self.accelerator.process_index,
                                           world_size=self.accelerator.num_processes)
            self.train_dataset = data_lib.StreamingViewDataset(
                stream, self.splits.image_column, self.splits.label_column, view_transforms, seed=args.seed,
                shuffle_buffer_size=args.shuffle_buffer_size, process_index=self.accelerator.process_index,
                skip_bad_images=args.skip_bad_images,
            )
            self.num_train_rows = self.splits.train_rows
        else:
            self.train_dataset = data_lib.MultiViewDataset(
                self.splits.train, self.splits.image_column, self.splits.label_column, view_transforms, seed=args.seed,
                neighbour_transforms=neighbour_transforms, num_neighbours=getattr(self.model_config, "mining_k", 1),
            )
            self.num_train_rows = len(self.train_dataset)
        self._check_one_global_batch()
        if args.streaming:
            # Not prepared: each process already reads its own part of the stream, and accelerate would shard the
            # batches again. Batches are moved to the device in the loop; the stream never ends (see
            # StreamingViewDataset), the loop takes `batches_per_epoch` of them.
            self.train_dataloader = DataLoader(self.train_dataset, batch_size=args.per_device_train_batch_size,
                                               collate_fn=data_lib.collate_views, num_workers=args.dataloader_num_workers,
                                               pin_memory=torch.cuda.is_available(), worker_init_fn=ignore_stop_signals)
            self._build_knn_dataloaders(args, self.model_config.evaluation_image_size)
            return
        loader_kwargs = dict(num_workers=args.dataloader_num_workers, persistent_workers=args.dataloader_num_workers > 0,
                             pin_memory=torch.cuda.is_available(), worker_init_fn=ignore_stop_signals)
        # drop_last: every step sees a full batch (BatchNorm, split BN and queue sizes stay constant).
        # The loader's own generator keeps its draws (worker base seeds) off the global RNG, which the model uses
        # (e.g. MNN's lambda) and checkpoints restore: a resumed run then draws exactly what the original drew.
        self.train_dataloader = DataLoader(
            self.train_dataset, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
            collate_fn=data_lib.collate_views, generator=torch.Generator().manual_seed(args.seed), **loader_kwargs,
        )
        self._build_knn_dataloaders(args, self.model_config.evaluation_image_size)

    def _check_one_global_batch(self) -> None:
        if self.num_train_rows < self.args.per_device_train_batch_size * self.accelerator.num_processes:
            raise ValueError(
                f"The training split has {self.num_train_rows} images, fewer than one global batch "
                f"({self.args.per_device_train_batch_size} x {self.accelerator.num_processes}). "
                "Lower --per_device_train_batch_size."
            )

    def _build_device_data(self, view_kinds: list[str], neighbour_kinds: list[str]) -> None:
        """``--data_on_device``: the train split decoded once into uint8 on the training device; every view is made
        there per batch (`device_views.DeviceTrainingSet`). No training loader: ``self.train_dataloader`` is None."""
        args, device = self.args, self.accelerator.device
        images = device_views.decode_to_uint8(self.splits.train, self.splits.image_column,
                                              "--data_on_device: decoding the training split")
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() > free // 2:  # leave the other half to the model, its activations and the views
                raise ValueError(
                    f"--data_on_device: the training split takes {images.numel() / 2**30:.1f} GiB as uint8, more "
                    f"than half of the {free / 2**30:.1f} GiB free on {device}. Train without --data_on_device "
                    "(with --augment_on_device), or on fewer images (--max_train_samples).")
        size = self.model_config.image_size
        view_augments, neighbour_augments = (
            [device_views.DeviceViewAugment(kind, size, self.image_mean, self.image_std,
                                            **args.augmentations.get(kind, {})) for kind in kinds]
            for kinds in (view_kinds, neighbour_kinds)
        )
        self.train_dataset = device_views.DeviceTrainingSet(
            images.to(device), view_augments, seed=args.seed, neighbour_augments=neighbour_augments,
            num_neighbours=getattr(self.model_config, "mining_k", 1))
        if args.torch_compile:  # the views' hundreds of small ops fused, as the model's
            self.train_dataset.compile_views(mode=args.torch_compile_mode)
        self.device_view_augments = self.device_neighbour_augments = None
        self._neighbour_table_tag = None
        self.num_train_rows = len(self.train_dataset)
        self._check_one_global_batch()
        self.train_dataloader = None
        self._build_knn_dataloaders(args, self.model_config.evaluation_image_size)

    def _build_knn_dataloaders(self, args: TrainingArguments, size: int) -> None:
        """The kNN monitor's bank (train split, or its first rows when streaming) and test loaders."""
        loader_kwargs = dict(num_workers=args.dataloader_num_workers, persistent_workers=args.dataloader_num_workers > 0,
                             worker_init_fn=ignore_stop_signals)
        self.knn_dataloaders = None
        if self.splits.label_column is not None:
            eval_transform = data_lib.build_view_transform("eval", size, self.image_mean, self.image_std)
            bank, test = (
                DataLoader(
                    data_lib.EvalImageDataset(split, self.splits.image_column, self.splits.label_column, eval_transform),
                    batch_size=args.per_device_eval_batch_size, collate_fn=data_lib.collate_eval, **loader_kwargs,
                )
                for split in (self.splits.train, self.splits.eval)
            )
            self.knn_dataloaders = (bank, test)
        else:
            logger.warning("The dataset has no label column: the kNN monitor is off.")

    def _check_batch_fits(self) -> None:
        """Every queue must hold at least one global batch; split BatchNorm must divide the per-device batch."""
        global_batch = self.args.per_device_train_batch_size * self.accelerator.num_processes
        keys_per_step = global_batch * self.model.queue_keys_per_sample
        for name, module in self.model.named_modules():
            if isinstance(module, FeatureQueue) and keys_per_step > module.size:
                raise ValueError(
                    f"The global batch ({global_batch} = {self.args.per_device_train_batch_size} per device x "
                    f"{self.accelerator.num_processes} processes, x{self.model.queue_keys_per_sample} keys per image) "
                    f"does not fit the queue {name!r} (size {module.size}): raise its size "
                    "(--config_overrides queue_size=N) or lower --per_device_train_batch_size."
                )
        splits = getattr(self.model_config, "bn_splits", 1)
        if self.args.per_device_train_batch_size % splits:
            raise ValueError(
                f"--per_device_train_batch_size {self.args.per_device_train_batch_size} is not divisible by "
                f"bn_splits={splits}; change one of them."
            )

    def _build_optimisation(self) -> None:
        args = self.args
        self.global_batch_size = (
            args.per_device_train_batch_size * self.accelerator.num_processes * args.gradient_accumulation_steps
        )
        # Linear scaling rule of the protocol: lr = 0.06 x global batch / 256, unless --learning_rate is given.
        self.learning_rate = args.learning_rate or args.base_learning_rate * self.global_batch_size / 256
        if args.min_learning_rate >= self.learning_rate:  # before anything is prepared
            raise ValueError(f"--min_learning_rate ({args.min_learning_rate:g}) must be below the peak learning rate "
                             f"({self.learning_rate:g}): lower it, or raise --learning_rate / --base_learning_rate.")
        if args.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                [p for p in self.model.parameters() if p.requires_grad], lr=self.learning_rate, momentum=args.momentum,
                weight_decay=args.weight_decay,
            )
        elif args.optimizer == "adamw":
            # timm's grouping: no weight decay on 1-d parameters (biases, norm weights) nor on ViT tokens; frozen
            # teachers are left out.
            skip = [f"{prefix}.{name}" if prefix else name
                    for prefix, module in self.model.named_modules() if hasattr(module, "no_weight_decay")
                    for name in module.no_weight_decay()]  # e.g. a timm ViT's pos_embed / cls_token
            groups = timm.optim.param_groups_weight_decay(self.model, args.weight_decay, no_weight_decay_list=skip)
            groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]
            self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.learning_rate)
        else:
            raise ValueError(f"--optimizer must be 'sgd' or 'adamw', got {args.optimizer!r}.")
        # The groups --weight_decay_end anneals (AdamW's no-decay group of biases, norms and ViT tokens stays at 0),
        # by index: prepare() and load_state() load state dicts, which replace the group dicts themselves.
        self.decayed_groups = [i for i, group in enumerate(self.optimizer.param_groups) if group["weight_decay"] > 0]
        # Steps per epoch are counted on the prepared (sharded) loader: each process sees 1/N of the batches.
        if self.train_dataloader is None or args.streaming:  # --data_on_device, --streaming: no loader to shard
            self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
            self.batches_per_epoch = self.num_train_rows // (args.per_device_train_batch_size * self.accelerator.num_processes)
        else:
            self.model, self.optimizer, self.train_dataloader = self.accelerator.prepare(
                self.model, self.optimizer, self.train_dataloader
            )
            self.batches_per_epoch = len(self.train_dataloader)
        if args.torch_compile and not isinstance(self.model, torch._dynamo.eval_frame.OptimizedModule):
            # Accelerate keeps one state per process: after an earlier Accelerator without compile (a second run in a
            # notebook or benchmark), its dynamo plugin stays off, so the model is compiled here as prepare() would.
            self.model = torch.compile(self.model, backend="inductor", mode=args.torch_compile_mode)
        if self.knn_dataloaders is not None:
            self.knn_dataloaders = tuple(self.accelerator.prepare(*self.knn_dataloaders))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / args.gradient_accumulation_steps)
        self.max_train_steps = args.max_train_steps or args.num_train_epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.max_train_steps / self.steps_per_epoch)
        warmup_steps = int(args.warmup_epochs * self.steps_per_epoch)
        if warmup_steps >= self.max_train_steps:
            logger.warning(
                "The warm-up (%d steps: --warmup_epochs %g x %d steps per epoch) is not shorter than the run "
                "(%d steps): the learning rate never reaches its peak %g and never decays. Pass --warmup_epochs 0, "
                "or a value below %.3g (the run's length in epochs).", warmup_steps, args.warmup_epochs, self.steps_per_epoch,
                self.max_train_steps, self.learning_rate, self.max_train_steps / self.steps_per_epoch)
        # The prepared scheduler steps once per process per optimiser step, hence the factor.
        processes = self.accelerator.num_processes
        self.lr_scheduler = self.accelerator.prepare(get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer,
            num_warmup_steps=warmup_steps * processes,
            num_training_steps=self.max_train_steps * processes,
            min_lr=args.min_learning_rate,  # 0: transformers' plain cosine to 0
        ))

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, global_step: int, epoch: int, batches_done_in_epoch: int) -> Path:
        """accelerator.save_state (model incl. teachers and queues, optimiser, scheduler, RNG) + the loop position.

        Written to a temporary folder and renamed when complete, so a crash while saving never leaves a
        half-written checkpoint that ``latest`` would pick.
        """
        start = time.perf_counter()
        final = self.output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{global_step}"
        partial = final.with_name(final.name + ".partial")
        self.accelerator.save_state(str(partial), safe_serialization=True)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            split_state = split_batchnorm_state(self.accelerator.unwrap_model(self.model))
            if split_state:
                safetensors.torch.save_file({k: v.detach().cpu().contiguous() for k, v in split_state.items()},
                                            str(partial / SPLIT_BATCHNORM_FILE))
            state = {"global_step": global_step, "epoch": epoch, "batches_done_in_epoch": batches_done_in_epoch,
                     "knn_history": self.knn_history, "knn_random_init": self.knn_random_init}
            (partial / STATE_FILE).write_text(json.dumps(state, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            self._prune_checkpoints()
        self.accelerator.wait_for_everyone()
        self.seconds_spent["checkpoints"] += time.perf_counter() - start
        for callback in self.callbacks:
            callback.on_save(self, global_step, final)
        return final

    def _prune_checkpoints(self) -> None:
        limit = self.args.checkpoints_total_limit
        if limit:
            for old in list_checkpoints(self.output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        start = time.perf_counter()
        self.accelerator.load_state(str(path))
        if (path / SPLIT_BATCHNORM_FILE).is_file():  # older checkpoints: the splits restart from the running stats
            load_split_batchnorm_state(self.accelerator.unwrap_model(self.model),
                                       safetensors.torch.load_file(str(path / SPLIT_BATCHNORM_FILE)))
        state = json.loads((path / STATE_FILE).read_text())
        self.seconds_spent["checkpoints"] += time.perf_counter() - start
        self.accelerator.print(f"Resumed from {path} (step {state['global_step']}, epoch {state['epoch']}).")
        return state

    # ------------------------------------------------------------------ loop

    def refresh_neighbours(self, epoch: int) -> None:
        """Give the train set the neighbour table that applies at ``epoch`` (methods with ``neighbour_views``).

        Config fields read: ``mining_encoder`` (folder or Hub id mined before training; None: every image is its own
        neighbour until the first re-mining), ``mining_every_n_epochs`` (0: never re-mine; E: re-mine with the
        current student at epochs E, 2E, ...), ``mining_k``. Tables are cached in ``output_dir/mining`` so a resumed
        run trains with exactly the table the interrupted run used.
        """
        if not getattr(self.train_dataset, "neighbour_transforms", None):
            return
        config, accelerator = self.model_config, self.accelerator
        every = getattr(config, "mining_every_n_epochs", 0) or 0
        if every and epoch >= every:
            mined_at = epoch // every * every
            tag, source = f"epoch_{mined_at}", "student"
        elif getattr(config, "mining_encoder", None):
            tag, source = "initial", config.mining_encoder
        else:
            return
        if tag == self._neighbour_table_tag:
            return
        start = time.perf_counter()
        path = mining.cache_path(self.output_dir, tag)
        table = mining.load_neighbour_table(path, len(self.train_dataset), config.mining_k)
        if table is None:
            if source == "student":
                if mined_at != epoch:
                    logger.warning("No cached neighbour table %s: mining with the current student instead.", path)
                encoder = accelerator.unwrap_model(self.model).encoder
                transform = data_lib.build_view_transform("eval", config.evaluation_image_size, self.image_mean,
                                                          self.image_std)
            else:
                encoder = load_frozen_encoder(source).to(accelerator.device)
                prep = resolve_preprocessing(source, encoder)
                transform = data_lib.build_view_transform("eval", prep.image_size, prep.mean, prep.std)
            loader = DataLoader(
                data_lib.EvalImageDataset(self.splits.train, self.splits.image_column, self.splits.label_column, transform),
                batch_size=self.args.per_device_eval_batch_size, collate_fn=data_lib.collate_eval,
                num_workers=self.args.dataloader_num_workers, worker_init_fn=ignore_stop_signals,
            )
            # Sharded like a prepared loader, but not registered with the accelerator: save_state/load_state then
            # see the same dataloaders whether or not this run had to mine.
            loader = prepare_data_loader(loader, accelerator.device, accelerator.num_processes,
                                         accelerator.process_index, put_on_device=True)
            table = mining.mine_neighbours(encoder, loader, accelerator, config.mining_k,
                                           f"mining {config.mining_k} neighbours ({source})")
            if accelerator.is_main_process:
                mining.save_neighbour_table(path, table, source)
            accelerator.wait_for_everyone()
            accelerator.print(f"Mined {config.mining_k} neighbours per image with {source}; cached in {path}.")
        self.train_dataset.set_neighbours(table)
        self._neighbour_table_tag = tag
        self.seconds_spent["mining"] += time.perf_counter() - start

    def evaluate_knn(self) -> tuple[float, torch.Tensor, torch.Tensor] | None:
        """kNN top-1 of the published encoder (``model.encoder``: the student, PatchMix's momentum encoder), with
        the test features and labels it used (None without labels)."""
        if self.knn_dataloaders is None:
            return None
        start = time.perf_counter()
        encoder = self.accelerator.unwrap_model(self.model).encoder
        bank, test = self.knn_dataloaders
        bank_features, bank_labels = extract_features(encoder, bank, self.accelerator, "kNN bank")
        test_features, test_labels = extract_features(encoder, test, self.accelerator, "kNN test")
        predictions = knn_predict(test_features, bank_features, bank_labels, self.splits.num_classes,
                                  self.args.knn_k, self.args.knn_temperature)
        top1 = (predictions == test_labels).float().mean().item()
        self.seconds_spent["knn"] += time.perf_counter() - start
        return top1, test_features, test_labels

    def train(self) -> dict[str, Any]:
        """Run the loop to ``max_train_steps``, then write the Hub folder and all_results.json. Returns the results.

        SIGTERM or SIGINT (Ctrl-C) during the run: every process finishes its optimiser step, a checkpoint is written
        at that step and `TrainingInterrupted` is raised (see `preemption`)."""
        with StopSignals() as stop:
            return self._train(stop)

    def resume_command(self) -> str:
        """This run's command line with ``--resume_from_checkpoint auto`` (replacing any resume flag it had)."""
        argv, kept, skip_value = sys.argv[1:], [], False
        for arg in argv:
            if skip_value:
                skip_value = False
            elif arg == "--resume_from_checkpoint":
                skip_value = True
            elif not arg.startswith("--resume_from_checkpoint="):
                kept.append(arg)
        return shlex.join(["accelerate", "launch", sys.argv[0], *kept, "--resume_from_checkpoint", "auto"])

    def _train(self, stop: StopSignals) -> dict[str, Any]:
        args, accelerator = self.args, self.accelerator
        accelerator.init_trackers("hf_contrastive", config=_loggable(args.to_dict()))
        global_step, starting_epoch, resume_batches = 0, 0, 0
        if self.resume_checkpoint is not None:
            state = self.load_checkpoint(self.resume_checkpoint)
            global_step, starting_epoch = state["global_step"], state["epoch"]
            resume_batches, self.knn_history = state["batches_done_in_epoch"], state["knn_history"]
            self.knn_random_init = state.get("knn_random_init")
        else:
            if args.resume_from_checkpoint == "auto":
                accelerator.print(f"--resume_from_checkpoint auto: no checkpoint in {self.output_dir / 'checkpoints'}; "
                                  "starting a new run.")
            if args.knn_random_init:
                self._record_knn_random_init()
        unwrapped = accelerator.unwrap_model(self.model)
        # After each step: the queues and the teachers' EMA. With --torch_compile both are compiled too (the model's
        # forward is compiled by Accelerate): the EMA walks every teacher parameter, in eager mode a launch per
        # group. The progress is a Python float, which dynamo turns symbolic at its second value: one recompile.
        enqueue, momentum_update = unwrapped.enqueue, unwrapped.momentum_update
        if args.torch_compile:
            enqueue, momentum_update = (torch.compile(update, fullgraph=True, mode=args.torch_compile_mode)
                                        for update in (enqueue, momentum_update))
        checkpoint_every = int(args.checkpointing_steps) if (args.checkpointing_steps or "").isdigit() else None

        accelerator.print(
            f"{self.spec.name} | {self.model_config.backbone} | {self.num_train_rows} train images"
            f"{' (streamed)' if args.streaming else ''} | "
            f"global batch {self.global_batch_size} | lr {self.learning_rate:g} | {self.max_train_steps} steps "
            f"({self.num_epochs} epochs) | {accelerator.num_processes} process(es), {accelerator.device}, "
            f"mixed precision {accelerator.mixed_precision}"
        )
        for callback in self.callbacks:
            callback.on_train_begin(self, global_step)
        progress = tqdm(total=self.max_train_steps, initial=global_step, desc="pretraining",
                        disable=not accelerator.is_local_main_process, dynamic_ncols=True)
        start_time, samples_seen, last_step_loss = time.perf_counter(), 0, None
        # The loss stays on the device and reaches the host once per logging window or checkpoint, not per
        # step: .item() makes the host wait for the device, so a per-step read keeps it from queueing ahead.
        window_loss_sum = torch.zeros((), device=accelerator.device)
        window_steps, unchecked_from = 0, global_step + 1
        saved_at = global_step if self.resume_checkpoint is not None else None  # the step of the newest checkpoint

        def stop_if_asked(epoch: int, batches_done_in_epoch: int) -> None:
            """After a step (or an epoch's end work): on an agreed stop signal, checkpoint this step and raise."""
            nonlocal unchecked_from, saved_at
            number = stop.agreed()
            if number is None:
                return
            accelerator.print(f"\n{signal.Signals(number).name} received: saving a checkpoint at step {global_step}.")
            if saved_at != global_step:
                if unchecked_from <= global_step:  # a checkpoint is only written after its steps' losses were checked
                    self._checked_mean_loss(window_loss_sum, window_steps, unchecked_from, global_step)
                    unchecked_from = global_step + 1
                self.save_checkpoint(global_step, epoch, batches_done_in_epoch)
                saved_at = global_step
            progress.close()
            accelerator.end_training()
            checkpoint = self.output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{saved_at}"
            if not checkpoint.is_dir():  # nothing trained since a --resume_from_checkpoint folder elsewhere
                checkpoint = self.resume_checkpoint
            interrupted = TrainingInterrupted(number, global_step, checkpoint, self.resume_command())
            accelerator.print(str(interrupted))
            raise interrupted

        self.model.train()
        # A checkpoint of the last step (a run stopped right after it) goes straight on to the final outputs.
        first_epoch = starting_epoch if global_step < self.max_train_steps else self.num_epochs
        for epoch in range(first_epoch, self.num_epochs):
            self.train_dataset.set_epoch(epoch)
            skip = resume_batches if epoch == starting_epoch else 0
            if args.streaming:
                # The stream is endless and deterministic per epoch: resuming re-reads and drops the batches done.
                dataloader = (send_to_device(batch, accelerator.device)
                              for batch in itertools.islice(self.train_dataloader, skip, self.batches_per_epoch))
            elif args.data_on_device:
                self.refresh_neighbours(epoch)
                dataloader = self.train_dataset.batches(epoch, skip, args.per_device_train_batch_size,
                                                        accelerator.process_index, accelerator.num_processes)
            else:
                self.train_dataloader.set_epoch(epoch)
                self.refresh_neighbours(epoch)
                dataloader = accelerator.skip_first_batches(self.train_dataloader, skip) if skip else self.train_dataloader
            batches_done = skip
            for batch in dataloader:
                with accelerator.accumulate(self.model):
                    inputs = {"views": batch["views"]}
                    if "neighbour_views" in batch:
                        inputs["neighbour_views"] = batch["neighbour_views"]
                    if self.device_view_augments is not None:
                        inputs = self._augment_on_device(inputs, epoch, batches_done)
                    if args.channels_last:  # every image list the model gets: views and SPPS's neighbour_views
                        inputs = {name: [view.contiguous(memory_format=torch.channels_last) for view in views]
                                  for name, views in inputs.items()}
                    if args.weight_decay_end is not None:  # from the step count, so a resumed run is exact
                        for index in self.decayed_groups:
                            self.optimizer.param_groups[index]["weight_decay"] = cosine_weight_decay(
                                args.weight_decay, args.weight_decay_end, global_step, self.max_train_steps)
                    outputs = self.model(**inputs)
                    accelerator.backward(outputs.loss)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                if outputs.queue_keys:
                    enqueue(accelerator.gather(outputs.queue_keys))
                batches_done += 1
                samples_seen += batch["views"][0].shape[0] * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                momentum_update(progress=global_step / self.max_train_steps)
                global_step += 1
                # The loss of the global batch: per-process losses are means over equal per-device batches.
                last_step_loss = outputs.loss.detach().float()
                window_loss_sum += last_step_loss
                window_steps += 1
                progress.update(1)
                log_now = global_step % args.logging_steps == 0 or global_step >= self.max_train_steps
                save_now = bool(checkpoint_every) and global_step % checkpoint_every == 0
                if log_now or save_now:  # a checkpoint is only written after its steps' losses were checked
                    window_loss = self._checked_mean_loss(window_loss_sum, window_steps, unchecked_from, global_step)
                    unchecked_from = global_step + 1
                if log_now:
                    progress.set_postfix(loss=f"{window_loss:.4f}", epoch=epoch)
                    logs = {"train/loss": window_loss, "train/lr": self.lr_scheduler.get_last_lr()[0],
                            "train/epoch": epoch}
                    if self.decayed_groups:
                        logs["train/weight_decay"] = self.optimizer.param_groups[self.decayed_groups[0]]["weight_decay"]
                    accelerator.log(logs, step=global_step)
                    window_loss_sum.zero_()
                    window_steps = 0
                if save_now:
                    self.save_checkpoint(global_step, epoch, batches_done)
                    saved_at = global_step
                # Every callback sees the step; one True ends training (the same decision on every process).
                if any([callback.on_step_end(self, global_step) for callback in self.callbacks]):
                    self.stop_requested = True
                stop_if_asked(epoch, batches_done)
                if global_step >= self.max_train_steps or self.stop_requested:
                    break
            epochs_done = epoch + 1
            is_last = global_step >= self.max_train_steps or self.stop_requested
            if args.checkpointing_steps == "epoch" and not is_last:
                if unchecked_from <= global_step:
                    self._checked_mean_loss(window_loss_sum, window_steps, unchecked_from, global_step)
                    unchecked_from = global_step + 1
                self.save_checkpoint(global_step, epochs_done, 0)
                saved_at = global_step
            if args.knn_every_n_epochs > 0 and epochs_done % args.knn_every_n_epochs == 0 and not is_last:
                self._record_knn(global_step, epochs_done, progress)
            if is_last:
                break
            stop_if_asked(epochs_done, 0)  # a signal during the epoch's checkpoint or kNN monitor
        stop_if_asked(self.num_epochs, 0)  # before the final outputs: they can take longer than a grace period
        progress.close()
        train_runtime = time.perf_counter() - start_time
        self.check_queues_in_sync()
        knn_top1 = self._record_knn(global_step, global_step / self.steps_per_epoch, None)
        final_loss = None if last_step_loss is None else accelerator.reduce(last_step_loss, "mean").item()
        return self._finish(global_step, knn_top1, train_runtime, samples_seen, final_loss)

    def _checked_mean_loss(self, window_loss_sum: torch.Tensor, window_steps: int, first_step: int,
                           last_step: int) -> float:
        """The global batch's mean loss over the window's ``window_steps`` steps (one host sync). Raises before
        anything else is saved when it is not finite: a non-finite step among first_step..last_step, the steps
        not yet checked, makes the sum non-finite."""
        window_loss = self.accelerator.reduce(window_loss_sum, "mean").item() / window_steps
        if math.isfinite(window_loss):
            return window_loss
        checkpoints = list_checkpoints(self.output_dir)
        steps = f"at step {last_step}" if first_step == last_step else f"within steps {first_step}-{last_step}"
        advice = "Lower --learning_rate, or use bf16 instead of fp16, then"
        if checkpoints:
            where = (f"the last checkpoint, {checkpoints[-1]}, is untouched. "
                     f"{advice} continue with --resume_from_checkpoint latest.")
        else:  # nothing to resume: pointing at --resume_from_checkpoint would fail
            where = f"no checkpoint has been written yet. {advice} start the run again."
        raise FloatingPointError(f"The loss became {window_loss} {steps}; {where}")

    def _augment_on_device(self, inputs: dict[str, list[torch.Tensor]], epoch: int, batch_in_epoch: int) -> dict:
        """``--augment_on_device``: the photometric half of every view of this batch, where the batch is.

        Each view's random parameters are seeded by (seed, epoch, batch in epoch, process, view), so a resumed run
        sees the same views (the loader's crops are seeded per image as without the flag)."""
        # DEVICE_AUGMENT_SEED_TAG keeps these seeds apart from the loader's (view_seed of 3 or 6 integers).
        position = (self.args.seed, epoch, batch_in_epoch, self.accelerator.process_index, DEVICE_AUGMENT_SEED_TAG)
        augmented = {}
        for group, (name, augments) in enumerate((("views", self.device_view_augments),
                                                  ("neighbour_views", self.device_neighbour_augments))):
            if name in inputs:
                augmented[name] = [augment(images, seed=data_lib.view_seed(*position, group, number))
                                   for number, (augment, images) in enumerate(zip(augments, inputs[name], strict=True))]
        return augmented

    def _record_knn_random_init(self) -> None:
        """kNN top-1 of the network before its first step: what an untrained network of this shape scores on these
        images, the baseline the final number is read against."""
        with torch.random.fork_rng(devices=[]):  # the loaders' worker seeds must not shift the training's draws
            evaluation = self.evaluate_knn()
        self.model.train()
        if evaluation is not None:
            self.knn_random_init = evaluation[0]
            before = "as initialised from --init_from" if self.args.init_from else "at random init"
            self.accelerator.print(f"kNN top-1 {before}: {100 * self.knn_random_init:.2f}%")
            for callback in self.callbacks:
                callback.on_evaluate(self, 0, {"knn_top1": self.knn_random_init})

    def _record_knn(self, global_step: int, epoch: float, progress: tqdm | None) -> float | None:
        evaluation = self.evaluate_knn()
        if evaluation is None:
            return None
        knn_top1, self.last_test_features, self.last_test_labels = evaluation
        self.knn_history.append({"step": global_step, "epoch": round(epoch, 3), "knn_top1": knn_top1})
        self.accelerator.log({"eval/knn_top1": knn_top1}, step=global_step)
        message = f"epoch {epoch:g} step {global_step}: kNN top-1 {100 * knn_top1:.2f}%"
        (progress.write if progress is not None else self.accelerator.print)(message)
        self.model.train()
        for callback in self.callbacks:
            callback.on_evaluate(self, global_step, {"knn_top1": knn_top1})
        return knn_top1

    def _push(self, model_dir: Path) -> None:
        """Push the native timm folder when timm can rebuild the backbone (loads anywhere without remote code),
        else the remote-code folder; say which and why."""
        native, reason = can_export_timm(self.model_config)
        folder = export_timm(model_dir, self.output_dir / "model_timm", overwrite=True) if native else model_dir
        url = push_folder_to_hub(folder, self.args.hub_model_id)
        kind = "native timm folder (no remote code)" if native else f"remote-code folder ({reason})"
        self.accelerator.print(f"Pushed the {kind} {folder} to https://huggingface.co/{self.args.hub_model_id} ({url})")

    def check_queues_in_sync(self) -> None:
        """Every process must hold the same queues (they are filled with gathered keys); fail loudly if not."""
        if self.accelerator.num_processes == 1:
            return
        for name, module in self.accelerator.unwrap_model(self.model).named_modules():
            if isinstance(module, FeatureQueue):
                summary = torch.stack([module.features.double().sum(), module.pointer.double()]).to(self.accelerator.device)
                gathered = self.accelerator.gather(summary[None]).view(-1, 2)
                if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
                    raise RuntimeError(f"Queue {name!r} differs between processes: {gathered.tolist()}.")

    def _eval_split_description(self) -> str:
        """The eval split as a datasets slice when --max_eval_samples cut it (e.g. ``test[:2000]``)."""
        name, size = self.splits.eval_split_name, len(self.splits.eval)
        return f"{name}[:{size}]" if self.args.max_eval_samples and size == self.args.max_eval_samples else name

    def _write_card_plots(self, model_dir: Path) -> dict[str, bool]:
        """kNN accuracy over training and a t-SNE map of the last test features, as PNGs next to the card."""
        plots = {}
        if self.knn_history:
            plot_knn_history(self.knn_history, model_dir / "knn_history.png",
                             subtitle=f"{self.spec.title} {self.model_config.backbone}, "
                                      f"{dataset_display_name(self.args.dataset_name, self.dataset_stats)}")
            plots["knn_plot"] = True
        if getattr(self, "last_test_features", None) is not None:
            plot_embedding_map(self.last_test_features.cpu().numpy(), self.last_test_labels.cpu().numpy(),
                               self.splits.class_names, model_dir / "embedding_tsne.png", seed=self.args.seed)
            plots["embedding_plot"] = True
        return plots

    def _finish(self, global_step: int, knn_top1: float | None, train_runtime: float, samples_seen: int, loss) -> dict:
        args, accelerator = self.args, self.accelerator
        results = {
            "method": self.spec.name,
            "backbone": self.model_config.backbone,
            "knn_top1": knn_top1,
            "knn_top1_random_init": self.knn_random_init,
            "epochs": round(global_step / self.steps_per_epoch, 3),
            "global_step": global_step,
            "train_samples": self.num_train_rows,
            "streaming": self.args.streaming,
            "eval_samples": len(self.splits.eval),
            "train_runtime_s": round(train_runtime, 2),
            "train_samples_per_second": round(samples_seen / train_runtime, 2) if train_runtime > 0 else None,
            "final_loss": loss,
            "global_batch_size": self.global_batch_size,
            "num_processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
            "device": _hardware(accelerator),
            "knn_history": self.knn_history,
            "skipped_images": {split: len(rows) for split, rows in self.skipped_images.items()},
        }
        model_dir = self.output_dir / "model"
        if accelerator.is_main_process:
            context = CardContext(
                dataset_name=args.dataset_name,
                dataset_stats=self.dataset_stats,
                train_samples=self.num_train_rows,
                epochs=results["epochs"],
                global_batch_size=self.global_batch_size,
                command=" ".join(["accelerate launch recipes/train.py"] + [shlex.quote(a) for a in sys.argv[1:]]),
                knn_top1=knn_top1,
                knn_top1_random_init=self.knn_random_init,
                eval_split=self._eval_split_description(),
                recipe=args.to_dict(),
                hardware=results["device"],
                train_runtime_s=results["train_runtime_s"],
                train_samples_per_second=results["train_samples_per_second"],
                learning_rate=self.learning_rate,
            )
            unwrapped = accelerator.unwrap_model(self.model)
            model_dir.mkdir(parents=True, exist_ok=True)
            plots = self._write_card_plots(model_dir) if args.card_plots else {}
            save_hub_folder(unwrapped, self.spec, model_dir, image_mean=self.image_mean, image_std=self.image_std,
                            context=context, repo_id=args.hub_model_id, **plots)
            (self.output_dir / "all_results.json").write_text(json.dumps(results, indent=2))
            if args.push_to_hub:
                self._push(model_dir)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        for split, rows in self.skipped_images.items():
            accelerator.print(f"--skip_bad_images: skipped {len(rows)} undecodable {split} images (rows {rows[:10]}).")
        knn_text = f"{100 * knn_top1:.2f}%" if knn_top1 is not None else "n/a (no labels)"
        if knn_top1 is not None and self.knn_random_init is not None:
            init = "as initialised" if args.init_from else "random init"
            knn_text += f" ({init}: {100 * self.knn_random_init:.2f}%)"
        accelerator.print(
            f"\nkNN top-1 (k={args.knn_k}, T={args.knn_temperature}) on {len(self.splits.eval)} eval images: {knn_text}\n"
            f"Hub-ready folder: {model_dir}\n"
            f"Load it: import hf_contrastive; from transformers import AutoModel; "
            f"encoder = AutoModel.from_pretrained({str(model_dir)!r})"
        )
        for callback in self.callbacks:
            callback.on_train_end(self, results)
        return results


def _loggable(values: dict[str, Any]) -> dict[str, Any]:
    """Trackers accept scalars only: nested values become strings."""
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v) for k, v in values.items()}


def _hardware(accelerator: Accelerator) -> str:
    if accelerator.device.type == "cuda":
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name(accelerator.device)}"
    return f"{accelerator.num_processes} x CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train(args: TrainingArguments, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Pretrain as described by ``args`` (with ``callbacks``, see `TrainerCallback`); returns the results also
    written to ``output_dir/all_results.json``."""
    return Pretrainer(args, callbacks).train()
