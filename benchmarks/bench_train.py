#!/usr/bin/env python
"""Training throughput and peak memory of SPIC's training step (tiny and paper configs), printed as JSON.

One step = hybrid loss forward + backward + AdamW + EMA update, batch 1, on random inputs of the config's size.
Each config runs in its own process so its peak resident memory (`ru_maxrss`) is its own.

    python benchmarks/bench_train.py                 # tiny (20 steps) + paper (1 step: minutes, >= 13.1 GB)
    python benchmarks/bench_train.py --skip_paper
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"tiny": os.path.join(REPO, "training", "configs", "tiny.json"),
           "paper": os.path.join(REPO, "training", "configs", "paper.json")}


# Shown before starting. tiny: measured on a free 2-core CPU; paper: 653 M parameters x 5 float32 copies
# (weights, gradients, two AdamW moments, EMA) = 13.1 GB before activations, and a step of roughly four
# batch-1 forward passes, i.e. about two of bench_decode's measured guided steps.
EXPECTED = {
    "tiny": {"minutes": 0.5, "peak_gb": 0.6, "basis": "measured"},
    "paper": {"minutes": 5.0, "peak_gb": 13.1, "basis": "estimated; the peak is a lower bound"},
}


def announce(names: list[str], steps: dict[str, int]) -> None:
    """Say what will run, how long it should take and how much memory it needs, before starting."""
    from spic_diffusers.memory import available_memory

    available = available_memory("cpu")
    available = None if available is None else available / 2**30
    for name in names:
        expected = EXPECTED[name]
        minutes = expected["minutes"] * (steps[name] if name == "paper" else 1)
        print(f"bench_train: {name}: {steps[name]} timed step(s), expected about {minutes:.1f} min on a free 2-core "
              f"CPU and {expected['peak_gb']} GB peak memory ({expected['basis']})", file=sys.stderr, flush=True)
    peak = max(EXPECTED[n]["peak_gb"] for n in names)
    if available is not None and peak > available:
        print(f"bench_train: warning: {peak} GB will not fit in the {available:.1f} GB available; "
              "--skip_paper runs the tiny config only", file=sys.stderr, flush=True)


def run_one(name: str, steps: int, warmup: int, batch_size: int, gradient_checkpointing: bool | None,
            bf16: bool, threads: int | None) -> dict:
    import torch
    from diffusers.training_utils import EMAModel

    from spic_diffusers import SPICUNet2DModel
    from spic_diffusers.training import linear_alphas_cumprod, parse_args, training_loss, unet_config_from_args

    if threads:
        torch.set_num_threads(threads)
    args = parse_args(["--config", CONFIGS[name], "--dataset_name_or_path", "unused"])
    checkpointing = args.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    torch.manual_seed(0)
    unet = SPICUNet2DModel(**unet_config_from_args(args))
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    ema = EMAModel(unet.parameters(), decay=args.ema_decay)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate)
    from spic_diffusers.training.dataset import random_training_batch

    height, width = args.resolution
    batch = random_training_batch(batch_size, height, width, args.num_classes, args.coarse_downsample)
    g = torch.Generator().manual_seed(1)  # the loss's timesteps and noise
    table = linear_alphas_cumprod(args.num_train_timesteps)

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = training_loss(unet, batch, table, g)["loss"].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        return loss.item()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    return {
        "config": name,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "resolution": [height, width],
        "batch_size": batch_size,
        "gradient_checkpointing": bool(checkpointing),
        "bf16_autocast": bf16,
        "torch_threads": torch.get_num_threads(),
        "warmup_steps": warmup,
        "timed_steps": steps,
        "seconds_per_step": mean,
        "steps_per_second": 1.0 / mean,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny_steps", type=int, default=20)
    p.add_argument("--paper_steps", type=int, default=1)
    p.add_argument("--skip_paper", action="store_true")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--gradient_checkpointing", choices=("config", "on", "off"), default="config",
                   help="As the config says (paper: on), or forced.")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on the CPU.")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    p.add_argument("--only", choices=tuple(CONFIGS), help=argparse.SUPPRESS)
    args = p.parse_args()
    checkpointing = {"config": None, "on": True, "off": False}[args.gradient_checkpointing]

    if args.only:
        steps = args.tiny_steps if args.only == "tiny" else args.paper_steps
        warmup = 2 if args.only == "tiny" else 0
        print(json.dumps(run_one(args.only, steps, warmup, args.batch_size, checkpointing, args.bf16, args.threads)))
        return

    results = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}, "runs": []}
    names = ["tiny"] + ([] if args.skip_paper else ["paper"])
    announce(names, {"tiny": args.tiny_steps, "paper": args.paper_steps})
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        cmd = [sys.executable, os.path.abspath(__file__), "--only", name, "--tiny_steps", str(args.tiny_steps),
               "--paper_steps", str(args.paper_steps), "--batch_size", str(args.batch_size),
               "--gradient_checkpointing", args.gradient_checkpointing]
        cmd += ["--bf16"] if args.bf16 else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            results["runs"].append({"config": name, "error": done.stderr.strip().splitlines()[-1:]})
            print(f"[{index}/{len(names)}] {name}: failed: {results['runs'][-1]['error']}", file=sys.stderr)
            continue
        results["runs"].append(json.loads(done.stdout.strip().splitlines()[-1]))
        run = results["runs"][-1]
        print(f"[{index}/{len(names)}] {name}: done in {time.perf_counter() - started:.0f} s, "
              f"{run['seconds_per_step']:.2f} s/step, peak {run['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
