"""Process-group helpers shared by training and evaluation."""

from __future__ import annotations

import os

import torch


def distributed_without_gpu() -> bool:
    """True under torchrun (WORLD_SIZE > 1) on a machine without GPU: Accelerate then only forms the (gloo) process
    group when given ``cpu=True``; otherwise every process would run alone."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
