"""CACR: contrastive attraction and contrastive repulsion (methods.md section 5; official code JegZheng/CACR-SSL)."""

from ..models import CACRConfig, CACRForImageClassification, CACRForPreTraining, CACRModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="cacr",
    display_name="CACR",
    config_class=CACRConfig,
    model_class=CACRModel,
    pretraining_class=CACRForPreTraining,
    classification_class=CACRForImageClassification,
    paper="Contrastive Attraction and Contrastive Repulsion for Representation Learning",
    arxiv="2105.03746",
    linear_protocol="cacr",
    tagline="attraction to the farther positives, repulsion from the closer in-batch negatives (softmax-weighted distances); official small AlexNet or ResNet-18",
    summary="One network and a projector; each view attracts the other views of its image with weights that grow "
    "with their distance and repels the other images of the global batch with weights that grow as they get "
    "closer (softmax-weighted squared distances); no teacher, no queue.",
    status="implemented",
    bibtex="""@article{zheng2023cacr,
  title   = {Contrastive Attraction and Contrastive Repulsion for Representation Learning},
  author  = {Zheng, Huangjie and Chen, Xu and Yao, Jiangchao and Yang, Hongxia and Li, Chunyuan and Zhang, Ya and
             Zhang, Hao and Tsang, Ivor and Zhou, Jingren and Zhou, Mingyuan},
  journal = {Transactions on Machine Learning Research},
  issn    = {2835-8856},
  year    = {2023},
  url     = {https://openreview.net/forum?id=f39UIDkwwc}
}""",
)
