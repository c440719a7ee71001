"""BYOL: Bootstrap Your Own Latent (methods.md section 3)."""

from ..models import BYOLConfig, BYOLForImageClassification, BYOLForPreTraining, BYOLModel
from ..registry import MethodSpec, mnn_benchmark_results

SPEC = MethodSpec(
    name="byol",
    display_name="BYOL",
    config_class=BYOLConfig,
    model_class=BYOLModel,
    pretraining_class=BYOLForPreTraining,
    classification_class=BYOLForImageClassification,
    paper="Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
    arxiv="2006.07733",
    tagline="predictor regresses the EMA teacher's projection, no negatives",
    summary="No negatives: a student with a predictor regresses the normalised projection of the other view made by "
    "an EMA teacher (symmetric normalised squared distance).",
    reported_results=mnn_benchmark_results(cifar10=(87.54, 89.54), cifar100=(57.24, 63.16), tiny_imagenet=(37.65, 45.29)),
    bibtex="""@inproceedings{grill2020byol,
  title     = {Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning},
  author    = {Grill, Jean-Bastien and Strub, Florian and Altch{\\'e}, Florent and Tallec, Corentin and Richemond, Pierre H. and Buchatskaya, Elena and Doersch, Carl and Pires, Bernardo Avila and Guo, Zhaohan Daniel and Azar, Mohammad Gheshlaghi and Piot, Bilal and Kavukcuoglu, Koray and Munos, R{\\'e}mi and Valko, Michal},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2020}
}""",
)
