"""Pretraining: arguments and the Accelerate loop."""

from .arguments import TrainingArguments, parse_args
from .trainer import Pretrainer, train

__all__ = ["Pretrainer", "TrainingArguments", "parse_args", "train"]
