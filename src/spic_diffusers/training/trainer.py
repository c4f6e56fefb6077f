"""The SPIC training loop with Accelerate: hybrid loss, EMA, checkpoints that resume exactly, validation grids.

Every random draw of a step (timesteps, noise, flips, guidance drops) comes from a generator seeded by
(seed, micro-batch index, process index), and the data order of an epoch depends only on (seed, epoch); a run
resumed from a checkpoint therefore repeats the uninterrupted run's steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..memory import available_memory
from ..models.unet_spic import SPICUNet2DModel
from .arguments import TrainingInputError, parse_args
from .loop import TrainingRun, make_accelerator, step_generator
from .loss import hybrid_loss, linear_alphas_cumprod, q_sample
from .validation import run_validation, validation_grid  # noqa: F401  (validation_grid: part of this module's API)

logger = logging.getLogger("spic_diffusers.training")

RUN_MARKER = "spic_training_args.json"
SUMMARY_FILE = "train_summary.json"


# --------------------------------------------------------------------------- model


def unet_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `SPICUNet2DModel` config the size options describe (the paper's network by default)."""
    return dict(
        sample_size=tuple(args.resolution),
        num_semantic_channels=args.num_classes + int(args.use_instance_edges),
        instance_edge_channel=bool(args.use_instance_edges),
        block_out_channels=tuple(args.base_channels * m for m in args.channel_mult),
        layers_per_block=args.layers_per_block,
        attention_downsample_factors=tuple(args.attention_downsample_factors),
        attention_head_dim=args.attention_head_dim,
        downsample_type="resnet" if args.resblock_updown else "conv",
        upsample_type="resnet" if args.resblock_updown else "conv",
        resnet_time_scale_shift="scale_shift" if args.scale_shift_norm else "default",
        dropout=args.dropout,
    )


def load_init_unet(path: str) -> SPICUNet2DModel:
    """A `SPICUNet2DModel` from a pipeline folder (`unet/` inside) or a unet folder."""
    try:
        if os.path.isfile(os.path.join(path, "model_index.json")):
            return SPICUNet2DModel.from_pretrained(path, subfolder="unet")
        if os.path.isfile(os.path.join(path, "config.json")):
            return SPICUNet2DModel.from_pretrained(path)
    except ValueError as err:  # a damaged or hostile config or weights file
        raise TrainingInputError(f"--init_from {path!r}: {err}") from None
    raise TrainingInputError(
        f"--init_from {path!r} is neither a pipeline folder (model_index.json + unet/) nor a unet folder (config.json)"
    )


def build_unet(args: argparse.Namespace) -> SPICUNet2DModel:
    if args.init_from:
        unet = load_init_unet(args.init_from)
    elif args.model_config:
        try:
            unet = SPICUNet2DModel.from_config(SPICUNet2DModel.load_config(args.model_config))
        except (OSError, ValueError) as err:
            raise TrainingInputError(f"--model_config {args.model_config!r}: {err}") from err
    else:
        try:
            unet = SPICUNet2DModel(**unet_config_from_args(args))
        except ValueError as err:
            raise TrainingInputError(f"model options: {err}") from err
    config = unet.config
    if config.out_channels != 2 * config.in_channels:
        raise TrainingInputError(
            f"the hybrid loss needs learned variance: out_channels must be {2 * config.in_channels}, "
            f"got {config.out_channels}"
        )
    height, width = args.resolution
    if height % unet.size_multiple or width % unet.size_multiple:
        raise TrainingInputError(
            f"--resolution {height}x{width} must be divisible by {unet.size_multiple} for this model"
        )
    return unet


def _config_for_estimate(args: argparse.Namespace) -> dict[str, Any] | None:
    """The UNet config `build_unet` will use, read without loading any weights (None when unreadable)."""
    try:
        if args.init_from:
            is_pipeline = os.path.isfile(os.path.join(args.init_from, "model_index.json"))
            return dict(SPICUNet2DModel.load_config(args.init_from, subfolder="unet" if is_pipeline else None))
        if args.model_config:
            return dict(SPICUNet2DModel.load_config(args.model_config))
        return unet_config_from_args(args)
    except (OSError, ValueError):
        return None  # build_unet reports the problem


