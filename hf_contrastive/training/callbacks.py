"""Extension points of the training loop, in the spirit of transformers' ``TrainerCallback``.

Pass instances to ``Pretrainer(args, callbacks=[...])`` (or ``train(args, callbacks=[...])``); the loop calls each
hook on every callback, in order, with the trainer itself, whose public attributes (``args``, ``model``,
``accelerator``, ``output_dir``, ``max_train_steps``, ``knn_history``, ``seconds_spent``: seconds in kNN
evaluations, checkpoint saves and loads and neighbour mining, ...) the callback may read. A callback that
needs its own state keeps it on itself. Every hook runs on every process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import Pretrainer


class TrainerCallback:
    """Base class: override the hooks you need; the others do nothing."""

    def on_train_begin(self, trainer: Pretrainer, global_step: int) -> None:
        """Before the first step of this call (``global_step`` > 0 when the run resumes)."""

    def on_step_end(self, trainer: Pretrainer, global_step: int) -> bool | None:
        """After optimiser step ``global_step`` (1-based), its EMA update and its checkpoint, if one is due. Return
        True to end training after this step: the loop then writes its final outputs (kNN, Hub folder, results) as at
        the last step. Return the same on every process. The device may still be working on the step: call
        ``torch.cuda.synchronize()`` before reading a clock."""
        return None

    def on_evaluate(self, trainer: Pretrainer, global_step: int, metrics: dict[str, float]) -> None:
        """After a kNN evaluation (``metrics["knn_top1"]``), including the one at random init (``global_step`` 0)."""

    def on_save(self, trainer: Pretrainer, global_step: int, checkpoint: Path) -> None:
        """After a checkpoint of step ``global_step`` was written to ``checkpoint``."""

    def on_train_end(self, trainer: Pretrainer, results: dict[str, Any]) -> None:
        """After the final outputs were written; ``results`` is what all_results.json holds."""
