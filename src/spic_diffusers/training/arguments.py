"""Command-line options of `training/train_spic.py`, with the SPIC paper's recipe as defaults.

A `--config FILE.json` holds any of these options by name (`{"resolution": [32, 64], ...}`); options given on
the command line win over the file, the file wins over the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from ..sizes import as_hw


class TrainingInputError(ValueError):
    """The command line, the dataset or the output folder cannot be used for training (stops before any step)."""


def _int_list(value: str | Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
    else:
        parts = list(value)
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def _float_list(value: str | float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        value = [value]
    parts = [p for p in value.replace(" ", "").split(",") if p] if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not numbers or not all(math.isfinite(n) for n in numbers):
        raise argparse.ArgumentTypeError(f"expected one or more finite numbers, got {value!r}")
    return numbers


def _resolution(value: str | int | Sequence[int]) -> tuple[int, int]:
    return as_hw(value, "resolution")


def _optional_float(value: str) -> float | None:
    return None if str(value).lower() in ("none", "") else float(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train (or fine-tune) the SPIC receiver: a DDPM conditioned on a semantic map and a coarse image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=None, help="JSON file of option values (by option name, without dashes).")

    g = p.add_argument_group("data")
    g.add_argument("--dataset_name_or_path", default=None,
                   help="A `save_to_disk` folder, a Hub dataset id, a data folder, or data files (parquet/arrow/json).")
    g.add_argument("--dataset_config_name", default=None, help="Hub dataset configuration name.")
    g.add_argument("--train_split", default="train")
    g.add_argument("--validation_split", default="validation",
                   help="Split for validation images (falls back to the first training rows when missing).")
    g.add_argument("--streaming", action="store_true", help="Stream the dataset (needs --max_train_steps).")
    g.add_argument("--shuffle_buffer_size", type=int, default=1000, help="Shuffle buffer when streaming.")
    g.add_argument("--cache_dir", default=None)
    g.add_argument("--max_train_samples", type=int, default=None, help="Use only the first N training rows.")
    g.add_argument("--resolution", type=_resolution, default=(256, 512), help="HEIGHT,WIDTH of training images.")
    g.add_argument("--num_classes", type=int, default=19, help="Semantic classes (19 Cityscapes train ids).")
    g.add_argument("--use_instance_edges", action="store_true",
                   help="Add the instance-edge channel (needs an `instance_map` column).")
    g.add_argument("--random_flip", action=argparse.BooleanOptionalAction, default=True,
                   help="Horizontal flips (image, map and coarse image together).")
    g.add_argument("--random_crop", type=_resolution, default=None,
                   help="HEIGHT,WIDTH random crops of each training image (aligned with the coarse grid; the "
                        "model is convolutional, so it still samples at full size).")
    g.add_argument("--coarse_source", choices=("auto", "column", "on_the_fly"), default="auto",
                   help="Coarse images from the dataset's `coarse` column, made on the fly, or the column if present.")
    g.add_argument("--coarse_downsample", type=int, default=4, help="Down-sampling factor of the coarse image.")
    g.add_argument("--coarse_codec", default=None,
                   help="Lossy codec for on-the-fly coarse images (a `spic_diffusers.codec` name, or `none`; "
                        "default: hevc at QP 35, else the first available of `codec.COARSE_FALLBACKS`, logged).")
    g.add_argument("--coarse_quality", type=float, default=None, help="Codec quality (default: the codec's own).")
    g.add_argument("--coarse_qualities", type=_float_list, default=None,
                   help="Several codec qualities, e.g. 30,35,40,45: each training sample's coarse image is coded at "
                        "one drawn at random, so one model serves several rates (on-the-fly coarse images only; "
                        "overrides --coarse_quality).")
    g.add_argument("--validate_rows", type=int, default=32,
                   help="Rows checked (columns, label range, sizes) before training; 0 checks every row.")
    g.add_argument("--dataloader_num_workers", type=int, default=0)

    g = p.add_argument_group("model")
    g.add_argument("--init_from", default=None,
                   help="Fine-tune from a diffusers folder (a pipeline folder with unet/, or a unet folder).")
    g.add_argument("--model_config", default=None, help="A SPICUNet2DModel config.json to build the model from.")
    g.add_argument("--base_channels", type=int, default=256)
    g.add_argument("--channel_mult", type=_int_list, default=(1, 1, 2, 2, 4, 4))
    g.add_argument("--layers_per_block", type=int, default=2)
    g.add_argument("--attention_downsample_factors", type=_int_list, default=(8, 16, 32),
                   help="Down-sampling factors whose levels use attention (8,16,32 = resolutions 32,16,8 at 256).")
    g.add_argument("--attention_head_dim", type=int, default=64)
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--resblock_updown", action=argparse.BooleanOptionalAction, default=True,
                   help="Residual blocks for up/down sampling (else convs).")
    g.add_argument("--scale_shift_norm", action=argparse.BooleanOptionalAction, default=True,
                   help="Scale-shift time embedding in residual blocks (else additive).")

    g = p.add_argument_group("diffusion and loss")
    g.add_argument("--num_train_timesteps", type=int, default=1000)
    g.add_argument("--beta_start", type=float, default=0.0001)
    g.add_argument("--beta_end", type=float, default=0.02)
    g.add_argument("--timestep_bias_max", type=int, default=None,
                   help="Draw --timestep_bias_fraction of the timesteps from [0, T) instead of uniformly over all: "
                        "SPIC's sampler only visits t <= 200, so small budgets are best spent there. Off by default "
                        "(the paper trains uniformly).")
    g.add_argument("--timestep_bias_fraction", type=float, default=0.9,
                   help="Share of timesteps drawn below --timestep_bias_max.")
    g.add_argument("--cfg_drop_rate", type=float, default=0.2,
                   help="Fraction of samples trained with an all-zero semantic map (classifier-free guidance; "
                        "the paper's script used 0).")

    g = p.add_argument_group("optimisation")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--train_batch_size", type=int, default=8, help="Batch size per device.")
    g.add_argument("--num_train_epochs", type=int, default=100)
    g.add_argument("--max_train_steps", type=int, default=None, help="Optimiser steps (overrides epochs).")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--gradient_checkpointing", action="store_true")
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--scale_lr", action="store_true", help="Multiply the lr by batch x accumulation x processes.")
    g.add_argument("--lr_scheduler", default="constant",
                   help="diffusers.optimization scheduler name (constant, constant_with_warmup, linear, cosine, ...).")
    g.add_argument("--lr_warmup_steps", type=int, default=0)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_weight_decay", type=float, default=0.0)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--max_grad_norm", type=_optional_float, default=None,
                   help="Clip gradients to this norm (the paper does not clip).")
    g.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--ema_decay", type=float, default=0.9999)
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
                   help="Overrides `accelerate launch --mixed_precision`.")
    g.add_argument("--cpu", action="store_true", help="Train on CPU (also chosen when no accelerator is found).")
    g.add_argument("--channels_last", action="store_true",
                   help="Channels-last memory format for the model and batches: on CPUs it saves the layout copies "
                        "around every convolution (a quarter to a third of a bf16 step).")

    g = p.add_argument_group("output, checkpoints, logging")
    g.add_argument("--output_dir", default="spic-model")
    g.add_argument("--overwrite", "--overwrite_output_dir", dest="overwrite_output_dir", action="store_true",
                   help="Write into a non-empty output_dir that is not a previous run of this script "
                        "(--overwrite_output_dir: the diffusers scripts' name, also accepted).")
    g.add_argument("--checkpointing_steps", type=int, default=5000)
    g.add_argument("--checkpoints_total_limit", type=int, default=None)
    g.add_argument("--resume_from_checkpoint", default=None, help="`latest` or a checkpoint folder.")
    g.add_argument("--validation_steps", type=int, default=5000, help="Validation images every N steps (0: never).")
    g.add_argument("--num_validation_images", type=int, default=2)
    g.add_argument("--validation_inference_steps", type=int, default=100)
    g.add_argument("--validation_max_timestep", type=int, default=200)
    g.add_argument("--validation_guidance_scale", type=float, default=1.5)
    g.add_argument("--report_to", default="tensorboard", help="Accelerate tracker (tensorboard, wandb, all, none).")
    g.add_argument("--logging_dir", default="logs", help="Relative to output_dir.")
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--push_to_hub", action="store_true")
    g.add_argument("--hub_model_id", default=None)
    g.add_argument("--hub_token", default=None)
    g.add_argument("--hub_private_repo", action="store_true")
    return p


_TUPLE_OPTIONS = {"channel_mult": _int_list, "attention_downsample_factors": _int_list, "resolution": _resolution}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse options (CLI over `--config` file over defaults) and check them."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        if not os.path.isfile(first.config):
            raise TrainingInputError(f"--config {first.config!r} is not a file")
        try:
            with open(first.config) as f:
                values: dict[str, Any] = json.load(f)
        except json.JSONDecodeError as err:
            raise TrainingInputError(f"--config {first.config!r} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise TrainingInputError(f"--config {first.config!r} must hold a JSON object of option values")
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known - {"_comment"})
        if unknown:
            raise TrainingInputError(f"--config {first.config!r} has unknown options {unknown}")
        values.pop("_comment", None)
        for key, convert in _TUPLE_OPTIONS.items():
            if key in values:
                values[key] = convert(values[key])
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_mixed_precision(mixed_precision: str | None, use_cpu: bool) -> None:
    """Refuse fp16 autocast on a CPU (the option's, or `accelerate launch --mixed_precision`'s), which
    Accelerate would otherwise accept without a word; bf16 is the CPU's reduced precision."""
    if mixed_precision is None:
        mixed_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if use_cpu and mixed_precision == "fp16":
        raise TrainingInputError(
            "--mixed_precision fp16 needs a CUDA GPU and this run trains on the CPU: use bf16 (fast on CPUs with "
            "AVX512-BF16 or AMX, see pipelines.pipeline_spic.native_bf16) or no"
        )


