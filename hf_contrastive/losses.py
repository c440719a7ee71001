"""Pure loss functions of every method (formula and shapes in each docstring)."""

from .models.losses import (
    byol_loss,
    cacr_loss,
    mnn_loss,
    mochi_loss,
    moco_loss,
    msf_loss,
    multinet_gl_loss,
    nnclr_loss,
    normalized_distance,
    patchmix_loss,
    potential_samples_loss,
    relational_loss,
    simclr_loss,
    spps_loss,
    sscl_floor_mask,
    sscl_loss,
)

__all__ = [
    "byol_loss",
    "cacr_loss",
    "mnn_loss",
    "mochi_loss",
    "moco_loss",
    "msf_loss",
    "multinet_gl_loss",
    "nnclr_loss",
    "normalized_distance",
    "patchmix_loss",
    "potential_samples_loss",
    "relational_loss",
    "simclr_loss",
    "spps_loss",
    "sscl_floor_mask",
    "sscl_loss",
]
