"""How close ``codec.encode_to_rate`` lands to a target rate, and HEVC 4:4:4 against 4:2:0, on CamVid test photos.

    python benchmarks/bench_target_rate.py --camvid_root CamVid --num_frames 40

Frames are resized (bicubic for photos, nearest for maps) to each ``--sizes`` entry.  For each target
the JSON gives how many frames reached it (the rest get the "cannot be reached" / "below the map's own
cost" error), the mean rate reached and the lowest / highest ratio of reached to target.  The chroma
table codes the photos' area downsample by ``--downsample`` at each ``--chroma_sizes`` entry with both
chroma formats: bytes, bits per coarse pixel and PSNR (RGB).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from PIL import Image

from spic_diffusers.codec import encode_to_rate, get_coarse_codec
from spic_diffusers.data.camvid import camvid_to_train_ids, find_camvid_files
from spic_diffusers.evaluation.inputs import spread_indices
from spic_diffusers.sizes import as_hw


def _size(text: str) -> tuple[int, int]:
    return as_hw(text)


def load_frames(root: str, count: int):
    records = find_camvid_files(root, "test")
    for record in (records[i] for i in spread_indices(len(records), count)):
        yield np.asarray(Image.open(record.image_path).convert("RGB")), camvid_to_train_ids(
            np.asarray(Image.open(record.annotation_path))
        )


def bench_target_rate(frames, sizes, targets, codec: str, factors) -> list[dict]:
    rows = []
    for height, width in sizes:
        resized = [
            (
                np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC)),
                np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST)),
            )
            for image, labels in frames
        ]
        for target in targets:
            reached = []
            for image, labels in resized:
                try:
                    reached.append(encode_to_rate(image, labels, target_bpp=target, coarse_codec=codec,
                                                  downsample=factors).bpp)
                except ValueError:
                    pass
            rows.append(
                {
                    "size": f"{height}x{width}",
                    "target_bpp": target,
                    "frames": len(resized),
                    "reached": len(reached),
                    "mean_bpp": float(np.mean(reached)) if reached else None,
                    "min_ratio": min(reached) / target if reached else None,
                    "max_ratio": max(reached) / target if reached else None,
                }
            )
    return rows


def bench_chroma(frames, sizes, qualities) -> list[dict]:
    rows = []
    for height, width in sizes:
        smalls = [np.asarray(Image.fromarray(image).resize((width, height), Image.BOX)) for image, _ in frames]
        for chroma in ("444", "420"):
            for quality in qualities:
                codec = get_coarse_codec("hevc", quality, chroma=chroma)
                sizes_, psnrs = [], []
                for small in smalls:
                    data = codec.encode(small)
                    error = np.mean((codec.decode(data, height, width).astype(np.float64) - small) ** 2)
                    sizes_.append(len(data))
                    psnrs.append(10 * np.log10(255**2 / max(error, 1e-10)))
                rows.append(
                    {
                        "size": f"{height}x{width}",
                        "chroma": chroma,
                        "qp": quality,
                        "mean_bytes": float(np.mean(sizes_)),
                        "bits_per_coarse_pixel": 8 * float(np.mean(sizes_)) / (height * width),
                        "psnr_db": float(np.mean(psnrs)),
                    }
                )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid_root", required=True, help="CamVid in SegNet's layout")
    parser.add_argument("--num_frames", type=int, default=40)
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(96, 128), (360, 480)])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.6, 1.0])
    parser.add_argument("--coarse_codec", default="hevc")
    parser.add_argument("--downsample", type=int, nargs="+", default=[2, 4, 8], help="factors to choose from")
    parser.add_argument("--chroma_sizes", type=_size, nargs="+", default=[(64, 128), (24, 32)])
    parser.add_argument("--chroma_qps", type=int, nargs="+", default=[30, 35, 40])
    args = parser.parse_args(argv)
    frames = list(load_frames(args.camvid_root, args.num_frames))
    results = {
        "target_rate": bench_target_rate(frames, args.sizes, args.targets, args.coarse_codec, args.downsample),
        "hevc_chroma": bench_chroma(frames, args.chroma_sizes, args.chroma_qps),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
