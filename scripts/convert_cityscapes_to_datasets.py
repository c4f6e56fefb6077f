#!/usr/bin/env python
"""Convert an official Cityscapes download into a `datasets.DatasetDict` for SPIC.

Cityscapes is registration-gated (https://www.cityscapes-dataset.com): you need your own download
of leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, and converted copies may not be
shared publicly, which is why --push_to_hub creates a PRIVATE dataset repo unless --public is given.
"""

from __future__ import annotations

import argparse
import sys


def parse_size(text: str) -> tuple[int, int]:
    from spic_diffusers.sizes import as_hw

    return as_hw(text, "size (HxW, e.g. 256x512)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Output columns: image, semantic_map (train ids 0..18, 255 = ignore), instance_map, city, id "
            "(and coarse with --precompute_coarse). Splits: train -> 'train', val -> 'validation', "
            "test -> 'test'. Load with datasets.load_from_disk(OUTPUT_DIR)."
        ),
    )
    parser.add_argument("--cityscapes_root", required=True, help="folder holding leftImg8bit/ and gtFine/")
    parser.add_argument("--output_dir", required=True, help="where to save the DatasetDict (save_to_disk format)")
    parser.add_argument("--splits", default="train,val", help="comma-separated Cityscapes splits (train,val,test)")
    parser.add_argument("--num_proc", type=int, default=None, help="worker processes used to read the files")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    parser.add_argument("--no_instances", action="store_true", help="do not read *_gtFine_instanceIds.png")
    parser.add_argument(
        "--precompute_coarse",
        default=None,
        metavar="CODEC:QUALITY",
        help="also store decoded coarse images (needs spic_diffusers.codec), e.g. hevc:30",
    )
    parser.add_argument(
        "--coarse_image_size",
        type=parse_size,
        default=(256, 512),
        metavar="HxW",
        help="model resolution the coarse image is derived from (default 256x512)",
    )
    parser.add_argument("--coarse_downsample", type=int, default=4, help="coarse image downsampling factor")
    parser.add_argument(
        "--push_to_hub",
        default=None,
        metavar="REPO_ID",
        help="also push as Parquet (plus id2label.json) to this Hub dataset repo; PRIVATE by default "
        "because Cityscapes is registration-gated",
    )
    parser.add_argument("--public", action="store_true", help="make the Hub repo public (only if your licence allows)")
    parser.add_argument("--hub_token", default=None, help="Hub token (default: the logged-in one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spic_diffusers.codec import CodecUnavailableError
    from spic_diffusers.data.cityscapes import CityscapesLayoutError, convert_cityscapes
    from spic_diffusers.hub import HubUnreachableError

    try:
        out = convert_cityscapes(
            args.cityscapes_root,
            args.output_dir,
            splits=args.splits.split(","),
            overwrite=args.overwrite,
            with_instances=not args.no_instances,
            precompute_coarse=args.precompute_coarse,
            coarse_image_size=args.coarse_image_size,
            coarse_downsample=args.coarse_downsample,
            num_proc=args.num_proc,
            push_to_hub=args.push_to_hub,
            private=not args.public,
            token=args.hub_token,
        )
    except (CityscapesLayoutError, CodecUnavailableError, FileExistsError, HubUnreachableError, ImportError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
