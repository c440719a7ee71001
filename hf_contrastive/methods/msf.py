"""MSF: Mean Shift for self-supervised learning (methods.md section 3)."""

from ..models import MSFConfig, MSFForImageClassification, MSFForPreTraining, MSFModel
from ..registry import MethodSpec, mnn_benchmark_results

SPEC = MethodSpec(
    name="msf",
    display_name="MSF (Mean Shift)",
    config_class=MSFConfig,
    model_class=MSFModel,
    pretraining_class=MSFForPreTraining,
    classification_class=MSFForImageClassification,
    paper="Mean Shift for Self-Supervised Learning",
    arxiv="2105.07269",
    tagline="BYOL target plus its k nearest queue neighbours, weak view to the teacher",
    summary="BYOL with more targets: the student's prediction of a strong view is pulled towards the EMA teacher's "
    "projection of a weak view and its k nearest neighbours in a queue of past teacher projections.",
    reported_results=mnn_benchmark_results(cifar10=(87.86, 89.60), cifar100=(51.29, 59.84), tiny_imagenet=(34.79, 42.52)),
    bibtex="""@inproceedings{koohpayegani2021msf,
  title     = {Mean Shift for Self-Supervised Learning},
  author    = {Koohpayegani, Soroush Abbasi and Tejankar, Ajinkya and Pirsiavash, Hamed},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}""",
)
