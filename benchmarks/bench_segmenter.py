"""Time and size of the shipped segmenter (or another): seconds per frame at several sizes and thread counts.

The segmenter runs at the transmitter (``spic encode`` without a map) and for every mIoU figure, so its cost
per frame matters as much as its accuracy. Each (size, threads) pair is timed over ``--repeats`` calls of
``Segmenter.__call__`` (processor, network, upsampling of the logits, label lookup) after one untimed warm-up.

    python benchmarks/bench_segmenter.py [--segmenter FOLDER] [--sizes 360x480,96x128,256x512] [--threads 1,2]

Prints what it will run and its expected time first (about 30 s with the shipped model), then JSON: the
folder's size on disk, the parameter count, and per size and thread count the mean and best seconds per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _sizes(text: str) -> list[tuple[int, int]]:
    from spic_diffusers.sizes import as_hw

    return [as_hw(part, "--sizes") for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", type=Path, default=None, help="a local folder (default: the shipped one)")
    parser.add_argument("--sizes", type=_sizes, default=[(360, 480), (96, 128), (256, 512)])
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from spic_diffusers.codec import Segmenter
    from spic_diffusers.demo import shipped_segmenter_path

    folder = args.segmenter or shipped_segmenter_path()
    threads = [int(t) for t in args.threads.split(",")]
    runs = len(args.sizes) * len(threads) * (args.repeats + 1)
    print(f"bench_segmenter: {folder}, {runs} calls ({len(args.sizes)} sizes x threads {threads}); "
          f"expected about {runs * 0.3:.0f} s and under 1 GB", file=sys.stderr)
    segmenter = Segmenter.from_pretrained(folder)
    rng = np.random.default_rng(0)
    result = {
        "segmenter": str(folder),
        "disk_mb": sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 2**20,
        "parameters_m": sum(p.numel() for p in segmenter.model.parameters()) / 1e6,
        "timings": [],
    }
    for count in threads:
        torch.set_num_threads(count)
        for height, width in args.sizes:
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            segmenter(image)  # warm-up
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                segmenter(image)
                seconds.append(time.perf_counter() - started)
            result["timings"].append({"size": f"{height}x{width}", "threads": count, "mean_s": float(np.mean(seconds)),
                                      "best_s": float(np.min(seconds))})
            print(f"  {height}x{width}, {count} thread(s): {np.mean(seconds):.3f} s", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
