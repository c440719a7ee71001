"""NNCLR: the positive is the nearest queue neighbour of the sample's own projection (methods.md section 3)."""

from ..models import NNCLRConfig, NNCLRForImageClassification, NNCLRForPreTraining, NNCLRModel
from ..registry import MethodSpec, mnn_benchmark_results

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
    reported_results=mnn_benchmark_results(cifar10=(86.78, 88.80), cifar100=(53.21, 61.25), tiny_imagenet=(34.44, 44.38)),
    bibtex="""@inproceedings{dwibedi2021nnclr,
  title     = {With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations},
  author    = {Dwibedi, Debidatta and Aytar, Yusuf and Tompson, Jonathan and Sermanet, Pierre and Zisserman, Andrew},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}""",
)
