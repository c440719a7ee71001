"""SimCLR: NT-Xent over the two views of the global batch (methods.md section 3)."""

from ..models import SimCLRConfig, SimCLRForImageClassification, SimCLRForPreTraining, SimCLRModel
from ..registry import MethodSpec, mnn_benchmark_results

SPEC = MethodSpec(
    name="simclr",
    display_name="SimCLR",
    config_class=SimCLRConfig,
    model_class=SimCLRModel,
    pretraining_class=SimCLRForPreTraining,
    classification_class=SimCLRForImageClassification,
    paper="A Simple Framework for Contrastive Learning of Visual Representations",
    arxiv="2002.05709",
    tagline="one network, InfoNCE over the global batch: NT-Xent (paper) or the MNN benchmark's cross-view form (its recipe)",
    summary="One network and a projector trained with NT-Xent: each view's positive is the other view of the same "
    "image and every other view in the global batch is a negative; no teacher, no queue.",
    reported_results=mnn_benchmark_results(cifar10=(85.30, 87.72), cifar100=(56.50, 62.52), tiny_imagenet=(37.16, 45.71)),
    bibtex="""@inproceedings{chen2020simclr,
  title     = {A Simple Framework for Contrastive Learning of Visual Representations},
  author    = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  year      = {2020}
}""",
)
