"""ReSSL: Relational Self-Supervised Learning with weak augmentation (methods.md section 3)."""

from ..models import ReSSLConfig, ReSSLForImageClassification, ReSSLForPreTraining, ReSSLModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="ressl",
    display_name="ReSSL",
    config_class=ReSSLConfig,
    model_class=ReSSLModel,
    pretraining_class=ReSSLForPreTraining,
    classification_class=ReSSLForImageClassification,
    paper="ReSSL: Relational Self-Supervised Learning with Weak Augmentation",
    arxiv="2107.09282",
    tagline="student's similarity distribution over the queue matches the sharper teacher's",
    summary="No positive term: the student's similarity distribution over a queue (strong view, tau 0.1) is matched "
    "to the sharper distribution of an EMA teacher on a weak view (tau 0.04).",
    reported_results={
        "cifar10": "88.89% 200-NN / 89.97% linear (ResNet-18, 200 epochs, MNN benchmark (pc-cp/Benchmark-Methods-For-MNN))",
        "cifar100": "57.48% 200-NN / 63.82% linear (ResNet-18, 200 epochs, MNN benchmark (pc-cp/Benchmark-Methods-For-MNN))",
        "tiny-imagenet": "37.14% 200-NN / 46.38% linear (ResNet-18, 200 epochs, MNN benchmark (pc-cp/Benchmark-Methods-For-MNN))",
    },
    bibtex="""@inproceedings{zheng2021ressl,
  title     = {{ReSSL}: Relational Self-Supervised Learning with Weak Augmentation},
  author    = {Zheng, Mingkai and You, Shan and Wang, Fei and Qian, Chen and Zhang, Changshui and Wang, Xiaogang and Xu, Chang},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021}
}""",
)
