"""SimCLR: NT-Xent over the two views of the global batch (methods.md section 3)."""

from ..models import SimCLRConfig, SimCLRForImageClassification, SimCLRForPreTraining, SimCLRModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="simclr",
    display_name="SimCLR",
    config_class=SimCLRConfig,
    model_class=SimCLRModel,
    pretraining_class=SimCLRForPreTraining,
    classification_class=SimCLRForImageClassification,
    paper="A Simple Framework for Contrastive Learning of Visual Representations",
    arxiv="2002.05709",
    summary="One network and a projector trained with NT-Xent: each view's positive is the other view of the same "
    "image and every other view in the global batch is a negative; no teacher, no queue.",
    bibtex="""@inproceedings{chen2020simclr,
  title     = {A Simple Framework for Contrastive Learning of Visual Representations},
  author    = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  year      = {2020}
}""",
)
