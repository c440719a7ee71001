"""Multi-network GL: contrastive learning with global and local representations (methods.md section 4;
reconstruction)."""

from ..models import (
    MultiNetGLConfig,
    MultiNetGLForImageClassification,
    MultiNetGLForPreTraining,
    MultiNetGLModel,
)
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="multinet_gl",
    display_name="Multi-network GL",
    config_class=MultiNetGLConfig,
    model_class=MultiNetGLModel,
    pretraining_class=MultiNetGLForPreTraining,
    classification_class=MultiNetGLForImageClassification,
    paper="Multi-network Contrastive Learning Based on Global and Local Representations",
    arxiv="2306.15930",
    tagline="online network on 2 global + 4 local crops, momentum network(s) on the global crops, InfoNCE over every cross-network pair",
    summary="An online network embeds global and local (multi-crop) views and momentum networks embed the global "
    "views; every online embedding is contrasted (InfoNCE) with each momentum network's embedding of the other "
    "global views, which multiplies the contrasted pairs (reconstruction from the abstract).",
    status="reconstruction",
    # The abstract reports no numbers (linear evaluation on three benchmark datasets, values not given).
    reported_results={},
    bibtex="""@article{li2023multinetwork,
  title   = {Multi-network Contrastive Learning Based on Global and Local Representations},
  author  = {Li, Weiquan and Long, Xianzhong and Li, Yun},
  journal = {arXiv preprint arXiv:2306.15930},
  year    = {2023}
}""",
)
