"""MoCHi: MoCo v2 with synthetic hard negatives mixed from each query's hardest queue entries (methods.md section 5)."""

from ..models import MoCHiConfig, MoCHiForImageClassification, MoCHiForPreTraining, MoCHiModel
from ..registry import MethodSpec

SPEC = MethodSpec(
    name="mochi",
    display_name="MoCHi",
    config_class=MoCHiConfig,
    model_class=MoCHiModel,
    pretraining_class=MoCHiForPreTraining,
    classification_class=MoCHiForImageClassification,
    paper="Hard Negative Mixing for Contrastive Learning",
    arxiv="2010.01028",
    tagline="MoCo v2 plus synthetic hard negatives: mixtures of the hardest queue entries and of the query with them",
    summary="MoCo v2 whose logits gain, per query, synthetic negatives mixed from pairs of its hardest queue entries "
    "and, harder still, from the query itself with one of them (all detached), symmetrised over the two views.",
    status="implemented",
    # No number in methods.md or the paper's abstract for a dataset of this package: nothing reported here.
    reported_results={},
    bibtex="""@inproceedings{kalantidis2020mochi,
  title     = {Hard Negative Mixing for Contrastive Learning},
  author    = {Kalantidis, Yannis and Sariyildiz, Mert Bulent and Pion, Noe and Weinzaepfel, Philippe and Larlus, Diane},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}""",
)
