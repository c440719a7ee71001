"""Pure loss functions of every method (formula and shapes in each docstring)."""

from .models.losses import mnn_loss, normalized_distance

__all__ = ["mnn_loss", "normalized_distance"]
