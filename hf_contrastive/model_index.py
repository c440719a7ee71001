"""Add evaluation results to a Hub folder's model card: the ``model-index`` metadata and an "Evaluation results" table.

Every evaluation recipe (``recipes/knn_eval.py``, ``recipes/linear_eval.py``, ``recipes/finetune.py``) calls
:func:`update_model_index` on the folder it evaluated, so the card accumulates one entry per protocol (the kNN number
written at the end of training included) and re-running a protocol replaces its entry instead of adding a copy.

How an entry is stored. The Hub's ``model-index`` groups results by (task type, dataset, config, split, revision)
and keeps one task name and one source per group, so per-entry information has to live at the metric level:

* ``metrics[].name`` is the metric's name (e.g. ``linear probe top-1 (best epoch)``);
* ``metrics[].args`` holds ``protocol`` (the entry's task name), ``source`` (the recipe or command) and the protocol's
  arguments (k, T, epochs, learning-rate schedule, ...);
* the group's task name is the protocol when the group holds a single protocol, else :data:`MIXED_TASK_NAME`.

An entry is identified by (protocol, dataset, split, metric name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

SECTION_HEADING = "## Evaluation results"
SECTION_INTRO = (
    "Measured on this folder with hf_contrastive's evaluation recipes. Each row is also in the card's `model-index` "
    "metadata, with its settings under the metric's `args`."
)
TABLE_HEADER = ("protocol", "dataset", "split", "metric", "value", "settings", "source")
#: Task name of a model-index group (same task type, dataset and split) that holds several protocols.
MIXED_TASK_NAME = "Image classification (protocol per metric, see its args)"
# The template's limitation line written before any linear-probe / fine-tuning number existed.
_STALE_LIMITATION = (
    "- kNN accuracy measures frozen features; linear-probe and fine-tuning numbers are not part of this card yet."
)
_CURRENT_LIMITATION = (
    "- kNN and linear-probe accuracies measure frozen features; fine-tuning also trains the encoder. "
    "See [Evaluation results](#evaluation-results) for what was measured and how."
)
_NEXT_SECTIONS = ("## How it was trained", "## How to use", "## Limitations", "## Citation")


def _scalar(value: Any) -> Any:
    """YAML/JSON-safe scalar for ``metrics[].args``: numbers, strings, booleans and None stay; the rest is JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, default=str)


def protocol_of(result: EvalResult) -> str | None:
    """The protocol an entry was measured with: ``metric_args["protocol"]``, else its task name."""
    return (result.metric_args or {}).get("protocol") or result.task_name


def _key(result: EvalResult) -> tuple:
    return (protocol_of(result), result.dataset_type, result.dataset_split, result.metric_name)


def _settings_text(protocol_args: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in protocol_args.items())


def _format_value(value: float, metric_type: str) -> str:
    if metric_type == "accuracy" and 0.0 <= value <= 1.0:
        return f"{100 * value:.2f}%"
    return f"{value:g}"


def _escape(cell: Any) -> str:
    return str(cell).replace("\n", " ").replace("|", "\\|")


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [cell.strip().replace("\\|", "|") for cell in cells[1:-1]]


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(_escape(cell) for cell in cells) + " |"


