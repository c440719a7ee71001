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
    summary="No positive term: the student's similarity distribution over a queue (strong view, tau 0.1) is matched "
    "to the sharper distribution of an EMA teacher on a weak view (tau 0.04).",
    bibtex="""@inproceedings{zheng2021ressl,
  title     = {{ReSSL}: Relational Self-Supervised Learning with Weak Augmentation},
  author    = {Zheng, Mingkai and You, Shan and Wang, Fei and Qian, Chen and Zhang, Changshui and Wang, Xiaogang and Xu, Chang},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021}
}""",
)
