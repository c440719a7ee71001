"""NNCLR: the positive is the nearest queue neighbour of the sample's own projection (methods.md section 3)."""

from ..models import NNCLRConfig, NNCLRForImageClassification, NNCLRForPreTraining, NNCLRModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="nnclr",
    display_name="NNCLR",
    config_class=NNCLRConfig,
    model_class=NNCLRModel,
    pretraining_class=NNCLRForPreTraining,
    classification_class=NNCLRForImageClassification,
    paper="With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations",
    arxiv="2104.14548",
    tagline="positive = nearest queue neighbour of the own projection; no teacher",
    summary="SimCLR-style InfoNCE in which the positive of each prediction is the nearest neighbour, in a support "
    "queue of past projections, of the other view's projection; no EMA teacher.",
    reported_results={
        "cifar10": "86.78% 200-NN / 88.80% linear (ResNet-18, 200 epochs, MNN benchmark (pc-cp/Benchmark-Methods-For-MNN))",
        "cifar100": "53.21% 200-NN / 61.25% linear (ResNet-18, 200 epochs, MNN benchmark (pc-cp/Benchmark-Methods-For-MNN))",
        "tiny-imagenet": "34.44% 200-NN / 44.38% linear (ResNet-18, 200 epochs, MNN benchmark (pc-cp/Benchmark-Methods-For-MNN))",
    },
    bibtex="""@inproceedings{dwibedi2021nnclr,
  title     = {With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations},
  author    = {Dwibedi, Debidatta and Aytar, Yusuf and Tompson, Jonathan and Sermanet, Pierre and Zisserman, Andrew},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}""",
)