def _update_table(text: str, cells: list[Any]) -> str:
    """Replace the row whose first four cells (protocol, dataset, split, metric) match ``cells``, else append it;
    create the section (after the card's "## Results" section) when it is missing."""
    lines = text.split("\n")
    new_row = _row(cells)
    key = [str(cell) for cell in cells[:4]]
    if SECTION_HEADING in lines:
        start = lines.index(SECTION_HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rows = [i for i in range(start + 1, end) if lines[i].lstrip().startswith("|")]
        for i in rows[2:]:  # after the header and the separator
            if _split_row(lines[i])[:4] == key:
                lines[i] = new_row
                return "\n".join(lines)
        if rows:
            lines.insert(rows[-1] + 1, new_row)
        else:
            lines[start + 1 : start + 1] = ["", _row(list(TABLE_HEADER)), "|" + "---|" * len(TABLE_HEADER), new_row]
        return "\n".join(lines)

    section = [SECTION_HEADING, "", SECTION_INTRO, "", _row(list(TABLE_HEADER)), "|" + "---|" * len(TABLE_HEADER),
               new_row, ""]
    headings = [i for i, line in enumerate(lines) if line.startswith("## ")]
    insert_at = None
    if "## Results" in lines:
        results_at = lines.index("## Results")
        insert_at = next((i for i in headings if i > results_at), None)
    if insert_at is None:
        insert_at = next((i for i in headings if lines[i] in _NEXT_SECTIONS), None)
    if insert_at is None:
        if lines and lines[-1] != "":
            lines.append("")
        return "\n".join(lines + section)
    lines[insert_at:insert_at] = section
    return "\n".join(lines)


def _name_groups(results: list[EvalResult]) -> None:
    """Give every entry its protocol in ``metric_args`` and name each model-index group after its protocol, or
    :data:`MIXED_TASK_NAME` when the group holds several (the Hub keeps one task name per group)."""
    groups: dict[tuple, list[EvalResult]] = {}
    for result in results:
        protocol = protocol_of(result)
        if protocol is not None and "protocol" not in (result.metric_args or {}):
            result.metric_args = {"protocol": protocol, **(result.metric_args or {})}
        groups.setdefault(result.unique_identifier, []).append(result)
    for members in groups.values():
        protocols = {protocol_of(result) for result in members}
        task_name = protocols.pop() if len(protocols) == 1 else MIXED_TASK_NAME
        for result in members:
            result.task_name = task_name


def update_model_index(
    folder: str | Path,
    *,
    task_name: str,
    dataset_id: str | None,
    dataset_name: str,
    split: str,
    metric_name: str,
    value: float,
    protocol_args: dict[str, Any],
    source: str,
    task_type: str = "image-classification",
    metric_type: str = "accuracy",
) -> ModelCard:
    """Add or replace one evaluation result in ``folder/README.md`` and save it; returns the updated card.

    Args:
        folder: a Hub folder; its README.md is created (metadata + the table) when missing.
        task_name: the protocol, e.g. ``"Linear probe (frozen backbone, step schedule)"``.
        dataset_id: the dataset's Hub id (``dataset.type`` in the model-index); ``dataset_name`` when None.
        dataset_name: a readable dataset name; split: the evaluated split.
        metric_name: e.g. ``"linear probe top-1 (best epoch)"``; value: the metric (accuracy in [0, 1]).
        protocol_args: the protocol's arguments (stored in the metric's ``args`` and in the table's settings).
        source: what produced the number (a recipe and its command line).

    The entry with the same (task_name, dataset, split, metric_name) is replaced; every other entry is kept.
    """
    folder = Path(folder)
    readme = folder / "README.md"
    card = ModelCard.load(readme) if readme.is_file() else ModelCard(f"# {folder.resolve().name}\n")
    value = round(float(value), 4)
    protocol_args = {name: arg for name, arg in protocol_args.items() if arg is not None}
    args = {"protocol": task_name, "source": source, **{name: _scalar(arg) for name, arg in protocol_args.items()}}
    entry = EvalResult(
        task_type=task_type,
        task_name=task_name,
        dataset_type=dataset_id or dataset_name,
        dataset_name=dataset_name,
        dataset_split=split,
        metric_type=metric_type,
        metric_name=metric_name,
        metric_value=value,
        metric_args=args,
    )
    results = [result for result in (card.data.eval_results or []) if _key(result) != _key(entry)]
    results.append(entry)
    _name_groups(results)
    if not card.data.model_name:
        card.data.model_name = folder.resolve().name
    card.data.eval_results = results

    text = card.text.replace(_STALE_LIMITATION, _CURRENT_LIMITATION)
    card.text = _update_table(text, [task_name, entry.dataset_type, split, metric_name,
                                     _format_value(value, metric_type), _settings_text(protocol_args), f"`{source}`"])
    card.save(readme)
    return card
