#!/usr/bin/env python
"""Whole-stream decode time of a native 360x480 CamVid frame: the shipped fast student against the paper sampler.

    python benchmarks/bench_native_decode.py --threads 2           # about 2 minutes on a 2-core machine
    python benchmarks/bench_native_decode.py --threads 2 --no_paper

Codes a shipped CamVid test frame (HEVC QP 35, 4x down) and decodes the stream with `codec.decode` as `spic decode`
does: the map, the coarse image and the receiver, each model with its saved defaults (schedule, guidance, UNet dtype
where the CPU runs it natively). Prints JSON: seconds per decode (the best of --repeats after a warm-up), the
speed-up over the paper sampler measured in the same run, and the target (a fast decode within 5 s on 2 threads).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from spic_diffusers import SPICPipeline
from spic_diffusers.codec import decode, encode
from spic_diffusers.demo import demo_frame, shipped_model_path
from spic_diffusers.pipelines.pipeline_spic import native_bf16

TARGET_SECONDS = 5.0


def time_decode(pipe, stream: bytes, repeats: int, **kwargs) -> dict:
    decode(stream, pipe, generator=torch.Generator().manual_seed(0), **kwargs)  # warm-up: kernels, layouts
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        image = decode(stream, pipe, generator=torch.Generator().manual_seed(0), **kwargs)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "all_seconds": [round(t, 3) for t in times],
            "unet_evaluations": pipe.unet_evaluations(kwargs.get("guidance_scale"), kwargs.get("num_inference_steps")),
            "unet_dtype": str(pipe.resolve_unet_dtype(kwargs.get("unet_dtype")) or pipe.unet.dtype),
            "size": list(np.asarray(image).shape[:2])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--no_paper", action="store_true", help="skip the paper sampler (no ratio)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    image, labels, source = demo_frame(args.frame)
    stream = encode(image, labels, coarse_codec="hevc", coarse_quality=35, downsample=4)
    fast = SPICPipeline.from_pretrained(shipped_model_path("fast"))
    fast.set_progress_bar_config(disable=True)
    result = {"frame": source, "bytes": len(stream), "threads": args.threads, "native_bf16": native_bf16(),
              "fast": time_decode(fast, stream, args.repeats), "target_seconds": TARGET_SECONDS}
    result["fast_within_target"] = result["fast"]["seconds"] <= TARGET_SECONDS
    if not args.no_paper:
        paper = SPICPipeline.from_pretrained(shipped_model_path())
        paper.set_progress_bar_config(disable=True)
        result["paper"] = time_decode(paper, stream, 1)
        result["speedup_vs_paper"] = result["paper"]["seconds"] / result["fast"]["seconds"]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
