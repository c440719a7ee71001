"""MNN: Mixed Nearest-Neighbors (methods.md section 1)."""

from ..models import MNNConfig, MNNForImageClassification, MNNForPreTraining, MNNModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="mnn",
    config_class=MNNConfig,
    model_class=MNNModel,
    pretraining_class=MNNForPreTraining,
    classification_class=MNNForImageClassification,
    paper="Mixed Nearest-Neighbors for Self-Supervised Learning",
    arxiv="2311.00562",
    summary="BYOL/MSF-style positives plus queue neighbours mixed with the target (lambda ~ U(0,1)), "
    "weighted 1 for the true positive and 1/k for each mixed neighbour.",
    bibtex="""@article{peng2023mnn,
  title   = {Mixed Nearest-Neighbors for Self-Supervised Learning},
  author  = {Peng, Xianzhong and Long, Xinyue and Li, Zhendong and Dong, Yuhong and others},
  journal = {arXiv preprint arXiv:2311.00562},
  year    = {2023}
}""",
)
