"""Mining of potential samples (methods.md section 4): a reconstruction from the abstract on a MoCo v2 frame."""

from ..models import (
    PotentialSamplesConfig,
    PotentialSamplesForImageClassification,
    PotentialSamplesForPreTraining,
    PotentialSamplesModel,
)
from ..registry import MethodSpec

_ABSTRACT = "top-1 (abstract; protocol not stated; arXiv 2311.00358)"

SPEC = MethodSpec(
    name="potential_samples",
    display_name="Mining of Potential Samples",
    config_class=PotentialSamplesConfig,
    model_class=PotentialSamplesModel,
    pretraining_class=PotentialSamplesForPreTraining,
    classification_class=PotentialSamplesForImageClassification,
    paper="Rethinking Samples Selection for Contrastive Learning: Mining of Potential Samples",
    arxiv="2311.00358",
    tagline="MoCo frame; queue neighbours of the key as extra positives, negatives from a band of similarity ranks",
    summary="Reconstruction from the abstract, on MoCo v2: each query's positives are the teacher key of the other "
    "view plus queue entries mined around it (hard top-k and soft similarity weights, mixed), and its negatives are "
    "the queue entries in a band of similarity ranks to the key, neither too hard nor too easy.",
    status="reconstruction",
    reported_results={
        "cifar10": f"88.57% {_ABSTRACT}",
        "cifar100": f"61.10% {_ABSTRACT}",
        "tiny-imagenet": f"36.69% {_ABSTRACT}",
    },
    bibtex="""@article{dong2023potential,
  title   = {Rethinking Samples Selection for Contrastive Learning: Mining of Potential Samples},
  author  = {Dong, Hengkui and Long, Xianzhong and Li, Yun},
  journal = {arXiv preprint arXiv:2311.00358},
  year    = {2023}
}""",
)
