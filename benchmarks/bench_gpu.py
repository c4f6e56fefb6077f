#!/usr/bin/env python
"""The GPU check: training steps/s and decode seconds per image of the paper-size model, eager and compiled.

    python benchmarks/bench_gpu.py                      # one H100: about 5 minutes, at most --budget_s (420 s)
    python benchmarks/bench_gpu.py --quick --device cpu # the tiny config at 32x64, for a CPU check of the script

Prints one JSON object (progress goes to stderr):

- ``train``: steps/s of the real training step (the trainer's guidance drop and flips, ``training_loss``'s hybrid
  loss, backward, AdamW, EMA) on a synthetic batch of the config's ``train_batch_size`` at ``--size``, under bf16
  autocast (``--dtype``), with the config's gradient checkpointing;
- ``decode_paper``: seconds per image of the paper sampler (DDPM, 100-step spacing, from the first timestep
  <= 200, guidance 1.5);
- ``decode_fast``: seconds per image of the fast student's schedule (the shipped ``spic-camvid-fast`` scheduler,
  timesteps and guidance 1.0), run on the same paper-size UNet.

Each measurement exists ``eager`` and ``compiled`` (``torch.compile`` of the UNet, static shapes; the first calls,
which compile, are reported as ``warmup_seconds``). The UNet has random weights: timings do not depend on them. A
part that would overrun ``--budget_s`` is skipped and says so; one that fails (e.g. out of memory) records its
error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Any, Callable

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_CONFIG = os.path.join(REPO, "training", "configs", "paper.json")
TINY_CONFIG = os.path.join(REPO, "training", "configs", "tiny.json")
PAPER_SAMPLER = {"num_inference_steps": 100, "max_timestep": 200, "guidance_scale": 1.5}
# Allowance for a part's compilation, added to what its eager run took when deciding whether it still fits.
COMPILE_ALLOWANCE_S = {"train": 150.0, "decode": 90.0}


def log(message: str) -> None:
    print(f"bench_gpu: {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def has_c_compiler() -> bool:
    """torch.compile's default backend (inductor) builds C++ on a CPU; without a compiler it cannot run there."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    """Seconds of ``warmup`` calls (compilation, if any, happens there), then the mean of ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"warmup_seconds": round(warm, 3), "repeats": repeats, "seconds": sum(times) / len(times),
            "all_seconds": [round(t, 4) for t in times]}


class Budget:
    """The wall-clock budget of the whole run: a part runs only when its estimate fits in what is left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def skip_reason(self, estimate: float) -> str | None:
        left = self.left()
        if estimate > left:
            return f"time budget: {left:.0f} s left, this part needs about {estimate:.0f} s"
        return None


# ------------------------------------------------------------------------------------------------ training


def build_training(config_path: str, size: tuple[int, int], device: torch.device, batch_size: int | None):
    """The config's UNet (random weights) on ``device``, its AdamW and EMA, and a synthetic batch."""
    from diffusers.training_utils import EMAModel

    from spic_diffusers import SPICUNet2DModel
    from spic_diffusers.training import linear_alphas_cumprod, parse_args, unet_config_from_args

    args = parse_args(["--config", config_path, "--dataset_name_or_path", "unused",
                       "--resolution", f"{size[0]},{size[1]}"])
    torch.manual_seed(0)
    with torch.device(device):
        unet = SPICUNet2DModel(**unet_config_from_args(args))
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    ema = EMAModel(unet.parameters(), decay=args.ema_decay) if args.use_ema else None
    if ema is not None:
        ema.to(device)
    batch_size = batch_size or args.train_batch_size
    from spic_diffusers.training.dataset import random_training_batch

    height, width = size
    batch = random_training_batch(batch_size, height, width, args.num_classes, args.coarse_downsample)
    batch = {key: value.to(device) for key, value in batch.items()}
    table = linear_alphas_cumprod(args.num_train_timesteps)
    return unet, optimizer, ema, batch, table, args


