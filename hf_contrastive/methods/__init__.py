"""One module per method, each defining ``SPEC``: its `MethodSpec` (model family, paper, status).

To add a method, create ``<name>.py`` here and list it in ``ALL_METHODS``; ``import hf_contrastive`` registers
every entry with the transformers Auto classes.
"""

from . import mnn

ALL_METHODS = [
    mnn.SPEC,
]
