"""MNN: Mixed Nearest-Neighbors (methods.md section 1)."""

from ..models import MNNConfig, MNNForImageClassification, MNNForPreTraining, MNNModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="mnn",
    config_class=MNNConfig,
    model_class=MNNModel,
    pretraining_class=MNNForPreTraining,
    classification_class=MNNForImageClassification,
    paper="MNN: Mixed Nearest-Neighbors for Self-Supervised Learning",
    arxiv="2311.00562",
    tagline="MSF-style targets, but each of the k queue neighbours is mixed with the target (lambda ~ U(0,1)); weight 1 for the positive, 1/k per mixed neighbour",
    summary="BYOL/MSF-style positives plus queue neighbours mixed with the target (lambda ~ U(0,1)), "
    "weighted 1 for the true positive and 1/k for each mixed neighbour.",
    display_name="MNN",
    reported_results={
        "cifar10": "91.47% linear top-1 (ResNet-18, 200 epochs, best epoch, official README (pc-cp/MNN))",
        "cifar100": "67.56% linear top-1 (ResNet-18, 200 epochs, best epoch, official README (pc-cp/MNN))",
        "stl10": "91.61% linear top-1 (ResNet-18, 200 epochs, best epoch, official README (pc-cp/MNN))",
        "tiny-imagenet": "50.70% linear top-1 (ResNet-18, 200 epochs, best epoch, official README (pc-cp/MNN))",
    },
    bibtex="""@article{long2025mnn,
  title   = {MNN: Mixed Nearest-Neighbors for Self-Supervised Learning},
  author  = {Long, Xianzhong and Peng, Chen and Li, Yun},
  journal = {Pattern Recognition},
  volume  = {158},
  pages   = {110998},
  year    = {2025},
  doi     = {10.1016/j.patcog.2024.110998}
}""",
)
