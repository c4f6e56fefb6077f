#!/usr/bin/env python
"""Convert CamVid (SegNet's 11-class release) into a `datasets.DatasetDict` in Cityscapes train ids.

CAMVID_ROOT holds train/ trainannot/ val/ valannot/ test/ testannot/ (480x360 PNGs, annotations 0..11).
The class mapping is `spic_diffusers.data.camvid.CAMVID_TO_CITYSCAPES` (Unlabelled -> 255).
"""

from __future__ import annotations

import argparse
import sys

from convert_cityscapes_to_datasets import parse_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Output columns: image, semantic_map (Cityscapes train ids, 255 = ignore), city (the sequence), id, "
            "sequence (and coarse with --precompute_coarse). Splits: train -> 'train', val -> 'validation', "
            "test -> 'test'. Load with datasets.load_from_disk(OUTPUT_DIR)."
        ),
    )
    parser.add_argument("--camvid_root", required=True, help="folder holding train/, trainannot/, val/, ... ")
    parser.add_argument("--output_dir", required=True, help="where to save the DatasetDict (save_to_disk format)")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated CamVid splits (train,val,test)")
    parser.add_argument("--num_proc", type=int, default=None, help="worker processes used to read the files")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    parser.add_argument("--precompute_coarse", default=None, metavar="CODEC:QUALITY",
                        help="also store decoded coarse images, e.g. hevc:35")  # fmt: skip
    parser.add_argument("--coarse_image_size", type=parse_size, default=None, metavar="HxW",
                        help="resize to this model resolution before downsampling (default: the frame's own size)")
    parser.add_argument("--coarse_downsample", type=int, default=4, help="coarse image downsampling factor")
    parser.add_argument("--push_to_hub", default=None, metavar="REPO_ID",
                        help="also push as Parquet (plus id2label.json) to this Hub dataset repo (private by default)")
    parser.add_argument("--public", action="store_true", help="make the Hub repo public")
    parser.add_argument("--hub_token", default=None, help="Hub token (default: the logged-in one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spic_diffusers.codec import CodecUnavailableError
    from spic_diffusers.data.camvid import CamVidLayoutError, convert_camvid
    from spic_diffusers.hub import HubUnreachableError

    try:
        out = convert_camvid(
            args.camvid_root,
            args.output_dir,
            splits=args.splits.split(","),
            overwrite=args.overwrite,
            precompute_coarse=args.precompute_coarse,
            coarse_image_size=args.coarse_image_size,
            coarse_downsample=args.coarse_downsample,
            num_proc=args.num_proc,
            push_to_hub=args.push_to_hub,
            private=not args.public,
            token=args.hub_token,
        )
    except (CamVidLayoutError, CodecUnavailableError, FileExistsError, HubUnreachableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