def check_args(args: argparse.Namespace) -> None:
    """Reject option combinations that cannot train, with the reason."""
    if not args.dataset_name_or_path:
        raise TrainingInputError("--dataset_name_or_path is required")
    positive = ("train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "checkpointing_steps",
                "coarse_downsample", "num_train_timesteps", "num_classes", "logging_steps")
    for name in positive:
        if getattr(args, name) < 1:
            raise TrainingInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise TrainingInputError(f"--max_train_steps must be >= 1, got {args.max_train_steps}")
    if args.streaming and args.max_train_steps is None:
        raise TrainingInputError("--streaming needs --max_train_steps (a stream has no known length)")
    if not 0.0 <= args.cfg_drop_rate <= 1.0:
        raise TrainingInputError(f"--cfg_drop_rate must be in [0, 1], got {args.cfg_drop_rate}")
    if args.timestep_bias_max is not None and not 1 <= args.timestep_bias_max <= args.num_train_timesteps:
        raise TrainingInputError(
            f"--timestep_bias_max must be in 1..{args.num_train_timesteps}, got {args.timestep_bias_max}"
        )
    if not 0.0 <= args.timestep_bias_fraction <= 1.0:
        raise TrainingInputError(f"--timestep_bias_fraction must be in [0, 1], got {args.timestep_bias_fraction}")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise TrainingInputError(f"--ema_decay must be in [0, 1], got {args.ema_decay}")
    if args.learning_rate <= 0:
        raise TrainingInputError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise TrainingInputError(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}")
    height, width = args.resolution
    levels = len(args.channel_mult)
    multiple = 2 ** (levels - 1)
    if args.init_from is None and args.model_config is None and (height % multiple or width % multiple):
        raise TrainingInputError(
            f"--resolution {height}x{width} must be divisible by {multiple} for {levels} model levels"
        )
    if height % args.coarse_downsample or width % args.coarse_downsample:
        raise TrainingInputError(
            f"--resolution {height}x{width} must be divisible by --coarse_downsample {args.coarse_downsample}"
        )
    if args.coarse_qualities is not None:
        if args.coarse_source == "column":
            raise TrainingInputError("--coarse_qualities codes coarse images on the fly; it cannot use "
                                     "--coarse_source column")
        if args.coarse_codec == "none":
            raise TrainingInputError("--coarse_qualities needs a codec (--coarse_codec is none)")
        args.coarse_quality = args.coarse_qualities[0]
    if args.random_crop is not None:
        crop_h, crop_w = args.random_crop
        if crop_h > height or crop_w > width:
            raise TrainingInputError(f"--random_crop {crop_h}x{crop_w} is larger than --resolution {height}x{width}")
        if crop_h % args.coarse_downsample or crop_w % args.coarse_downsample:
            raise TrainingInputError(
                f"--random_crop {crop_h}x{crop_w} must be divisible by --coarse_downsample {args.coarse_downsample}"
            )
    if args.init_from is not None and args.model_config is not None:
        raise TrainingInputError("pass either --init_from or --model_config, not both")
    if args.resume_from_checkpoint not in (None, "latest") and not os.path.isdir(args.resume_from_checkpoint):
        raise TrainingInputError(f"--resume_from_checkpoint {args.resume_from_checkpoint!r} is not a folder")
    if args.push_to_hub and not args.hub_model_id:
        args.hub_model_id = os.path.basename(os.path.abspath(args.output_dir))
    if args.validation_steps < 0 or args.num_validation_images < 0:
        raise TrainingInputError("--validation_steps and --num_validation_images must be >= 0")
