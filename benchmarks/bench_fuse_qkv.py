#!/usr/bin/env python
"""UNet forward time with separate and with fused q/k/v attention projections, printed as JSON.

    python benchmarks/bench_fuse_qkv.py --threads 1

Both variants run the same weights on the same inputs (a guided batch of 2); the maximum absolute output
difference is reported with the timings (median of `--repeats` forwards after one warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

CONFIGS = {
    "tiny": dict(sample_size=(32, 64), block_out_channels=(32, 64), layers_per_block=1,
                 attention_downsample_factors=(2,), attention_head_dim=16),
    # attention at 1/8 and 1/16 of a 128x256 crop, the paper's head width
    "medium": dict(sample_size=(128, 256), block_out_channels=(64, 128, 128, 256, 256),
                   attention_downsample_factors=(8, 16), attention_head_dim=64),
}


def _time(model, inputs, repeats: int) -> float:
    with torch.no_grad():
        model(*inputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(*inputs)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from spic_diffusers import SPICUNet2DModel

    results = []
    for name in args.config or ["tiny", "medium"]:
        torch.manual_seed(0)
        model = SPICUNet2DModel(**CONFIGS[name]).eval()
        height, width = model.config.sample_size
        seg = torch.nn.functional.one_hot(torch.randint(0, 19, (2, height, width)), 19).permute(0, 3, 1, 2).float()
        inputs = (torch.randn(2, 3, height, width), torch.tensor([150, 150]), seg,
                  torch.rand(2, 3, height // 4, width // 4) * 2 - 1)
        separate = _time(model, inputs, args.repeats)
        with torch.no_grad():
            reference = model(*inputs).sample
            model.fuse_qkv_projections()
            difference = (model(*inputs).sample - reference).abs().max().item()
        fused = _time(model, inputs, args.repeats)
        results.append({"config": name, "size": [height, width], "separate_s": round(separate, 4),
                        "fused_s": round(fused, 4), "speedup": round(separate / fused, 3),
                        "max_abs_difference": difference, "threads": torch.get_num_threads()})
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
