"""Pure loss functions of every method (formula and shapes in each docstring)."""

from .models.losses import (
    byol_loss,
    mnn_loss,
    moco_loss,
    msf_loss,
    nnclr_loss,
    normalized_distance,
    relational_loss,
    simclr_loss,
)

__all__ = [
    "byol_loss",
    "mnn_loss",
    "moco_loss",
    "msf_loss",
    "nnclr_loss",
    "normalized_distance",
    "relational_loss",
    "simclr_loss",
]
