"""The Hub boundary: configs, models and losses that ``save_pretrained`` ships as remote code.

Every file here imports only torch, timm, transformers and its siblings (``from .x import y``).
"""

from .configuration_contrastive import ContrastiveConfig
from .configuration_mnn import MNNConfig
from .modeling_contrastive import (
    ContrastiveEncoderOutput,
    ContrastiveForImageClassification,
    ContrastiveForPreTraining,
    ContrastiveModel,
    ContrastivePreTrainedModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    SplitBatchNorm2d,
    all_gather_with_grad,
    build_backbone,
    forward_shuffled,
    ema_update_,
    nearest_neighbors,
)
from .modeling_mnn import MNNForImageClassification, MNNForPreTraining, MNNModel

__all__ = [
    "ContrastiveConfig",
    "ContrastiveEncoderOutput",
    "ContrastiveForImageClassification",
    "ContrastiveForPreTraining",
    "ContrastiveModel",
    "ContrastivePreTrainedModel",
    "ContrastivePreTrainingOutput",
    "FeatureQueue",
    "MLPHead",
    "SplitBatchNorm2d",
    "all_gather_with_grad",
    "build_backbone",
    "forward_shuffled",
    "ema_update_",
    "nearest_neighbors",
    # one line per method family
    "MNNConfig", "MNNModel", "MNNForPreTraining", "MNNForImageClassification",
]
