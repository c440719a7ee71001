"""PatchMix: patch-level mixing of images for contrastive learning with ViTs (methods.md section 5)."""

from ..models import (
    PatchMixConfig,
    PatchMixForImageClassification,
    PatchMixForPreTraining,
    PatchMixModel,
)
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="patchmix",
    display_name="PatchMix",
    config_class=PatchMixConfig,
    model_class=PatchMixModel,
    pretraining_class=PatchMixForPreTraining,
    classification_class=PatchMixForImageClassification,
    paper="Inter-Instance Similarity Modeling for Contrastive Learning",
    arxiv="2306.12243",
    tagline="ViT in a MoCo v3 frame; patches of 2 images mixed, soft-target cross entropy original/mixed",
    summary="A ViT in a MoCo v3 frame also contrasts images whose patches are mixed from several images of the batch, "
    "with soft targets weighted by each image's share of patches (mixed-to-original and mixed-to-mixed), which "
    "models similarities between instances.",
    status="implemented",
    linear_protocol="patchmix",
    reported_results={
        "cifar10": "94.6% kNN / 96.0% linear top-1 (ViT-S/2, 800 epochs, official README (visresearch/patchmix))",
        "cifar100": "75.4% kNN / 78.7% linear top-1 (ViT-S/2, 800 epochs, official README (visresearch/patchmix))",
    },
    bibtex="""@article{shen2023inter,
  title   = {Inter-Instance Similarity Modeling for Contrastive Learning},
  author  = {Shen, Chengchao and Liu, Dawei and Tang, Hao and Qu, Zhe and Wang, Jianxin},
  journal = {arXiv preprint arXiv:2306.12243},
  year    = {2023}
}""",
)
