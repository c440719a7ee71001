"""The Hub boundary: configs, models and losses that ``save_pretrained`` ships as remote code.

Every file here imports only torch, timm, transformers and its siblings (``from .x import y``).
"""

from .configuration_byol import BYOLConfig
from .configuration_cacr import CACRConfig
from .configuration_contrastive import ContrastiveConfig
from .configuration_mnn import MNNConfig
from .configuration_mochi import MoCHiConfig
from .configuration_mocov2 import MoCoV2Config
from .configuration_msf import MSFConfig
from .configuration_msvq import MSVQConfig
from .configuration_multinet_gl import MultiNetGLConfig
from .configuration_nnclr import NNCLRConfig
from .configuration_patchmix import PatchMixConfig
from .configuration_potential_samples import PotentialSamplesConfig
from .configuration_ressl import ReSSLConfig
from .configuration_simclr import SimCLRConfig
from .configuration_spps import SPPSConfig
from .configuration_sscl import SSCLConfig
from .modeling_byol import BYOLForImageClassification, BYOLForPreTraining, BYOLModel
from .modeling_cacr import CACRForImageClassification, CACRForPreTraining, CACRModel
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
    ema_update_,
    embed_views,
    forward_shuffled,
    load_split_batchnorm_state,
    nearest_neighbors,
    split_batchnorm_state,
)
from .modeling_mnn import MNNForImageClassification, MNNForPreTraining, MNNModel
from .modeling_mochi import MoCHiForImageClassification, MoCHiForPreTraining, MoCHiModel
from .modeling_mocov2 import MoCoV2ForImageClassification, MoCoV2ForPreTraining, MoCoV2Model
from .modeling_msf import MSFForImageClassification, MSFForPreTraining, MSFModel
from .modeling_msvq import MSVQForImageClassification, MSVQForPreTraining, MSVQModel
from .modeling_multinet_gl import MultiNetGLForImageClassification, MultiNetGLForPreTraining, MultiNetGLModel
from .modeling_nnclr import NNCLRForImageClassification, NNCLRForPreTraining, NNCLRModel
from .modeling_patchmix import PatchMixForImageClassification, PatchMixForPreTraining, PatchMixModel
from .modeling_potential_samples import (
    PotentialSamplesForImageClassification,
    PotentialSamplesForPreTraining,
    PotentialSamplesModel,
)
from .modeling_ressl import ReSSLForImageClassification, ReSSLForPreTraining, ReSSLModel
from .modeling_simclr import SimCLRForImageClassification, SimCLRForPreTraining, SimCLRModel
from .modeling_spps import SPPSForImageClassification, SPPSForPreTraining, SPPSModel
from .modeling_sscl import SSCLForImageClassification, SSCLForPreTraining, SSCLModel

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
    "embed_views",
    "forward_shuffled",
    "ema_update_",
    "load_split_batchnorm_state",
    "nearest_neighbors",
    "split_batchnorm_state",
    # one line per method family
    "MNNConfig", "MNNModel", "MNNForPreTraining", "MNNForImageClassification",
    "SimCLRConfig", "SimCLRModel", "SimCLRForPreTraining", "SimCLRForImageClassification",
    "MoCoV2Config", "MoCoV2Model", "MoCoV2ForPreTraining", "MoCoV2ForImageClassification",
    "NNCLRConfig", "NNCLRModel", "NNCLRForPreTraining", "NNCLRForImageClassification",
    "BYOLConfig", "BYOLModel", "BYOLForPreTraining", "BYOLForImageClassification",
    "MSFConfig", "MSFModel", "MSFForPreTraining", "MSFForImageClassification",
    "ReSSLConfig", "ReSSLModel", "ReSSLForPreTraining", "ReSSLForImageClassification",
    "MSVQConfig", "MSVQModel", "MSVQForPreTraining", "MSVQForImageClassification",
    "MoCHiConfig", "MoCHiModel", "MoCHiForPreTraining", "MoCHiForImageClassification",
    "SSCLConfig", "SSCLModel", "SSCLForPreTraining", "SSCLForImageClassification",
    "MultiNetGLConfig", "MultiNetGLModel", "MultiNetGLForPreTraining", "MultiNetGLForImageClassification",
    "CACRConfig", "CACRModel", "CACRForPreTraining", "CACRForImageClassification",
    "PatchMixConfig", "PatchMixModel", "PatchMixForPreTraining", "PatchMixForImageClassification",
    "PotentialSamplesConfig", "PotentialSamplesModel", "PotentialSamplesForPreTraining",
    "PotentialSamplesForImageClassification",
    "SPPSConfig", "SPPSModel", "SPPSForPreTraining", "SPPSForImageClassification",
]
