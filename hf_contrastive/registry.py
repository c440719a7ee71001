"""The method registry: one entry per ``--method`` name, and its registration with the Auto classes."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    PretrainedConfig,
    PreTrainedModel,
)


@dataclass(frozen=True)
class MethodSpec:
    """What the package knows about one method.

    Attributes:
        name: the ``--method`` value and the config's ``model_type``.
        config_class / model_class / pretraining_class / classification_class: the model family.
        paper: title of the paper; arxiv: its arXiv id; summary: what the method changes, in one sentence.
        status: ``"implemented"`` (follows published formulas/code) or ``"reconstruction"`` (built from the abstract).
        bibtex: citation for model cards. display_name: how the method is written in prose (e.g. "MoCo v2").
        reported_results: dataset key (as in ``data.DATASET_STATS``) -> the published number with its protocol and
            source, shown beside ours in model cards.
    """

    name: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    pretraining_class: type[PreTrainedModel]
    classification_class: type[PreTrainedModel]
    paper: str
    arxiv: str
    summary: str
    status: str = "implemented"
    bibtex: str = ""
    display_name: str = ""
    reported_results: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """Human-readable name (``display_name``, else the upper-cased method name)."""
        return self.display_name or self.name.upper()

    @property
    def auto_map(self) -> dict[str, str]:
        """The ``auto_map`` written into config.json so remote code resolves every Auto class."""
        def path(klass: type) -> str:
            return f"{klass.__module__.rsplit('.', 1)[-1]}.{klass.__name__}"

        return {
            "AutoConfig": path(self.config_class),
            "AutoModel": path(self.model_class),
            "AutoModelForPreTraining": path(self.pretraining_class),
            "AutoModelForImageClassification": path(self.classification_class),
        }


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    """Add ``spec`` to the registry and register its classes with the transformers Auto classes.

    ``AutoX.register`` lets installed users load without ``trust_remote_code``; ``register_for_auto_class`` makes
    ``save_pretrained`` copy the defining files next to the weights for users without this package.
    """
    METHODS[spec.name] = spec
    AutoConfig.register(spec.name, spec.config_class, exist_ok=True)
    AutoModel.register(spec.config_class, spec.model_class, exist_ok=True)
    AutoModelForPreTraining.register(spec.config_class, spec.pretraining_class, exist_ok=True)
    AutoModelForImageClassification.register(spec.config_class, spec.classification_class, exist_ok=True)
    spec.config_class.register_for_auto_class()
    spec.model_class.register_for_auto_class("AutoModel")
    spec.pretraining_class.register_for_auto_class("AutoModelForPreTraining")
    spec.classification_class.register_for_auto_class("AutoModelForImageClassification")


def get_method(name: str) -> MethodSpec:
    """The registered method called ``name`` (case-insensitive); a clear error listing the others otherwise."""
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Available methods: {', '.join(available_methods())}.")
    return METHODS[key]


def available_methods() -> list[str]:
    """Names accepted by ``--method``, sorted."""
    return sorted(METHODS)
