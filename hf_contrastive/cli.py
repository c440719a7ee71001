"""The ``hf-contrastive`` command (also ``python -m hf_contrastive``): argument parsing only.

``hf-contrastive methods [NAME]`` (logic in `hf_contrastive.method_info`),
``hf-contrastive export CHECKPOINT_DIR OUTPUT_DIR [--format transformers|timm]`` (logic in `hf_contrastive.export`)
and ``hf-contrastive embed MODEL IMAGES... --output embeddings.parquet`` (logic in `hf_contrastive.embed`).
Errors the user can fix are printed as one line (no traceback) with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "hf-contrastive"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List the contrastive methods, export trained hf_contrastive encoders and embed images with them. "
        "Training is `accelerate launch recipes/train.py` (its --help lists every flag).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    methods = commands.add_parser(
        "methods",
        help="list the methods (paper, status, views), or one method's config fields and recipes",
        description="Without NAME: every registered method with its paper, status (implemented / reconstruction) and "
        "views. With NAME: its paper, views and config fields with their defaults (what --config_overrides and a "
        "recipe's model: section set), and its recipe files.",
    )
    methods.add_argument("name", metavar="NAME", nargs="?", help="a method name, e.g. mnn (default: list them all)")
    methods.add_argument("--recipes_dir", default="recipes/configs",
                         help="where to look for the method's recipes (default: %(default)s, from the current folder)")

    export = commands.add_parser(
        "export",
        help="export a trained Hub folder as a transformers (remote-code) or native timm model",
        description=(
            "Export the Hub folder written by training (OUTPUT_DIR/model of a run, or a Hub model id). "
            "--format transformers (default) copies it as it is: weights, config.json with auto_map, the model "
            "code, preprocessor_config.json and the model card. --format timm writes the encoder alone as a native "
            "timm model (timm.create_model('hf-hub:...'), and transformers' AutoModel / pipeline / "
            "AutoModelForImageClassification without trust_remote_code); only for backbones timm can rebuild "
            "(not the small-image ResNet stem)."
        ),
    )
    export.add_argument("checkpoint_dir", metavar="CHECKPOINT_DIR",
                        help="Hub folder of a trained model (OUTPUT_DIR/model) or a Hub model id")
    export.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to write (must be empty or absent)")
    export.add_argument("--format", choices=("transformers", "timm"), default="transformers",
                        help="transformers: the remote-code folder as is (default); timm: native timm encoder")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")

    embed = commands.add_parser(
        "embed",
        help="write the pooled features of images or of a dataset split to a parquet file",
        description=(
            "Embed images with an encoder folder (an hf_contrastive Hub folder or its --format timm export, or a "
            "Hub id) and write a parquet file with columns id (the image path, or '<split>/<row>' for a dataset), "
            "embedding (list<float32>: the raw pooler_output, NOT L2-normalised) and, for labelled datasets, label."
        ),
    )
    embed.add_argument("model", metavar="MODEL", help="encoder folder or Hub model id")
    embed.add_argument("images", metavar="IMAGES", nargs="*",
                       help="image files and/or folders (searched recursively); or use --dataset_name")
    embed.add_argument("--output", default="embeddings.parquet", help="parquet file to write (default: %(default)s)")
    embed.add_argument("--batch_size", type=int, default=256, help="images per forward pass (default: %(default)s)")
    embed.add_argument("--dataset_name", help="a dataset instead of files: Hub id, parquet folder or image folder")
    embed.add_argument("--split", default="test", help="dataset split to embed (default: %(default)s)")
    embed.add_argument("--image_column", help="dataset image column (detected when omitted)")
    embed.add_argument("--max_samples", type=int, help="embed only the first N images")
    embed.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    embed.add_argument("--num_workers", type=int, default=0,
                       help="DataLoader workers decoding and preprocessing images (default: %(default)s)")
    embed.add_argument("--trust_remote_code", action="store_true",
                       help="allow a model of another library to run its own code (not needed for hf_contrastive "
                            "or timm folders)")
    return parser


def _methods(args: argparse.Namespace) -> None:
    from .method_info import method_details, methods_table

    print(methods_table() if args.name is None else method_details(args.name, Path(args.recipes_dir)))


def _export(args: argparse.Namespace) -> None:
    from .export import export

    folder = export(args.checkpoint_dir, args.output_dir, format=args.format, overwrite=args.overwrite)
    if args.format == "timm":
        print(f"Wrote the native timm encoder to {folder}. Load it without trust_remote_code: "
              f"AutoModel.from_pretrained({str(folder)!r}) or, after uploading, "
              "timm.create_model('hf-hub:<repo>', pretrained=True).")
    else:
        print(f"Copied the transformers Hub folder to {folder}. Load it: "
              f"AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True) "
              "(no trust_remote_code needed after `import hf_contrastive`).")


def _embed(args: argparse.Namespace) -> None:
    from .embed import FEATURES_DESCRIPTION, embed_images, read_embeddings

    output = embed_images(
        args.model, args.images, output=args.output, dataset_name=args.dataset_name, split=args.split,
        image_column=args.image_column, max_samples=args.max_samples, batch_size=args.batch_size, device=args.device,
        num_workers=args.num_workers, trust_remote_code=args.trust_remote_code,
    )
    ids, features = read_embeddings(output)
    print(f"Wrote {len(ids)} embeddings of dimension {features.shape[1]} to {output} "
          f"(columns id, embedding: {FEATURES_DESCRIPTION}).")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for an error the user can fix)."""
    args = build_parser().parse_args(argv)
    handler = {"methods": _methods, "export": _export, "embed": _embed}[args.command]
    try:
        handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
