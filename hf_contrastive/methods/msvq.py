"""MSVQ: Multiple Sample Views and Queues (methods.md section 2)."""

from ..models import MSVQConfig, MSVQForImageClassification, MSVQForPreTraining, MSVQModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="msvq",
    display_name="MSVQ",
    config_class=MSVQConfig,
    model_class=MSVQModel,
    pretraining_class=MSVQForPreTraining,
    classification_class=MSVQForImageClassification,
    paper="MSVQ: Self-Supervised Learning with Multiple Sample Views and Queues",
    arxiv="2305.05370",
    linear_protocol="msvq",
    tagline="relational loss against three weak-view targets from two EMA teachers with different momenta, two queues",
    summary="ReSSL's relational loss against three weak-view targets from two EMA teachers with different momenta, "
    "each compared over its own queue (no positive term, no predictor).",
    reported_results={
        "cifar10": "91.46% linear top-1 (ResNet-18, 200 epochs, official README (pc-cp/MSVQ))",
        "cifar100": "66.28% linear top-1 (ResNet-18, 200 epochs, official README (pc-cp/MSVQ))",
        "stl10": "90.36% linear top-1 (ResNet-18, 200 epochs, official README (pc-cp/MSVQ))",
        "tiny-imagenet": "48.09% linear top-1 (ResNet-18, 200 epochs, official README (pc-cp/MSVQ))",
    },
    bibtex="""@article{peng2024msvq,
  title   = {MSVQ: Self-supervised learning with multiple sample views and queues},
  author  = {Peng, Chen and Long, Xianzhong and Li, Yun},
  journal = {Knowledge-Based Systems},
  volume  = {283},
  pages   = {111197},
  year    = {2024},
  doi     = {10.1016/j.knosys.2023.111197}
}""",
)
