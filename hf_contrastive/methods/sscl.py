"""SSCL: synthetic hard negatives, hardness reweighting and debiasing on MoCo v2 (methods.md section 4).

Reconstruction: built from the abstract; not verified against the paper's tables.
"""

from ..models import SSCLConfig, SSCLForImageClassification, SSCLForPreTraining, SSCLModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="sscl",
    display_name="SSCL",
    config_class=SSCLConfig,
    model_class=SSCLModel,
    pretraining_class=SSCLForPreTraining,
    classification_class=SSCLForImageClassification,
    paper="Synthetic Hard Negative Samples for Contrastive Learning",
    arxiv="2304.02971",
    tagline="MoCo v2 with MoCHi-style mixed negatives, hardness-weighted negatives and a debiased denominator",
    summary="Reconstruction from the abstract on MoCo v2: negatives mixed from each query's hardest queue entries are "
    "added to the queue, every negative is reweighted by its hardness (exp(beta q.n)) and the denominator is "
    "debiased for false negatives (Chuang et al.), symmetrised over the two views.",
    status="reconstruction",
    # The abstract gives no numbers and methods.md none: nothing reported here.
    reported_results={},
    bibtex="""@article{dong2023sscl,
  title   = {Synthetic Hard Negative Samples for Contrastive Learning},
  author  = {Dong, Hengkui and Long, Xianzhong and Li, Yun and Chen, Lei},
  journal = {arXiv preprint arXiv:2304.02971},
  year    = {2023}
}""",
)
