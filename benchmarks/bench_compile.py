#!/usr/bin/env python
"""Seconds per UNet forward, eager and under `torch.compile(fullgraph=True)`, side by side, printed as JSON.

    python benchmarks/bench_compile.py --height 64 --width 128 --threads 1

One model, one set of inputs (a guided batch of 2, as the paper sampler's batched guidance, in channels-last
memory format, as the pipeline runs a CPU), timed alternately eager / compiled so that both see the same machine
load. The compilation itself (the first compiled call) is reported apart; the maximum absolute difference of the
outputs is reported with the timings (median of `--repeats` forwards after warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

CONFIGS = {
    "tiny": dict(block_out_channels=(32, 64), layers_per_block=1, attention_downsample_factors=(2,),
                 attention_head_dim=16, spade_hidden_channels=16),
    # attention at 1/8 and 1/16, the paper's head width, a third of its channels
    "small": dict(block_out_channels=(64, 128, 128, 256, 256), attention_downsample_factors=(8, 16),
                  attention_head_dim=64),
}


def _forward(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(*inputs).sample


def _once(model, inputs) -> float:
    start = time.perf_counter()
    _forward(model, inputs)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: its default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from spic_diffusers import SPICUNet2DModel

    torch.manual_seed(0)
    model = SPICUNet2DModel(**CONFIGS[args.config]).eval().to(args.device)
    multiple = model.size_multiple
    if args.height % multiple or args.width % multiple:
        parser.error(f"--height and --width must be multiples of {multiple} for --config {args.config}")
    g = torch.Generator().manual_seed(0)
    b, h, w = args.batch, args.height, args.width
    labels = torch.randint(0, 19, (b, h, w), generator=g)
    inputs = [torch.randn(b, 3, h, w, generator=g), torch.tensor(150),
              torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float(),
              torch.rand(b, 3, h // 4, w // 4, generator=g) * 2 - 1]
    inputs = [x.to(args.device) for x in inputs]
    if args.device == "cpu":
        model.to(memory_format=torch.channels_last)
        inputs = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in inputs]

    compiled = torch.compile(model, fullgraph=True, mode=args.mode)
    eager_first = _once(model, inputs)
    compile_seconds = _once(compiled, inputs)  # tracing, code generation and the first run
    difference = (_forward(compiled, inputs) - _forward(model, inputs)).abs().max().item()
    eager_times, compiled_times = [], []
    for _ in range(args.repeats):
        eager_times.append(_once(model, inputs))
        compiled_times.append(_once(compiled, inputs))
    eager, compiled_s = statistics.median(eager_times), statistics.median(compiled_times)
    result = {
        "config": args.config, "height": h, "width": w, "batch": b, "device": args.device,
        "threads": torch.get_num_threads(), "repeats": args.repeats, "mode": args.mode,
        "torch": torch.__version__,
        "eager_first_s": round(eager_first, 4), "compile_s": round(compile_seconds, 2),
        "eager_s": round(eager, 5), "compiled_s": round(compiled_s, 5),
        "compiled_over_eager": round(compiled_s / eager, 3), "speedup": round(eager / compiled_s, 3),
        "max_abs_difference": difference,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
