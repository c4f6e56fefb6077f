"""The `evaluate_spic.py` command line: flags -> :class:`EvalConfig` -> a run (also under `accelerate launch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .. import metrics
from ..pipelines.schedulers import SCHEDULER_CLASSES
from .report import markdown_table
from .runner import run_evaluation
from .settings import (
    DEFAULT_COARSE_CODEC,
    DEFAULT_MAP_CODER,
    TRANSMIT_MAPS,
    EvalConfig,
    SAVED_SAMPLER,
    EvaluationError,
    RateSetting,
    SamplerSetting,
)
from .settings import parse_number_list, parse_sampler_sweep


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(description="Evaluate SPIC (rate, mIoU, FID/KID, PSNR, ...) against baselines.")
    parser.add_argument("--model", required=True, help="SPIC pipeline folder or Hub id")
    parser.add_argument("--dataset", required=True, help="dataset folder (save_to_disk or data files) or Hub id")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--num_samples", type=int, default=None, help="evaluate the first N images")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--coarse_codec", default=DEFAULT_COARSE_CODEC)
    parser.add_argument("--coarse_quality", type=float, default=None, help="codec quality (default: the codec's)")
    parser.add_argument("--downsample", type=int, default=4)
    parser.add_argument("--map_coder", default=DEFAULT_MAP_CODER)
    parser.add_argument("--segmenter", default=None,
                        help="transformers semantic-segmentation model in Cityscapes train ids (all 19 or a subset)")
    parser.add_argument("--transmit_map", default="ground_truth", choices=TRANSMIT_MAPS,
                        help="what the transmitter codes: the dataset's map, or the segmenter's map of the original")
    parser.add_argument("--scheduler", default="ddpm", choices=sorted(SCHEDULER_CLASSES) + [SAVED_SAMPLER],
                        help="the sampler; 'saved' runs the pipeline's own scheduler, timesteps and guidance (a "
                             "distilled student's schedule; --steps and --guidance are then unused)")
    parser.add_argument("--steps", type=int, default=100, help="num_inference_steps of the pipeline")
    parser.add_argument("--guidance", type=float, default=1.5)
    parser.add_argument("--max_timestep", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep_qualities", default=None, help="comma list of coarse qualities for rate curves")
    parser.add_argument("--sweep_downsample", default=None, help="comma list of downsample factors for rate curves")
    parser.add_argument("--sweep_schedulers", default=None, help="e.g. ddpm:20,ddim:10,dpmsolver++:5")
    parser.add_argument("--no_baselines", action="store_true")
    parser.add_argument("--baseline_codecs", default=None, help="comma list (default: every available codec)")
    parser.add_argument("--inception_weights", default=None, help="torch-fidelity Inception weights (.pth)")
    parser.add_argument("--fid_feature_dim", type=int, default=2048, choices=metrics.INCEPTION_FEATURE_DIMS)
    parser.add_argument("--no_lpips", action="store_true")
    parser.add_argument("--map_only", action="store_true",
                        help="also decode each image from its map alone (flat grey coarse image; the rate of the map "
                             "and header): the map-only ablation")
    parser.add_argument("--unet_dtype", default=None, choices=("fp32", "bf16", "fp16"),
                        help="the UNet's autocast dtype (default: the pipeline's own, e.g. a student's saved bf16 "
                             "where the device runs it natively)")
    parser.add_argument("--grid_images", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice, one per core); all cores are fastest "
                             "on an idle machine, fewer when other work shares the cores")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="recompute everything and write into a foreign folder (--force: the old name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _quality(value: float | None):
    return None if value is None else (int(value) if float(value).is_integer() else float(value))


def config_from_args(args) -> EvalConfig:
    for name in ("steps", "downsample", "max_timestep"):
        if getattr(args, name) < 1:
            raise EvaluationError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        raise EvaluationError(f"--threads must be >= 1, got {args.threads}")
    if args.grid_images < 0:
        raise EvaluationError(f"--grid_images must be >= 0, got {args.grid_images}")
    if args.num_samples is not None and args.num_samples < 1:
        raise EvaluationError(f"--num_samples must be >= 1, got {args.num_samples}")
    if args.transmit_map == "segmenter" and not args.segmenter:
        raise EvaluationError("--transmit_map segmenter needs --segmenter")
    rate = RateSetting(args.coarse_codec, _quality(args.coarse_quality), args.downsample, args.map_coder)
    sampler = SamplerSetting(args.scheduler, args.steps, args.guidance, args.max_timestep, args.seed)
    rate_sweep = []
    if args.sweep_qualities or args.sweep_downsample:
        qualities = (parse_number_list(args.sweep_qualities, float, "--sweep_qualities")
                     if args.sweep_qualities else [args.coarse_quality])
        factors = (parse_number_list(args.sweep_downsample, int, "--sweep_downsample")
                   if args.sweep_downsample else [args.downsample])
        rate_sweep = [RateSetting(args.coarse_codec, _quality(q), d, args.map_coder)
                      for d in factors for q in qualities]
    sampler_sweep = (parse_sampler_sweep(args.sweep_schedulers, args.guidance, args.max_timestep, args.seed)
                     if args.sweep_schedulers else [])
    return EvalConfig(
        model=args.model,
        dataset=args.dataset,
        output_dir=args.output_dir,
        split=args.split,
        num_samples=args.num_samples,
        rate=rate,
        sampler=sampler,
        rate_sweep=rate_sweep,
        sampler_sweep=sampler_sweep,
        segmenter=args.segmenter,
        transmit_map=args.transmit_map,
        baselines=not args.no_baselines,
        baseline_codecs=([c.strip() for c in args.baseline_codecs.split(",") if c.strip()]
                         if args.baseline_codecs else None),
        inception_weights=args.inception_weights,
        fid_feature_dim=args.fid_feature_dim,
        lpips=not args.no_lpips,
        grid_images=args.grid_images,
        map_only=args.map_only,
        unet_dtype=args.unet_dtype,
        device=args.device,
        force=args.overwrite,
        show_progress=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        results = run_evaluation(config)
    except EvaluationError as error:
        parser.error(str(error))
    if results is None:  # not the main process of a distributed run: the main one reports
        return None
    print(markdown_table(results))
    print(f"results: {Path(config.output_dir) / 'results.json'}")
    return results
