"""Which coarse codec should stand in for HEVC when it is unavailable, and at which quality?

For real photographs area-downsampled to coarse-image sizes (64x128: a 256x512 image; 24x32: a
96x128 one), every available codec is run over its quality range; for each codec the quality whose
mean size is closest to HEVC at QP 35 (the paper's operating point) is reported with its PSNR, so
the codecs are compared at the same rate.  ``spic_diffusers.codec.coarse.COARSE_FALLBACKS`` holds
the resulting order and qualities.

    python benchmarks/bench_coarse_fallback.py --images "/path/to/CamVid/test/*.png" --count 6

Prints JSON: per size, per codec, the matched quality, mean bytes and mean PSNR [dB], plus the
fallback order ranked by mean PSNR over both sizes at the matched rate.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys

import numpy as np
from PIL import Image

from spic_diffusers.codec import COARSE_CODECS, CodecUnavailableError, get_coarse_codec
from spic_diffusers.codec.coarse import DEFAULT_COARSE_CODEC, DEFAULT_COARSE_QUALITY

SIZES = ((64, 128), (24, 32))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def load_photos(pattern: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"bench_coarse_fallback: no images match {pattern!r}")
    step = max(1, len(paths) // count)
    height, width = size
    # Box filter = area downsampling, the transmitter's own reduction.
    return [np.asarray(Image.open(p).convert("RGB").resize((width, height), Image.BOX)) for p in paths[::step][:count]]


def measure(codec_name: str, quality: float, photos: list[np.ndarray]) -> tuple[float, float]:
    codec = get_coarse_codec(codec_name, quality)
    sizes, scores = [], []
    for photo in photos:
        data = codec.encode(photo)
        sizes.append(len(data))
        scores.append(psnr(photo, codec.decode(data, *photo.shape[:2])))
    return float(np.mean(sizes)), float(np.mean(scores))


def qualities(codec_name: str) -> list[int]:
    low, high = COARSE_CODECS[codec_name].quality_range
    return list(range(low, high + 1, 1 if high <= 51 else 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="glob of photographs, e.g. 'CamVid/test/*.png'")
    parser.add_argument("--count", type=int, default=6, help="number of photographs (spread over the glob)")
    args = parser.parse_args(argv)

    reference = DEFAULT_COARSE_CODEC
    report: dict = {"reference": {"codec": reference, "quality": DEFAULT_COARSE_QUALITY}, "sizes": {}}
    mean_psnr: dict[str, list[float]] = {}
    for size in SIZES:
        photos = load_photos(args.images, args.count, size)
        target_bytes, target_psnr = measure(reference, DEFAULT_COARSE_QUALITY, photos)
        rows = {reference: {"quality": DEFAULT_COARSE_QUALITY, "bytes": target_bytes, "psnr": target_psnr}}
        for name in COARSE_CODECS:
            if name == reference:
                continue
            print(f"{size[0]}x{size[1]}: {name} ...", file=sys.stderr)
            curve = []
            try:
                for q in qualities(name):
                    try:
                        curve.append((q, *measure(name, q, photos)))
                    except CodecUnavailableError:
                        raise
                    except (RuntimeError, OSError, ValueError):  # an encoder that rejects this quality
                        continue
            except CodecUnavailableError as err:
                rows[name] = {"unavailable": str(err)}
                continue
            quality, size_bytes, score = min(curve, key=lambda row: abs(row[1] - target_bytes))
            rows[name] = {"quality": quality, "bytes": size_bytes, "psnr": score}
            mean_psnr.setdefault(name, []).append(score)
        report["sizes"][f"{size[0]}x{size[1]}"] = rows
    ranked = sorted(
        (name for name, scores in mean_psnr.items() if len(scores) == len(SIZES)),
        key=lambda name: -float(np.mean(mean_psnr[name])),
    )
    report["fallback_order_by_psnr_at_matched_rate"] = ranked
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
