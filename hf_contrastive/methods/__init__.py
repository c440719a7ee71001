"""One module per method, each defining ``SPEC``: its `MethodSpec` (model family, paper, status).

Every module of this package is a method: to add one, create ``<name>.py`` here with a ``SPEC`` whose ``name`` is
the module's name; ``import hf_contrastive`` finds it and registers it with the transformers Auto classes.
"""

import importlib
import pkgutil


def _discover() -> list:
    specs = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is None or spec.name != module_info.name:
            raise ImportError(f"hf_contrastive.methods.{module_info.name} must define SPEC = MethodSpec(name="
                              f"{module_info.name!r}, ...); got {spec!r}.")
        specs.append(spec)
    return specs


ALL_METHODS = _discover()
