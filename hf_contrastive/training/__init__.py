"""Pretraining: arguments, the Accelerate loop, its command line and stopping on a signal."""

from .arguments import TrainingArguments, parse_args
from .callbacks import TrainerCallback
from .command_line import main
from .preemption import TrainingInterrupted
from .trainer import Pretrainer, train, training_step

__all__ = ["Pretrainer", "TrainerCallback", "TrainingArguments", "TrainingInterrupted", "main", "parse_args", "train",
           "training_step"]
