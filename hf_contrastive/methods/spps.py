"""SPPS, semantic positive pairs (methods.md section 5): a reconstruction from the abstract on a SimCLR or MoCo v2
frame, with neighbours mined by a pretrained encoder (hf_contrastive.mining)."""

from ..models import SPPSConfig, SPPSForImageClassification, SPPSForPreTraining, SPPSModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="spps",
    display_name="SPPS",
    config_class=SPPSConfig,
    model_class=SPPSModel,
    pretraining_class=SPPSForPreTraining,
    classification_class=SPPSForImageClassification,
    paper="Semantic Positive Pairs for Enhancing Visual Representation Learning of Instance Discrimination Methods",
    arxiv="2306.16122",
    tagline="a pretrained encoder mines each image's nearest images; one of them is an extra positive (SimCLR or MoCo v2 frame)",
    summary="Reconstruction from the abstract: a frozen pretrained encoder mines each training image's nearest "
    "neighbours once; a view of one of them, drawn per epoch, is an extra positive of both views of the image in a "
    "multi-positive (SupCon-style) InfoNCE on a SimCLR (default) or MoCo v2 frame.",
    status="reconstruction",
    # The abstract gives only relative gains (e.g. +4.1% linear top-1 over MoCo v2 on ImageNet, 800 epochs) and no
    # absolute number for the datasets here, so none is listed.
    reported_results={},
    bibtex="""@article{alkhalefi2023spps,
  title   = {Semantic Positive Pairs for Enhancing Visual Representation Learning of Instance Discrimination Methods},
  author  = {Alkhalefi, Mohammad and Leontidis, Georgios and Zhong, Mingjun},
  journal = {arXiv preprint arXiv:2306.16122},
  year    = {2023}
}""",
)
