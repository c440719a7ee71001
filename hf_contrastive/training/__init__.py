"""Pretraining: arguments and the Accelerate loop."""

from .arguments import TrainingArguments, parse_args
from .trainer import Trainer, train

__all__ = ["Trainer", "TrainingArguments", "parse_args", "train"]
