"""What the benchmarks that build methods from their CIFAR-10 recipes, time "ours" against the bare-backbone limit
or time the real loop share (overhead.py, throughput.py, dataloader.py, quality.py). Apart from common.py so that
scripts which only read results start without the package."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import yaml
from common import REPO_ROOT, encoder_calls, synchronize
from torch import nn

import hf_contrastive
from hf_contrastive.training import TrainerCallback, training_step

RECIPES = REPO_ROOT / "recipes" / "configs"


def recipe_config(method: str, image_size: int, queue_size: int | None, head_width: int | None = None,
                  **overrides):
    """The method's config from its CIFAR-10 recipe's ``model:`` section, at another image size and queue size
    (``None``: the recipe's), with ``head_width``: heads of that hidden and output width (the same layers), and with
    ``overrides`` (config fields) last."""
    recipe = yaml.safe_load((RECIPES / f"{method}_cifar10.yaml").read_text())
    spec = hf_contrastive.get_method(recipe["method"])
    fields = dict(recipe.get("model", {}))
    defaults = spec.config_class().to_dict()
    if "img_size" not in fields.get("backbone_kwargs", {}):  # a ViT's patch grid fixes its image size
        fields["image_size"] = image_size
    if queue_size is not None and "queue_size" in defaults:
        fields["queue_size"] = queue_size
    if head_width:
        fields.update({name: head_width for name in ("projection_hidden_size", "prediction_hidden_size",
                                                     "projection_dim") if name in defaults})
    fields.update(overrides)
    return spec, spec.config_class(**fields)


def plain_batchnorm(config):
    """``config`` with ``bn_splits`` 1 (plain BatchNorm), or ``config`` itself when it has no such field: the
    limit's backbone."""
    if not hasattr(config, "bn_splits"):
        return config
    return config.__class__(**{**config.to_dict(), "bn_splits": 1})


def view_side(kind: str, image_size: int) -> int:
    """Side of a view as `hf_contrastive.data.build_view_transform` makes it (``local``: half the image size)."""
    return max(1, image_size // 2) if kind == "local" else image_size


def view_inputs(config, batch: int, generator: torch.Generator, device: torch.device | str = "cpu",
                channels_last: bool = False) -> dict[str, list[torch.Tensor]]:
    """Random normalised images at each view's training side, as the loader gives them: ``{"views": [...]}``, plus
    ``"neighbour_views"`` for a method that has them (SPPS)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def images(kinds) -> list[torch.Tensor]:
        return [torch.randn(batch, config.num_channels, view_side(k, config.image_size), view_side(k, config.image_size),
                            generator=generator).to(device, memory_format=layout) for k in kinds]

    inputs = {"views": images(config.views)}
    if getattr(config, "neighbour_views", None):
        inputs["neighbour_views"] = images(config.neighbour_views)
    return inputs


def per_view_calls(spec, config, inputs: dict[str, list[torch.Tensor]]) -> dict[str, list[tuple[int, ...]]]:
    """The input shapes of the student's and the teachers' encoder calls in one forward, one call per view
    (`common.encoder_calls` on a copy with ``stack_views`` off): the work the limit does."""
    per_view = spec.pretraining_class(config.__class__(**{**config.to_dict(), "stack_views": False})).train()
    per_view.to(inputs["views"][0].device)
    with torch.no_grad():
        return encoder_calls(per_view, inputs)


def stacked_calls(calls: dict[str, list[tuple[int, ...]]]) -> dict[str, list[tuple[int, ...]]]:
    """``calls`` with the inputs of one shape and side in one call: the fewest launches a backbone allows."""
    stacked = {}
    for role, shapes in calls.items():
        batch_of: dict[tuple[int, ...], int] = {}
        for batch, *image in shapes:
            batch_of[tuple(image)] = batch_of.get(tuple(image), 0) + batch
        stacked[role] = [(batch, *image) for image, batch in batch_of.items()]
    return stacked


def sgd(parameters, batch: int, foreach: bool | None = None) -> torch.optim.Optimizer:
    """SGD as the training protocol (lr 0.06 x batch / 256, momentum 0.9, weight decay 5e-4), for every variant;
    ``foreach`` None is torch's default (a loop over tensors on CPU, foreach on CUDA)."""
    return torch.optim.SGD([p for p in parameters if p.requires_grad], lr=0.06 * batch / 256, momentum=0.9,
                           weight_decay=5e-4, foreach=foreach)


def ours_step(spec, config, inputs: dict, device, foreach: bool | None = None, progress: float | None = 0.5,
              prepare: Callable[[nn.Module], nn.Module] | None = None, forward=None):
    """(step, modules, optimizer): one training step of the method's ForPreTraining model on fixed ``inputs``, as
    the loop runs it (`hf_contrastive.training.training_step`); ``prepare`` edits the model before it moves to
    ``device`` (the proxy's cheap convolutions), ``forward`` wraps its call (autocast, compile)."""
    torch.manual_seed(0)
    model = spec.pretraining_class(config).train()
    if prepare is not None:
        prepare(model)
    model.to(device)
    optimizer = sgd(model.parameters(), inputs["views"][0].shape[0], foreach)
    call = forward(model) if forward else None

    def step() -> None:
        training_step(model, optimizer, inputs, progress=progress, forward=call)

    return step, [model], optimizer


def limit_step(spec, config, calls: dict[str, list[tuple[int, ...]]], device, generator: torch.Generator,
               foreach: bool | None = None, prepare: Callable[[nn.Module], nn.Module] | None = None,
               wrap: Callable[[nn.Module], Callable] | None = None):
    """(step, modules, optimizer): the bare backbone doing the step's unavoidable work, in plain BatchNorm
    (``bn_splits`` 1): forward and backward of one input per shape in ``calls["student"]``, then SGD over the
    backbone, and a no-grad forward per shape in ``calls["teacher"]``. ``prepare`` edits both backbones before they
    move to ``device``; ``wrap`` makes each one's call (torch.compile)."""
    torch.manual_seed(0)
    plain = plain_batchnorm(config)
    student, teacher = spec.model_class(plain).train(), spec.model_class(plain).train()
    if prepare is not None:
        prepare(student), prepare(teacher)
    student.to(device), teacher.to(device).requires_grad_(False)
    student_inputs = [torch.randn(shape, generator=generator).to(device) for shape in calls["student"]]
    teacher_inputs = [torch.randn(shape, generator=generator).to(device) for shape in calls["teacher"]]
    optimizer = sgd(student.parameters(), calls["student"][0][0], foreach)
    student_call, teacher_call = (wrap(student), wrap(teacher)) if wrap else (student, teacher)

    def step() -> None:
        total = sum(student_call(pixel_values=x).pooler_output.float().sum() for x in student_inputs)
        with torch.no_grad():
            for x in teacher_inputs:
                teacher_call(pixel_values=x)
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, [student, teacher], optimizer


class StepTimes(TrainerCallback):
    """``step_times``: the time at the end of every optimiser step of the real loop, after the device finished it
    (the loop reads the loss once per logging window, so on a GPU the host would otherwise run ahead of the device
    and the gaps would be launch times, not step times)."""

    def __init__(self):
        self.step_times: list[float] = []

    def on_step_end(self, trainer, global_step: int) -> None:
        synchronize(trainer.accelerator.device)
        self.step_times.append(time.perf_counter())