def check_cpu_memory(args: argparse.Namespace, num_processes: int, available_bytes: int | None = None) -> None:
    """Refuse, before starting, a CPU training whose processes cannot all hold their model state.

    Each process keeps float32 weights, gradients, AdamW's two moments and (with EMA) the EMA weights: a
    lower bound that leaves out activations.  ``available_bytes`` defaults to the memory available now.
    """
    config = _config_for_estimate(args)
    if config is None:
        return
    try:
        with torch.device("meta"):  # shapes only, no memory
            parameters = sum(p.numel() for p in SPICUNet2DModel.from_config(config).parameters())
    except (TypeError, ValueError):
        return
    copies = 4 + int(bool(args.use_ema))
    need = num_processes * parameters * 4 * copies
    available = available_memory("cpu") if available_bytes is None else available_bytes
    if available is not None and need > available:
        what = "weights, gradients, 2 AdamW moments" + (", EMA" if args.use_ema else "")
        raise TrainingInputError(
            f"{num_processes} CPU training process(es) need at least {need / 2**30:.1f} GiB ({parameters / 1e6:.0f} M "
            f"parameters x {copies} float32 copies: {what}) but {available / 2**30:.1f} GiB is available; use fewer "
            "processes (--num_processes), a smaller model (e.g. --config training/configs/tiny.json) or GPUs"
        )


# ------------------------------------------------------------------------ one step


def augment_batch(batch: dict[str, torch.Tensor], generator: torch.Generator, *, random_flip: bool,
                  cfg_drop_rate: float, crop: tuple[int, int] | None = None,
                  coarse_downsample: int = 4) -> dict[str, torch.Tensor]:
    """Random crops and horizontal flips (image, map, coarse image together) and guidance drops (all-zero map).

    A batch with `low_res_variants` (samples x qualities x 3 x h x w) gets one of them per sample as its coarse image.
    """
    batch = dict(batch)
    size = batch["pixel_values"].shape[0]
    flip = torch.rand(size, generator=generator) < 0.5
    drop = torch.rand(size, generator=generator) < cfg_drop_rate
    variants = batch.pop("low_res_variants", None)
    if variants is not None:  # one coarse image per sample among those coded at each of --coarse_qualities
        pick = torch.randint(0, variants.shape[1], (size,), generator=generator).to(variants.device)
        batch["low_res_image"] = variants[torch.arange(size, device=variants.device), pick]
    if crop is not None:
        batch = _random_crop(batch, generator, crop, coarse_downsample)
    if random_flip and flip.any():
        for key in ("pixel_values", "segmentation_map", "low_res_image", "labels"):
            if key in batch:
                value = batch[key]
                mask = flip.to(value.device).view(-1, *([1] * (value.ndim - 1)))
                batch[key] = torch.where(mask, value.flip(-1), value)
    if cfg_drop_rate > 0 and drop.any():
        keep = (~drop).to(batch["segmentation_map"]).view(-1, 1, 1, 1)
        batch["segmentation_map"] = batch["segmentation_map"] * keep.to(batch["segmentation_map"].device)
    return batch


