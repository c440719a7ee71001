"""MoCo v2: InfoNCE against a queue of EMA-teacher keys (methods.md section 3)."""

from ..models import MoCoV2Config, MoCoV2ForImageClassification, MoCoV2ForPreTraining, MoCoV2Model
from ..registry import MethodSpec, mnn_benchmark_results

SPEC = MethodSpec(
    name="mocov2",
    display_name="MoCo v2",
    config_class=MoCoV2Config,
    model_class=MoCoV2Model,
    pretraining_class=MoCoV2ForPreTraining,
    classification_class=MoCoV2ForImageClassification,
    paper="Improved Baselines with Momentum Contrastive Learning",
    arxiv="2003.04297",
    tagline="EMA key encoder + queue of negative keys, symmetric",
    summary="Queries from the student are contrasted against the EMA teacher's key of the other view and a queue of "
    "past keys as negatives (MoCo with an MLP head and stronger augmentation), symmetrised over the two views.",
    reported_results=mnn_benchmark_results(cifar10=(88.05, 89.70), cifar100=(57.64, 62.37), tiny_imagenet=(37.29, 46.08)),
    bibtex="""@article{chen2020mocov2,
  title   = {Improved Baselines with Momentum Contrastive Learning},
  author  = {Chen, Xinlei and Fan, Haoqi and Girshick, Ross and He, Kaiming},
  journal = {arXiv preprint arXiv:2003.04297},
  year    = {2020}
}""",
)
