"""Pretraining: arguments, the Accelerate loop, its command line and stopping on a signal."""

from .arguments import TrainingArguments, parse_args
from .command_line import main
from .preemption import TrainingInterrupted
from .trainer import Pretrainer, train

__all__ = ["Pretrainer", "TrainingArguments", "TrainingInterrupted", "main", "parse_args", "train"]
