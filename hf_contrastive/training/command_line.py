"""``recipes/train.py`` as a command: exit statuses and one-line errors.

Exit status: 0 when the run finished; 2 for an error in the user's input, printed as one line on stderr
(``train.py: error: ...``, naming the bad value and the fix) without a traceback; 128 + the signal number (143
for SIGTERM, 130 for SIGINT) when the run was stopped by a signal after saving a checkpoint (see `preemption`);
1 with the full traceback for anything else, i.e. a bug. ``HF_CONTRASTIVE_TRACEBACK=1`` shows the traceback of
input errors too.

What counts as the user's input: everything read before the first step (arguments, the recipe file, the model
config, the dataset and its columns, paths, model folders, the checkpoint to resume), where our checks raise
`ValueError`, `TypeError`, `ImportError` (a tracker or optional package to install) or a file error; and, during
training, a loss that stops being finite (`FloatingPointError`, with its advice) and an undecodable image
(`hf_contrastive.data.UndecodableImageError`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..data import UndecodableImageError
from .arguments import parse_args
from .preemption import TrainingInterrupted
from .trainer import Pretrainer

TRACEBACK_VARIABLE = "HF_CONTRASTIVE_TRACEBACK"
SETUP_INPUT_ERRORS = (ValueError, TypeError, ImportError, FileNotFoundError, FileExistsError, NotADirectoryError,
                      IsADirectoryError, PermissionError)
TRAINING_INPUT_ERRORS = (FloatingPointError, UndecodableImageError)
INPUT_ERROR_STATUS = 2


def one_line(error: BaseException) -> str:
    """The error's message on one line. An error re-raised from a DataLoader worker carries the worker's traceback
    in its message: its last line is the message proper."""
    message = str(error).strip() or type(error).__name__
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _report(error: BaseException, program: str) -> int:
    if os.environ.get(TRACEBACK_VARIABLE, "").lower() in ("1", "true", "yes"):
        raise error
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    print(f"{prefix}{program}: error: {one_line(error)}", file=sys.stderr, flush=True)
    return INPUT_ERROR_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, build the run and train; returns the exit status (see the module docstring)."""
    program = Path(sys.argv[0]).name or "train.py"
    try:
        trainer = Pretrainer(parse_args(None if argv is None else list(argv)))
    except SETUP_INPUT_ERRORS as error:
        return _report(error, program)
    try:
        trainer.train()
    except TrainingInterrupted as interrupted:
        return interrupted.exit_code
    except TRAINING_INPUT_ERRORS as error:
        return _report(error, program)
    return 0
