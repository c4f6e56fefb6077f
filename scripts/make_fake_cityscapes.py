#!/usr/bin/env python
"""Write a fake Cityscapes folder (synthetic street scenes) with the official file naming.

Useful to try scripts/convert_cityscapes_to_datasets.py and the training script without the real,
registration-gated dataset: leftImg8bit/{split}/{city}/{id}_leftImg8bit.png and
gtFine/{split}/{city}/{id}_gtFine_{labelIds,instanceIds,color}.png (labelIds hold the official
label ids, instanceIds are 16-bit), optionally {id}_gtFine_labelTrainIds.png.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--cities", type=int, default=2, help="cities per split")
    parser.add_argument("--per_city", type=int, default=3, help="frames per city")
    parser.add_argument("--splits", default="train,val", help="comma-separated Cityscapes splits (train,val,test)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with_train_ids", action="store_true", help="also write *_gtFine_labelTrainIds.png")
    parser.add_argument("--no_color", action="store_true", help="skip *_gtFine_color.png")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --output_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spic_diffusers.data.synthetic import write_fake_cityscapes

    try:
        written = write_fake_cityscapes(
            args.output_dir,
            cities=args.cities,
            per_city=args.per_city,
            splits=args.splits.split(","),
            height=args.height,
            width=args.width,
            seed=args.seed,
            with_train_ids=args.with_train_ids,
            with_color=not args.no_color,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    total = sum(len(frames) for frames in written.values())
    print(f"wrote {total} frames ({', '.join(f'{k}: {len(v)}' for k, v in written.items())}) to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
