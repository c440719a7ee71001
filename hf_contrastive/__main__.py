"""``python -m hf_contrastive`` runs the ``hf-contrastive`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
