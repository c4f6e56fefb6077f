"""Command-line options of the trainers: the options every trainer shares, under diffusers' training-script names
(`add_training_arguments`, `check_training_args`), and those of `training/train_spic.py`, with the SPIC paper's
recipe as defaults.

A `--config FILE.json` holds any of `train_spic.py`'s options by name (`{"resolution": [32, 64], ...}`); options
given on the command line win over the file, the file wins over the defaults.
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


# The options of `training/train_spic.py`, `distill_spic.py` and `train_segmenter.py` that mean the same thing in
# each, spelt as in diffusers' training scripts. Each trainer gives its own defaults and leaves out what it lacks.
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    "seed": dict(type=int, default=0),
    "train_batch_size": dict(type=int, default=8, help="Batch size per device."),
    "max_train_steps": dict(type=int, default=None, help="Optimiser steps."),
    "gradient_accumulation_steps": dict(
        type=int, default=1, help="Micro-batches per optimiser step (through `accelerator.accumulate`)."),
    "learning_rate": dict(type=float, default=1e-4),
    "lr_scheduler": dict(
        default="constant",
        help="diffusers.optimization scheduler name (constant, constant_with_warmup, linear, cosine, ...)."),
    "lr_warmup_steps": dict(type=int, default=0),
    "adam_beta1": dict(type=float, default=0.9),
    "adam_beta2": dict(type=float, default=0.999),
    "adam_weight_decay": dict(type=float, default=0.0),
    "adam_epsilon": dict(type=float, default=1e-8),
    "max_grad_norm": dict(type=_optional_float, default=None, help="Clip gradients to this norm (none: no clipping)."),
    "use_ema": dict(action=argparse.BooleanOptionalAction, default=True,
                    help="Keep an exponential moving average of the weights; the saved model holds it."),
    "ema_decay": dict(type=float, default=0.9999),
    "mixed_precision": dict(choices=("no", "fp16", "bf16"), default=None,
                            help="Overrides `accelerate launch --mixed_precision` (fp16 needs a CUDA GPU)."),
    "cpu": dict(action="store_true", help="Train on the CPU (also chosen when neither CUDA nor MPS is found)."),
    "dataloader_num_workers": dict(type=int, default=0),
    "output_dir": dict(default=None),
    "overwrite_output_dir": dict(
        action="store_true", help="Write into a non-empty output_dir that is not a previous run of this trainer."),
    "checkpointing_steps": dict(type=int, default=500, help="Save a resumable checkpoint every N steps."),
    "checkpoints_total_limit": dict(type=int, default=None, help="Keep at most N checkpoints (oldest go first)."),
    "resume_from_checkpoint": dict(default=None, help="`latest` or a checkpoint folder."),
    "logging_steps": dict(type=int, default=10),
    "push_to_hub": dict(action="store_true"),
    "hub_model_id": dict(default=None, help="Hub repository (default: the output folder's name)."),
    "hub_token": dict(default=None),
    "hub_private_repo": dict(action="store_true"),
}


def add_training_arguments(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None,
                           leave_out: Sequence[str] = (), title: str = "optimisation, checkpoints, output"):
    """Add the shared options (`SHARED_OPTIONS`) to `parser` as one group, with this trainer's `defaults`."""
    defaults = dict(defaults or {})
    unknown = sorted((set(defaults) | set(leave_out)) - set(SHARED_OPTIONS))
    if unknown:
        raise ValueError(f"not shared training options: {unknown}")
    group = parser.add_argument_group(title)
    for name, spec in SHARED_OPTIONS.items():
        if name in leave_out:
            continue
        spec = dict(spec)
        if name in defaults:
            spec["default"] = defaults[name]
        if name == "output_dir" and spec["default"] is None:
            spec["required"] = True
        group.add_argument(f"--{name}", **spec)
    return group


def check_training_args(args: argparse.Namespace) -> None:
    """Refuse shared options (those the trainer has) that cannot train, with the reason."""
    def given(name: str) -> bool:
        return getattr(args, name, None) is not None

    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "logging_steps",
                 "max_train_steps", "checkpoints_total_limit"):
        if given(name) and getattr(args, name) < 1:
            raise TrainingInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("lr_warmup_steps", "dataloader_num_workers"):
        if given(name) and getattr(args, name) < 0:
            raise TrainingInputError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if given("learning_rate") and not args.learning_rate > 0:
        raise TrainingInputError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if given("ema_decay") and not 0.0 <= args.ema_decay <= 1.0:
        raise TrainingInputError(f"--ema_decay must be in [0, 1], got {args.ema_decay}")
    if given("max_grad_norm") and not args.max_grad_norm >= 0:
        raise TrainingInputError(f"--max_grad_norm must be >= 0 (0 or none: no clipping), got {args.max_grad_norm}")
    if args.resume_from_checkpoint not in (None, "latest") and not os.path.isdir(args.resume_from_checkpoint):
        raise TrainingInputError(f"--resume_from_checkpoint {args.resume_from_checkpoint!r} is not a folder")
    if getattr(args, "push_to_hub", False) and not args.hub_model_id:
        args.hub_model_id = os.path.basename(os.path.abspath(args.output_dir))


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

    add_training_arguments(p, {"output_dir": "spic-model", "checkpointing_steps": 5000})
    g = p.add_argument_group("optimisation (the receiver's own)")
    g.add_argument("--num_train_epochs", type=int, default=100, help="Epochs, unless --max_train_steps is given.")
    g.add_argument("--gradient_checkpointing", action="store_true")
    g.add_argument("--scale_lr", action="store_true", help="Multiply the lr by batch x accumulation x processes.")
    g.add_argument("--channels_last", action="store_true",
                   help="Channels-last memory format for the model and batches: on CPUs it saves the layout copies "
                        "around every convolution (a quarter to a third of a bf16 step).")

    g = p.add_argument_group("validation and logging")
    g.add_argument("--validation_steps", type=int, default=5000, help="Validation images every N steps (0: never).")
    g.add_argument("--num_validation_images", type=int, default=2)
    g.add_argument("--validation_inference_steps", type=int, default=100)
    g.add_argument("--validation_max_timestep", type=int, default=200)
    g.add_argument("--validation_guidance_scale", type=float, default=1.5)
    g.add_argument("--report_to", default="tensorboard", help="Accelerate tracker (tensorboard, wandb, all, none).")
    g.add_argument("--logging_dir", default="logs", help="Relative to output_dir.")
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


def check_args(args: argparse.Namespace) -> None:
    """Reject option combinations that cannot train, with the reason."""
    if not args.dataset_name_or_path:
        raise TrainingInputError("--dataset_name_or_path is required")
    check_training_args(args)
    for name in ("num_train_epochs", "coarse_downsample", "num_train_timesteps", "num_classes"):
        if getattr(args, name) < 1:
            raise TrainingInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
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
    if args.validation_steps < 0 or args.num_validation_images < 0:
        raise TrainingInputError("--validation_steps and --num_validation_images must be >= 0")
