#!/usr/bin/env python
"""Decode (receiver) time per image and peak memory, printed as JSON.

    python benchmarks/bench_decode.py                 # tiny config, all samplers; paper config estimated
                                                      # (about 6 minutes and 13.3 GB of memory on 2 cores)
    python benchmarks/bench_decode.py --paper_full    # paper config, every sampler run for real
                                                      # (about an hour on 2 cores)
    python benchmarks/bench_decode.py --quality_table --model RECEIVER --student FAST4 --frames CAMVID_DATASET \
        --num_frames 8 --segmenter SEGFORMER --output_md table.md   # quality against time (decode_quality.py)

Every measurement runs in a fresh subprocess so that its peak resident memory is its own. Wall and CPU
seconds are both reported: on a shared machine CPU seconds are the steadier basis for ratios. Samplers start
from the coarse image at t <= 200 as in the paper; "steps" counts the model evaluations actually made.
Without `--paper_full`, the paper config runs one guided step (batched) and one step as two separate passes,
and the per-sampler times are that measured step time multiplied by the sampler's steps (marked "estimated").
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = {
    "tiny": dict(sample_size=(32, 64), block_out_channels=(32, 64), layers_per_block=1,
                 attention_downsample_factors=(2,), attention_head_dim=16),
    # The paper's network (653 M parameters), random weights.
    "paper": dict(sample_size=(256, 512)),
}

# name -> (scheduler class, num_inference_steps over 1000; truncation at t <= 200 keeps a fifth of them)
SAMPLERS = {
    "ddpm-100/200 (paper)": ("DDPMScheduler", 100, {}),
    "ddim-10": ("DDIMScheduler", 50, {}),
    "dpmsolver++-10": ("DPMSolverMultistepScheduler", 50, {"algorithm_type": "dpmsolver++"}),
    "dpmsolver++-5": ("DPMSolverMultistepScheduler", 25, {"algorithm_type": "dpmsolver++"}),
}


# Reference figures (free 2-core CPU, torch's default threads) shown before starting: wall minutes of all
# measurements of a config, and the peak resident memory of its largest one.
EXPECTED = {
    "tiny": {"minutes": 1.0, "peak_gb": 0.5},
    "paper": {"minutes": 6.0, "peak_gb": 13.3},  # one guided step batched + one as two passes
    "paper_full": {"minutes": 60.0, "peak_gb": 13.3},
}


def _available_gb() -> float | None:
    from spic_diffusers.memory import available_memory

    available = available_memory("cpu")
    return None if available is None else available / 2**30


def _announce(configs: list[str], paper_full: bool) -> None:
    """Say what will run, how long it should take and how much memory it needs, before starting."""
    keys = [("paper_full" if c == "paper" and paper_full else c) for c in configs]
    minutes = sum(EXPECTED[k]["minutes"] for k in keys if k in EXPECTED)
    peak = max((EXPECTED[k]["peak_gb"] for k in keys if k in EXPECTED), default=0.0)
    available = _available_gb()
    print(f"bench_decode: configs {', '.join(configs)}; expected about {minutes:.0f} min on a free 2-core CPU "
          f"(longer on a busy one) and {peak:.1f} GB peak memory"
          + (f" ({available:.1f} GB available now)" if available is not None else ""), file=sys.stderr, flush=True)
    if available is not None and peak > available:
        print(f"bench_decode: warning: {peak:.1f} GB will not fit; `--configs tiny` needs "
              f"{EXPECTED['tiny']['peak_gb']} GB", file=sys.stderr, flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(config_name: str):
    import numpy as np
    import torch

    from spic_diffusers import SPICPipeline, SPICUNet2DModel
    from spic_diffusers.codec import area_downsample
    from spic_diffusers.data.synthetic import make_scene
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    torch.manual_seed(0)
    unet = SPICUNet2DModel(**CONFIGS[config_name]).eval()
    pipe = SPICPipeline(unet=unet, scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    height, width = unet.config.sample_size
    scene = make_scene(height, width, seed=123)
    coarse = area_downsample(scene.image, 4)
    return pipe, np.asarray(scene.semantic_map), coarse


def worker(spec: dict) -> dict:
    import torch

    torch.set_grad_enabled(False)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    pipe, labels, coarse = _setup(spec["config"])
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    result = {"config": spec["config"], "parameters": n_params, "threads": torch.get_num_threads()}
    if spec["mode"] == "sampler":
        import diffusers

        cls_name, steps, extra = SAMPLERS[spec["sampler"]]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
        counted = []
        handle = pipe.unet.register_forward_hook(lambda *a: counted.append(1))
        kwargs = dict(num_inference_steps=steps, output_type="np", generator=torch.Generator().manual_seed(0))
        pipe(labels, coarse, **{**kwargs, "num_inference_steps": steps})  # warm-up
        counted.clear()
        start, cpu = time.perf_counter(), time.process_time()
        pipe(labels, coarse, **kwargs)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        handle.remove()
        result.update(sampler=spec["sampler"], forwards=len(counted), seconds_per_image=seconds,
                      cpu_seconds_per_image=cpu)
    else:  # one guided step: batched vs two passes
        segmap = pipe.prepare_segmentation_map(labels).float()
        low = torch.from_numpy(coarse).permute(2, 0, 1)[None].float() / 127.5 - 1
        x = torch.randn(1, 3, *segmap.shape[-2:])
        zeros = torch.zeros_like(segmap)

        def batched():
            pipe.guided_model_output(x, 150, segmap, low, guidance_scale=1.5)

        def separate():
            cond = pipe.unet(x, 150, segmap, low).sample
            uncond = pipe.unet(x, 150, zeros, low).sample
            return uncond[:, :3] + 1.5 * (cond[:, :3] - uncond[:, :3])

        if not spec.get("warmup", True):  # paper size: warm the kernels up on a small input instead
            small = torch.zeros(1, 3, 32, 64)
            pipe.unet(small, 150, segmap[..., :32, :64], low)
        times = {}
        repeats = spec.get("repeats", 1)
        for name, fn in (("batched", batched), ("separate", separate)):
            if spec.get("warmup", True):
                fn()
            runs, cpu_runs = [], []
            for _ in range(repeats):
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                runs.append(time.perf_counter() - start)
                cpu_runs.append(time.process_time() - cpu)
            times[name], times[name + "_cpu"] = min(runs), min(cpu_runs)
        result.update(guided_step_batched_s=times["batched"], guided_step_separate_s=times["separate"],
                      batched_speedup=times["separate"] / times["batched"],
                      guided_step_batched_cpu_s=times["batched_cpu"], guided_step_separate_cpu_s=times["separate_cpu"],
                      batched_speedup_cpu=times["separate_cpu"] / times["batched_cpu"])
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def run_in_subprocess(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        return {**spec, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="tiny,paper", help="comma-separated: tiny, paper")
    parser.add_argument("--paper_full", action="store_true", help="run every sampler at paper size (slow)")
    parser.add_argument("--quick", action="store_true", help="tiny config only")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the guided-step timing (tiny config)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per measurement (default: torch's)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    table = parser.add_argument_group("quality against time (--quality_table)")
    table.add_argument("--quality_table", action="store_true",
                       help="measure every sampler (and --student) on held-out frames instead; JSON + Markdown")
    table.add_argument("--model", help="the receiver (SPICPipeline folder)")
    table.add_argument("--student", nargs="*", default=[], help="distilled student folder(s)")
    table.add_argument("--student_steps", default="4,2,1", help="student step counts to run (default 4,2,1)")
    table.add_argument("--frames", help="a `datasets` folder with image and semantic_map columns")
    table.add_argument("--split", default="test", help="split of --frames (default test)")
    table.add_argument("--num_frames", type=int, default=8)
    table.add_argument("--segmenter", default=None, help="segmentation model folder for mIoU")
    table.add_argument("--coarse_codec", default="hevc")
    table.add_argument("--dtypes", default="fp32,bf16")
    table.add_argument("--keep_slow_dtypes", action="store_true",
                       help="keep a precision even when it runs over 2x slower than fp32 here (left out by default)")
    table.add_argument("--output_json", default=None)
    table.add_argument("--output_md", default=None)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quality_table:
        return quality_table(args)
    configs = ["tiny"] if args.quick else [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {sorted(CONFIGS)}")
    _announce(configs, args.paper_full)
    total = sum(1 + (len(SAMPLERS) if c != "paper" or args.paper_full else 0) for c in configs)
    done = [0]

    def measure(spec: dict) -> dict:
        done[0] += 1
        what = spec.get("sampler", "one guided step, batched and as two passes")
        print(f"[{done[0]}/{total}] {spec['config']}: {what} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = run_in_subprocess(spec)
        print(f"[{done[0]}/{total}] {spec['config']}: done in {time.perf_counter() - start:.0f} s, peak "
              f"{result.get('peak_rss_mb', float('nan')):.0f} MB" + (f", error: {result['error']}" if "error" in result
                                                                     else ""), file=sys.stderr, flush=True)
        return result

    report = {"benchmark": "decode", "results": []}
    for config in configs:
        full = config != "paper" or args.paper_full
        step = measure({"config": config, "mode": "step", "repeats": args.repeats if config == "tiny" else 1,
                        "warmup": config == "tiny", "threads": args.threads})
        report["results"].append(step)
        for sampler in SAMPLERS:
            if full:
                report["results"].append(measure({"config": config, "mode": "sampler", "sampler": sampler,
                                                  "threads": args.threads}))
            elif "guided_step_batched_s" in step:
                visited = SAMPLERS[sampler][1] // 5
                report["results"].append({
                    "config": config, "sampler": sampler, "forwards": visited, "estimated": True,
                    "seconds_per_image": visited * step["guided_step_batched_s"],
                    "cpu_seconds_per_image": visited * step["guided_step_batched_cpu_s"],
                    "peak_rss_mb": step["peak_rss_mb"],
                })
    print(json.dumps(report, indent=2))
    return 0


def quality_table(args: argparse.Namespace) -> int:
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import decode_quality

    if not args.model or not args.frames:
        raise SystemExit("--quality_table needs --model and --frames")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = decode_quality.run(
        args.model, args.frames, students=args.student, split=args.split, num_frames=args.num_frames,
        student_steps=tuple(int(k) for k in args.student_steps.split(",")), segmenter_path=args.segmenter,
        coarse_codec=args.coarse_codec, dtypes=tuple(args.dtypes.split(",")),
        slow_dtype_ratio=None if args.keep_slow_dtypes else 2.0,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    table = decode_quality.markdown(report)
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(report, f, indent=2)
    if args.output_md:
        with open(args.output_md, "w") as f:
            f.write(table)
    print(table, file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
