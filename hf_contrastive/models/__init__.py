"""The Hub boundary: configs, models and losses that ``save_pretrained`` ships as remote code.

Every file here imports only torch, timm, transformers and its siblings (``from .x import y``).
"""

from .configuration_contrastive import ContrastiveConfig
from .configuration_mnn import MNNConfig
from .modeling_contrastive import (
    ContrastiveEncoderOutput,
    ContrastiveForImageClassification,
    ContrastiveModel,
    ContrastivePreTrainedModel,
    ContrastivePreTrainingOutput,
    FeatureQueue,
    MLPHead,
    SplitBatchNorm2d,
    build_backbone,
    ema_update_,
    nearest_neighbors,
)
from .modeling_mnn import MNNForImageClassification, MNNForPreTraining, MNNModel
