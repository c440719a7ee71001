"""hf_contrastive: contrastive self-supervised image learning on the Hugging Face stack.

Importing the package registers every method's config and models with the transformers Auto classes.
"""

from .methods import ALL_METHODS
from .models import *  # noqa: F403  (every config and model class)
from .models import __all__ as _model_names
from .registry import METHODS, MethodSpec, available_methods, get_method, register_method

__version__ = "0.1.0"

for _spec in ALL_METHODS:
    register_method(_spec)

__all__ = ["METHODS", "MethodSpec", "available_methods", "get_method", "register_method", *_model_names]
