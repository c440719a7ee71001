"""What ``hf-contrastive methods [NAME]`` prints: the registered methods, and one method's paper, views, config fields
and recipes. Everything is read from the registry (`MethodSpec`) and the config classes, so it cannot drift."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from transformers import PretrainedConfig

from .models import ContrastiveConfig
from .registry import MethodSpec, available_methods, get_method

STATUS_MEANING = {
    "implemented": "follows the published formulas and code",
    "reconstruction": "rebuilt from the paper's abstract; no published code to follow",
}
# Filled in from the backbone when the model is built, not set by users.
_DERIVED_FIELDS = {"hidden_size"}


def views_text(views: list[str]) -> str:
    """``["strong", "strong", "local", "local"]`` -> ``"strong x2, local x2"`` (kinds in order of first use)."""
    counts = {kind: views.count(kind) for kind in dict.fromkeys(views)}
    return ", ".join(kind if count == 1 else f"{kind} x{count}" for kind, count in counts.items())


def yaml_value(value: object) -> str:
    """A value as --config_overrides and the recipe's ``model:`` section take it (YAML flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def config_fields(spec: MethodSpec) -> tuple[dict[str, object], dict[str, object]]:
    """The method config's defaults as (the method's own fields, the backbone fields shared by every method),
    without transformers' generic fields (``id2label``, ``return_dict``, ...)."""
    values = spec.config_class().to_dict()
    generic = set(PretrainedConfig().to_dict())
    shared_names = [name for name in inspect.signature(ContrastiveConfig.__init__).parameters
                    if name not in ("self", "kwargs") and name not in _DERIVED_FIELDS]
    own = {name: value for name, value in values.items()
           if name not in generic and name not in shared_names and name not in _DERIVED_FIELDS}
    shared = {name: values[name] for name in shared_names if name in values}
    return own, shared


def find_recipes(name: str, recipes_dir: Path) -> list[Path]:
    """The recipe files in ``recipes_dir`` whose ``method:`` is ``name`` (none when the folder is absent, as for a
    wheel install outside a checkout)."""
    if not recipes_dir.is_dir():
        return []
    recipes = []
    for path in sorted(recipes_dir.glob("*.yaml")):
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # not ours to judge here; train.py reports a broken recipe when it is used
        if isinstance(content, dict) and str(content.get("method", "")).lower().replace("-", "_") == name:
            recipes.append(path)
    return recipes


def methods_table() -> str:
    """One row per registered method: name, status, views, paper (arXiv id)."""
    specs = [get_method(name) for name in available_methods()]
    rows = [("METHOD", "STATUS", "VIEWS", "PAPER")]
    rows += [(spec.name, spec.status, views_text(list(spec.config_class().views)), f"{spec.paper} (arXiv {spec.arxiv})")
             for spec in specs]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows]
    lines += ["", "STATUS: " + "; ".join(f"{status}: {meaning}" for status, meaning in STATUS_MEANING.items()) + ".",
              "`hf-contrastive methods NAME` shows a method's config fields and recipes; train one with "
              "`accelerate launch recipes/train.py --method NAME`."]
    return "\n".join(lines)


def method_details(name: str, recipes_dir: Path) -> str:
    """A method's paper, status, views and config fields with their defaults, and its recipes in ``recipes_dir``.
    Raises ValueError (listing the known methods) for an unknown name."""
    spec = get_method(name)
    own, shared = config_fields(spec)
    width = max(len(field) for field in [*own, *shared])
    status = f"{spec.status} ({STATUS_MEANING[spec.status]})" if spec.status in STATUS_MEANING else spec.status
    lines = [
        f"{spec.title} (--method {spec.name})",
        f"  paper:   {spec.paper} (https://arxiv.org/abs/{spec.arxiv})",
        f"  status:  {status}",
        f"  summary: {spec.summary}",
        f"  views:   {views_text(list(spec.config_class().views))}",
        f"  classes: {spec.config_class.__name__}, {spec.model_class.__name__}, {spec.pretraining_class.__name__}, "
        f"{spec.classification_class.__name__}",
        "",
        f"{spec.title} fields (recipe `model:` section or --config_overrides KEY=VALUE,...):",
        *(f"  {field.ljust(width)}  {yaml_value(value)}" for field, value in own.items()),
        "",
        "Backbone fields, shared by every method (same places):",
        *(f"  {field.ljust(width)}  {yaml_value(value)}" for field, value in shared.items()),
        "",
    ]
    recipes = find_recipes(spec.name, recipes_dir)
    if recipes:
        lines.append(f"Recipes in {recipes_dir}:")
        lines += [f"  accelerate launch recipes/train.py --config {path}" for path in recipes]
    else:
        lines.append(f"Recipes: none in {recipes_dir} (the paper recipes are in the repository's recipes/configs/).")
    return "\n".join(lines)
