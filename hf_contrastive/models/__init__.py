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
    embed_views,
    forward_shuffled,
    ema_update_,
    load_split_batchnorm_state,
    nearest_neighbors,
    split_batchnorm_state,
)
from .modeling_mnn import MNNForImageClassification, MNNForPreTraining, MNNModel
from .configuration_simclr import SimCLRConfig
from .modeling_simclr import SimCLRForImageClassification, SimCLRForPreTraining, SimCLRModel
from .configuration_mocov2 import MoCoV2Config
from .modeling_mocov2 import MoCoV2ForImageClassification, MoCoV2ForPreTraining, MoCoV2Model
from .configuration_nnclr import NNCLRConfig
from .modeling_nnclr import NNCLRForImageClassification, NNCLRForPreTraining, NNCLRModel
from .configuration_byol import BYOLConfig
from .modeling_byol import BYOLForImageClassification, BYOLForPreTraining, BYOLModel
from .configuration_msf import MSFConfig
from .modeling_msf import MSFForImageClassification, MSFForPreTraining, MSFModel
from .configuration_ressl import ReSSLConfig
from .modeling_ressl import ReSSLForImageClassification, ReSSLForPreTraining, ReSSLModel
from .configuration_msvq import MSVQConfig
from .modeling_msvq import MSVQForImageClassification, MSVQForPreTraining, MSVQModel
from .configuration_mochi import MoCHiConfig
from .modeling_mochi import MoCHiForImageClassification, MoCHiForPreTraining, MoCHiModel
from .configuration_sscl import SSCLConfig
from .modeling_sscl import SSCLForImageClassification, SSCLForPreTraining, SSCLModel
from .configuration_multinet_gl import MultiNetGLConfig
from .modeling_multinet_gl import MultiNetGLForImageClassification, MultiNetGLForPreTraining, MultiNetGLModel
from .configuration_cacr import CACRConfig
from .modeling_cacr import CACRForImageClassification, CACRForPreTraining, CACRModel
from .configuration_patchmix import PatchMixConfig
from .modeling_patchmix import PatchMixForImageClassification, PatchMixForPreTraining, PatchMixModel
from .configuration_potential_samples import PotentialSamplesConfig
from .modeling_potential_samples import (
    PotentialSamplesForImageClassification,
    PotentialSamplesForPreTraining,
    PotentialSamplesModel,
)
from .configuration_spps import SPPSConfig
from .modeling_spps import SPPSForImageClassification, SPPSForPreTraining, SPPSModel

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
