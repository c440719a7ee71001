"""What the benchmarks that build methods from their CIFAR-10 recipes and time the real loop share (overhead.py,
throughput.py, quality.py). Apart from common.py so that scripts which only read results start without the package."""

from __future__ import annotations

import time

import yaml
from common import REPO_ROOT, synchronize

import hf_contrastive
from hf_contrastive.training import TrainerCallback

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


class StepTimes(TrainerCallback):
    """``step_times``: the time at the end of every optimiser step of the real loop, after the device finished it
    (the loop reads the loss once per logging window, so on a GPU the host would otherwise run ahead of the device
    and the gaps would be launch times, not step times)."""

    def __init__(self):
        self.step_times: list[float] = []

    def on_step_end(self, trainer, global_step: int) -> None:
        synchronize(trainer.accelerator.device)
        self.step_times.append(time.perf_counter())