def _random_crop(batch: dict[str, torch.Tensor], generator: torch.Generator, crop: tuple[int, int],
                 down: int) -> dict[str, torch.Tensor]:
    """One crop per sample, on the coarse image's grid so full-size and coarse crops cover the same pixels."""
    height, width = batch["pixel_values"].shape[-2:]
    crop_h, crop_w = crop
    if (crop_h, crop_w) == (height, width):
        return batch
    size = batch["pixel_values"].shape[0]
    top = torch.randint(0, (height - crop_h) // down + 1, (size,), generator=generator) * down
    left = torch.randint(0, (width - crop_w) // down + 1, (size,), generator=generator) * down
    return crop_batch(batch, top.tolist(), left.tolist(), crop, down)


def crop_batch(batch: dict, tops: Sequence[int], lefts: Sequence[int], crop: Sequence[int], down: int) -> dict:
    """Crop sample i at (tops[i], lefts[i]) (multiples of `down`): the full-size inputs to `crop`, the coarse image
    to `crop / down` at the matching place."""
    out = dict(batch)
    crop_h, crop_w = crop
    for key in ("pixel_values", "segmentation_map", "labels", "low_res_image"):
        if key not in batch:
            continue
        scale = down if key == "low_res_image" else 1
        ch, cw = crop_h // scale, crop_w // scale
        out[key] = torch.stack([
            batch[key][i, ..., int(t) // scale:int(t) // scale + ch, int(l) // scale:int(l) // scale + cw]
            for i, (t, l) in enumerate(zip(tops, lefts))
        ])
    return out


def training_loss(unet, batch: dict[str, torch.Tensor], alphas_cumprod: torch.Tensor, generator: torch.Generator,
                  timestep_bias: tuple[int, float] | None = None) -> dict[str, torch.Tensor]:
    """Draw timesteps and noise, run the model, return the per-sample hybrid loss terms.

    Timesteps are uniform; with `timestep_bias=(T, p)` a share p of them is drawn from [0, T) instead.
    """
    x_start = batch["pixel_values"]
    size = x_start.shape[0]
    timesteps = torch.randint(0, len(alphas_cumprod), (size,), generator=generator)
    if timestep_bias is not None:
        bound, fraction = timestep_bias
        low = torch.randint(0, bound, (size,), generator=generator)
        timesteps = torch.where(torch.rand(size, generator=generator) < fraction, low, timesteps)
    noise = torch.randn(x_start.shape, generator=generator).to(x_start)
    x_t = q_sample(x_start, timesteps, noise, alphas_cumprod)
    output = unet(x_t, timesteps.to(x_start.device), batch["segmentation_map"], batch["low_res_image"]).sample
    return hybrid_loss(output, x_start, x_t, timesteps, noise, alphas_cumprod)


# ----------------------------------------------------------------------------- data


def prepare_data(args: argparse.Namespace, accelerator, num_semantic_channels: int):
    """Load and check the training split; returns (rows, processor, validation batch or None)."""
    from ..data.transforms import SPICTransform, collate_examples
    from .dataset import ExampleProcessor, check_columns, load_split, validate_rows

    rows = load_split(args.dataset_name_or_path, args.train_split, config_name=args.dataset_config_name,
                      streaming=args.streaming, cache_dir=args.cache_dir, files_split=args.train_split)
    if args.max_train_samples is not None:
        rows = rows.take(args.max_train_samples) if args.streaming else rows.select(
            range(min(args.max_train_samples, len(rows))))
    columns = set(rows.features) if getattr(rows, "features", None) is not None else None
    use_column = args.coarse_source == "column" or (
        args.coarse_source == "auto" and columns is not None and "coarse" in columns)
    check_columns(rows, need_instances=args.use_instance_edges, need_coarse=use_column)
    if args.num_classes + int(args.use_instance_edges) != num_semantic_channels:
        raise TrainingInputError(
            f"the model takes {num_semantic_channels} semantic channels, but --num_classes {args.num_classes}"
            f"{' + instance edges' if args.use_instance_edges else ''} gives "
            f"{args.num_classes + int(args.use_instance_edges)}"
        )
    try:
        transform = SPICTransform(args.resolution, args.num_classes, random_flip=False,
                                  use_instance_edges=args.use_instance_edges,
                                  coarse_downsample=args.coarse_downsample)
    except ValueError as err:
        raise TrainingInputError(str(err)) from None
    processor = ExampleProcessor(transform, coarse_from_column=use_column, coarse_codec=args.coarse_codec,
                                 coarse_quality=args.coarse_quality,
                                 coarse_qualities=getattr(args, "coarse_qualities", None))
    if not use_column:  # the codec actually used (the default may have fallen back), for validation and the card
        args.coarse_codec, args.coarse_quality = processor.coarse_codec, processor.coarse_quality
    checked = validate_rows(rows, processor, args.validate_rows)
    logger.info("checked %d training rows", checked)

    validation = None
    if args.validation_steps and args.num_validation_images and accelerator.is_main_process:
        try:
            source = load_split(args.dataset_name_or_path, args.validation_split, config_name=args.dataset_config_name,
                                streaming=args.streaming, cache_dir=args.cache_dir, files_split=args.train_split)
            picked = list(itertools.islice(iter(source), args.num_validation_images))
        except TrainingInputError:
            logger.info("no %r split: validation images come from the training rows", args.validation_split)
            picked = list(itertools.islice(iter(rows), args.num_validation_images))
        if picked:
            has_coarse = all(r.get("coarse") is not None for r in picked)
            val_processor = ExampleProcessor(
                transform, coarse_from_column=has_coarse and args.coarse_source != "on_the_fly",
                coarse_codec=args.coarse_codec, coarse_quality=args.coarse_quality)
            try:
                validation = collate_examples([val_processor(r) for r in picked])
            except (ValueError, TypeError) as err:
                raise TrainingInputError(f"validation rows: {err}") from None
    return rows, processor, validation


# ----------------------------------------------------------------------------- train


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run a training; returns the summary also written to `output_dir/train_summary.json`."""
    from accelerate.utils import gather_object
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from .dataset import ShardedEpochSampler, make_dataloader

    report_to = None if args.report_to in (None, "", "none") else args.report_to
    accelerator = make_accelerator(args, RUN_MARKER, log_with=report_to,
                                   logging_dir=os.path.join(args.output_dir, args.logging_dir),
                                   check_cpu=lambda processes: check_cpu_memory(args, processes))
    world, rank = accelerator.num_processes, accelerator.process_index

    unet = build_unet(args)
    rows, processor, validation = prepare_data(args, accelerator, unet.config.num_semantic_channels)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    ema = None
    if args.use_ema:
        ema = EMAModel(unet.parameters(), decay=args.ema_decay, model_cls=SPICUNet2DModel, model_config=unet.config)

    ga = args.gradient_accumulation_steps
    per_step = args.train_batch_size * ga * world
    learning_rate = args.learning_rate * per_step if args.scale_lr else args.learning_rate
    optimizer = torch.optim.AdamW(unet.parameters(), lr=learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)

    if args.streaming:
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(rows, rank=rank, world_size=world)
        stream = stream.shuffle(seed=args.seed, buffer_size=args.shuffle_buffer_size)
        steps_per_epoch = None
        max_train_steps = args.max_train_steps

        def loader_for_epoch(epoch: int, skip: int):
            # A stream restarts at its beginning and skips what was consumed (exact within the first pass).
            stream.set_epoch(epoch)
            return make_dataloader(stream, processor, batch_size=args.train_batch_size,
                                   num_workers=args.dataloader_num_workers, skip_samples=skip * args.train_batch_size)
    else:
        sampler = ShardedEpochSampler(len(rows), world, rank, args.seed)
        steps_per_epoch = sampler.share // args.train_batch_size // ga
        if steps_per_epoch == 0:
            raise TrainingInputError(
                f"{len(rows)} training rows give no full step of {args.train_batch_size} x "
                f"{ga} (accumulation) x {world} (processes) samples"
            )
        max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch

        def loader_for_epoch(epoch: int, skip: int):
            sampler.set_epoch(epoch, start=skip * args.train_batch_size)
            return make_dataloader(rows, processor, batch_size=args.train_batch_size,
                                   num_workers=args.dataloader_num_workers, sampler=sampler)

    try:
        lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                     num_warmup_steps=args.lr_warmup_steps * world,
                                     num_training_steps=max_train_steps * world)
    except ValueError as err:
        raise TrainingInputError(f"--lr_scheduler: {err}") from None
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    run = TrainingRun(accelerator, unet, optimizer, lr_scheduler, output_dir=args.output_dir, marker=RUN_MARKER,
                      max_train_steps=max_train_steps, checkpointing_steps=args.checkpointing_steps,
                      checkpoints_total_limit=args.checkpoints_total_limit, max_grad_norm=args.max_grad_norm,
                      ema=ema)
    alphas_cumprod = linear_alphas_cumprod(args.num_train_timesteps, args.beta_start, args.beta_end)
    timestep_bias = None if args.timestep_bias_max is None else (args.timestep_bias_max, args.timestep_bias_fraction)

    run.resume(args.resume_from_checkpoint)
    run.start(args)
    if report_to and accelerator.is_main_process:
        tracker_config = {k: (str(v) if isinstance(v, (tuple, list)) or v is None else v)
                          for k, v in vars(args).items() if k != "hub_token"}
        accelerator.init_trackers("spic", config=tracker_config)
    logger.info("training: %d processes, %d per device, %d accumulation, %d steps from step %d",
                world, args.train_batch_size, ga, max_train_steps, run.global_step)

    bar = tqdm(total=max_train_steps, initial=run.global_step, desc="steps",
               disable=not accelerator.is_local_main_process)
    first_ids: list[str] | None = None
    last_logs: dict[str, float] = {}
    sums = {"loss": 0.0, "mse": 0.0, "vb": 0.0}
    started = time.perf_counter()
    for micro_step, batch in ([] if run.done else run.micro_batches(loader_for_epoch, steps_per_epoch)):
        if first_ids is None:
            first_ids = [str(i) for i in batch.get("id", [])]
        generator = step_generator(args.seed, micro_step, rank)
        batch = {k: (v.to(accelerator.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        batch = augment_batch(batch, generator, random_flip=args.random_flip, cfg_drop_rate=args.cfg_drop_rate,
                              crop=args.random_crop, coarse_downsample=args.coarse_downsample)
        if args.channels_last:  # the inputs' layout is what the convolutions follow; the weights stay as saved
            batch = {k: (v.contiguous(memory_format=torch.channels_last)
                         if isinstance(v, torch.Tensor) and v.ndim == 4 else v) for k, v in batch.items()}
        with accelerator.accumulate(unet):
            terms = training_loss(unet, batch, alphas_cumprod, generator, timestep_bias)
            accelerator.backward(terms["loss"].mean())
        for key in sums:
            sums[key] += terms[key].detach().mean().item() / ga
        if not accelerator.sync_gradients:
            continue
        run.apply_gradients(finite=all(np.isfinite(v) for v in sums.values()), what="the loss",
                            advice="lower --learning_rate or set --max_grad_norm")
        last_logs = dict(sums, lr=lr_scheduler.get_last_lr()[0])
        if ema is not None:
            last_logs["ema_decay"] = ema.cur_decay_value
        sums = {k: 0.0 for k in sums}
        bar.update(1)
        bar.set_postfix(loss=f"{last_logs['loss']:.4f}")
        global_step = run.global_step + 1
        if global_step % args.logging_steps == 0 or global_step == max_train_steps:
            accelerator.log(last_logs, step=global_step)
        run.end_step(per_step)
        if (validation is not None and args.validation_steps and accelerator.is_main_process
                and (global_step % args.validation_steps == 0 or global_step == max_train_steps)):
            run_validation(accelerator, unet, ema, validation, args, global_step)
        if run.done:
            break
    bar.close()
    elapsed = time.perf_counter() - started
    accelerator.wait_for_everyone()

    model = accelerator.unwrap_model(unet)
    checksum = float(sum(p.detach().double().abs().sum().item() for p in model.parameters()))
    per_rank = gather_object([{"rank": rank, "pid": os.getpid(), "first_batch_ids": first_ids or [],
                               "param_abs_sum": checksum, "steps_this_run": run.steps_this_run}])
    summary = {
        "world_size": world,
        "global_step": run.global_step,
        "samples_seen": run.progress.samples_seen,
        "max_train_steps": max_train_steps,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "last": last_logs,
        "steps_per_second": run.steps_this_run / elapsed if elapsed > 0 else None,
        "ranks": per_rank,
    }
    if accelerator.is_main_process:
        pipeline = save_final_pipeline(model, ema, args)
        with open(os.path.join(args.output_dir, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
        if args.push_to_hub:
            push_pipeline(pipeline, args)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def save_final_pipeline(model: SPICUNet2DModel, ema, args: argparse.Namespace):
    """Save `SPICPipeline(unet=EMA weights, scheduler=the paper's DDPM)` to output_dir (training is over: the
    model's own weights are replaced by the EMA weights, no copy is made)."""
    from ..pipelines.pipeline_spic import SPICPipeline, default_scheduler

    if ema is not None:
        ema.copy_to(model.parameters())
    if getattr(model, "is_gradient_checkpointing", False):
        model.disable_gradient_checkpointing()
    model.eval()
    pipeline = SPICPipeline(unet=model, scheduler=default_scheduler(args.num_train_timesteps))
    pipeline.save_pretrained(args.output_dir)
    return pipeline


def push_pipeline(pipeline, args: argparse.Namespace) -> None:
    from ..codec.coarse import DEFAULT_COARSE_CODEC
    from ..hub import push_to_hub, reporting_unreachable_hub

    recipe = {
        "Data": f"`{args.dataset_name_or_path}` ({args.train_split} split), {args.resolution[0]}x{args.resolution[1]}",
        "Coarse images": f"downsample {args.coarse_downsample}, {args.coarse_codec or DEFAULT_COARSE_CODEC} "
                         + (f"at a quality drawn from {', '.join(f'{q:g}' for q in args.coarse_qualities)} "
                            if getattr(args, "coarse_qualities", None) else "") + f"({args.coarse_source})",
        "Objective": "hybrid loss (noise MSE + variational bound on the learned variance)",
        "Guidance drop": f"{args.cfg_drop_rate:.0%}",
        "Optimiser": f"AdamW, lr {args.learning_rate:g}, batch {args.train_batch_size} per device",
        "EMA": f"decay {args.ema_decay}" if args.use_ema else "none",
    }
    with reporting_unreachable_hub(args.output_dir):
        push_to_hub(pipeline, args.hub_model_id, private=args.hub_private_repo, token=args.hub_token,
                    source="trained with training/train_spic.py", training=recipe)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options and train (the body of `training/train_spic.py`)."""
    return train(parse_args(argv))


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: input problems print one clear line and exit with status 2."""
    import sys

    from ..hub import HubUnreachableError

    try:
        main(argv)
    except TrainingInputError as err:
        if os.environ.get("LOCAL_RANK", "0") == "0":  # every process finds the same problem: say it once
            print(f"error: {err}", file=sys.stderr)
        return 2
    except HubUnreachableError as err:  # training is over and saved; only the upload failed
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
