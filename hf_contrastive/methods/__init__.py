"""One module per method, each defining ``SPEC``: its `MethodSpec` (model family, paper, status).

To add a method, create ``<name>.py`` here and list it in ``ALL_METHODS``; ``import hf_contrastive`` registers
every entry with the transformers Auto classes.
"""

from . import mnn
from . import simclr
from . import mocov2
from . import nnclr
from . import byol
from . import msf
from . import ressl
from . import msvq
from . import mochi
from . import sscl
from . import multinet_gl
from . import cacr
from . import patchmix
from . import potential_samples
from . import spps

ALL_METHODS = [
    mnn.SPEC,
    simclr.SPEC,
    mocov2.SPEC,
    nnclr.SPEC,
    byol.SPEC,
    msf.SPEC,
    ressl.SPEC,
    msvq.SPEC,
    mochi.SPEC,
    sscl.SPEC,
    multinet_gl.SPEC,
    cacr.SPEC,
    patchmix.SPEC,
    potential_samples.SPEC,
    spps.SPEC,
]