def train_part(parts, compiled: bool, dtype: torch.dtype | None, device: torch.device, warmup: int, steps: int,
               backend: str) -> dict[str, Any]:
    from spic_diffusers.training import training_loss
    from spic_diffusers.training.trainer import augment_batch

    unet, optimizer, ema, batch, table, args = parts
    model = torch.compile(unet, backend=backend) if compiled else unet
    generator = torch.Generator().manual_seed(1)

    def step() -> None:
        augmented = augment_batch(batch, generator, random_flip=args.random_flip, cfg_drop_rate=args.cfg_drop_rate)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = training_loss(model, augmented, table, generator)["loss"].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(unet.parameters())

    result = timed(step, device, warmup, steps)
    batch_size = batch["pixel_values"].shape[0]
    result.update(steps_per_second=1.0 / result["seconds"], images_per_second=batch_size / result["seconds"],
                  batch_size=batch_size)
    return result


# ------------------------------------------------------------------------------------------------ decoding


def build_decoders(unet, size: tuple[int, int], device: torch.device):
    """The paper sampler's pipeline (DDPM) and the fast student's (the shipped fast model's scheduler and saved
    schedule), both around ``unet``; and one synthetic map + coarse image at ``size``."""
    from spic_diffusers import SPICPipeline
    from spic_diffusers.demo import shipped_model_path
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    paper = SPICPipeline(unet=unet, scheduler=default_scheduler())
    fast = SPICPipeline.from_pretrained(shipped_model_path("fast"))
    fast.register_modules(unet=unet)
    for pipe in (paper, fast):
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
    height, width = size
    g = torch.Generator().manual_seed(2)
    num_classes = paper.num_classes
    inputs = {"segmentation_map": torch.randint(0, num_classes, (1, height, width), generator=g),
              "low_res_image": torch.rand(1, 3, height // 4, width // 4, generator=g) * 2 - 1}
    schedule = {"timesteps": [int(t) for t in fast.config.default_timesteps],
                "guidance_scale": float(fast.config.default_guidance_scale)}
    return paper, fast, inputs, schedule


def decode_part(pipe, inputs, sampling: dict[str, Any], compiled: bool, dtype: torch.dtype | None,
                device: torch.device, warmup: int, repeats: int, backend: str) -> dict[str, Any]:
    unet = pipe.unet
    if compiled:
        pipe.unet = torch.compile(unet, backend=backend)
    try:
        def run() -> None:
            pipe(**inputs, **sampling, unet_dtype=dtype or "fp32", output_type="pt",
                 generator=torch.Generator().manual_seed(0))

        with torch.no_grad():
            result = timed(run, device, warmup, repeats)
    finally:
        pipe.unet = unet
    result["unet_evaluations"] = pipe.unet_evaluations(sampling.get("guidance_scale"),
                                                       sampling.get("num_inference_steps"),
                                                       sampling.get("max_timestep", 200), sampling.get("timesteps"))
    return result


# ------------------------------------------------------------------------------------------------ main


def run_part(results: dict, key: str, mode: str, budget: Budget, estimate: float, fn: Callable[[], dict]) -> None:
    entry = results.setdefault(key, {})
    reason = budget.skip_reason(estimate)
    if reason is not None:
        entry[mode] = {"skipped": reason}
        log(f"{key} {mode}: skipped ({reason})")
        return
    log(f"{key} {mode} ...")
    start = time.perf_counter()
    try:
        entry[mode] = fn()
    except Exception as error:  # noqa: BLE001  (one part failing, e.g. out of memory, must not lose the others)
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        entry[mode] = {"error": f"{type(error).__name__}: {first_line}"}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    entry[mode]["part_seconds"] = round(time.perf_counter() - start, 1)
    log(f"{key} {mode}: {json.dumps(entry[mode])}")


def measure_training(results: dict, args: argparse.Namespace, modes: list[str], budget: Budget,
                     device: torch.device, dtype: torch.dtype | None):
    """The training parts (eager, then compiled); returns the UNet, its optimizer and EMA released."""
    parts = build_training(args.config, args.size, device, args.batch_size)
    results["parameters"] = sum(p.numel() for p in parts[0].parameters())
    results["gradient_checkpointing"] = bool(parts[5].gradient_checkpointing)
    for mode in modes:
        eager = results.get("train", {}).get("eager", {})
        estimate = 0.0 if mode == "eager" else (
            COMPILE_ALLOWANCE_S["train"] + eager.get("seconds", 0.0) * (args.warmup + args.steps))
        run_part(results, "train", mode, budget, estimate,
                 lambda mode=mode: train_part(parts, mode == "compiled", dtype, device, args.warmup, args.steps,
                                              args.compile_backend))
    return parts[0]


def parse_args(argv=None) -> argparse.Namespace:
    from spic_diffusers.sizes import as_hw

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help=f"training config of the model (default: {PAPER_CONFIG}; "
                   "--quick: the tiny one)")
    p.add_argument("--size", type=lambda text: as_hw(text, "--size", minimum=8), default=None,
                   help="HEIGHTxWIDTH of training batches and decoded images (default 256x512; --quick: 32x64)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                   help="autocast dtype of training and decoding (fp32: none)")
    p.add_argument("--batch_size", type=int, default=None, help="training batch (default: the config's)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 10; --quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed training steps first (default 3; --quick: 1)")
    p.add_argument("--decode_repeats", type=int, default=None, help="timed decodes per sampler (default 3; "
                   "--quick: 1)")
    p.add_argument("--budget_s", type=float, default=420.0,
                   help="wall-clock budget: parts that would overrun it are skipped (default 420 s)")
    p.add_argument("--no_compile", action="store_true", help="eager only")
    p.add_argument("--compile_backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--quick", action="store_true", help="the tiny config at 32x64 and a few steps: a CPU check")
    args = p.parse_args(argv)
    args.config = args.config or (TINY_CONFIG if args.quick else PAPER_CONFIG)
    args.size = args.size or ((32, 64) if args.quick else (256, 512))
    args.steps = args.steps or (2 if args.quick else 10)
    args.warmup = args.warmup or (1 if args.quick else 3)
    args.decode_repeats = args.decode_repeats or (1 if args.quick else 3)
    if args.size[0] % 4 or args.size[1] % 4:
        p.error(f"--size sides must be multiples of 4 (the coarse image is 4x smaller), got {args.size}")
    return args


def main(argv=None) -> dict[str, Any]:
    import torch._dynamo

    args = parse_args(argv)
    with torch._dynamo.config.patch(automatic_dynamic_shapes=False):  # guided (batch 2), single (1): static kernels
        return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    budget = Budget(args.budget_s)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": None}[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    compile_reason = None
    if args.no_compile:
        compile_reason = "--no_compile"
    elif device.type == "cpu" and args.compile_backend == "inductor" and not has_c_compiler():
        compile_reason = "no C++ compiler for inductor on the CPU"
    modes = ["eager"] + ([] if compile_reason else ["compiled"])
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "config": os.path.relpath(args.config, REPO), "size": list(args.size),
        "dtype": args.dtype, "compile_backend": None if compile_reason else args.compile_backend,
        "compile_skipped": compile_reason, "budget_s": args.budget_s,
    }

    unet = measure_training(results, args, modes, budget, device, dtype)
    unet.eval()
    unet.disable_gradient_checkpointing()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the optimizer's and EMA's memory

    paper, fast, inputs, schedule = build_decoders(unet, args.size, device)
    results["fast_schedule"] = schedule
    samplers = {"decode_paper": (paper, PAPER_SAMPLER), "decode_fast": (fast, schedule)}
    for mode in modes:
        for key, (pipe, sampling) in samplers.items():
            eager = results.get(key, {}).get("eager", {})
            estimate = 0.0 if mode == "eager" else (
                COMPILE_ALLOWANCE_S["decode"] + eager.get("seconds", 0.0) * (1 + args.decode_repeats))
            run_part(results, key, mode, budget, estimate,
                     lambda pipe=pipe, sampling=sampling, mode=mode: decode_part(
                         pipe, inputs, sampling, mode == "compiled", dtype, device, 1, args.decode_repeats,
                         args.compile_backend))
    for key in ("train", "decode_paper", "decode_fast"):
        entry = results.get(key, {})
        if "seconds" in entry.get("eager", {}) and "seconds" in entry.get("compiled", {}):
            entry["compiled_speedup"] = entry["eager"]["seconds"] / entry["compiled"]["seconds"]
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    results["total_seconds"] = round(time.perf_counter() - budget.start, 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
