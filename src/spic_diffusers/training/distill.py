"""Distil SPIC's guided sampler into a few-step, single-pass student (`training/distill_spic.py`).

The teacher is SPIC's sampler made deterministic: DDIM with eta = 0 and classifier-free guidance s = 1.5 on the
paper's steps (the first visited timestep <= 200 of the 100-step spacing: 192, 182, ..., 0; 20 steps, 40 UNet
evaluations), starting from the upsampled coarse image noised to t = 192 with fresh Gaussian noise
(`--start_noise forward`, the default) or, as the paper's stochastic sampler does, from the coarse image as is
(`none`). Measured on CamVid test with the shipped receiver (6 frames), DDIM from the clean coarse image lost 5 % of
region colour error and 2 mIoU points against the paper's DDPM sampler: without noise the model never sees an input
like those it was trained on. From the forward-noised start, DDIM matched or beat the paper sampler (region colour
error -28 %, mIoU +2 points, PSNR +0.2 dB, boundary PSNR -0.3 dB), so that is the teacher, and the student keeps its
start (`default_start_noise` in the saved pipeline): like the paper's sampler it is stochastic, seeded by the
call's generator. The student starts as a copy of the teacher, runs ONE pass per step (guidance is
distilled into it, as Meng et al., CVPR 2023, at a fixed scale) and takes K steps (K in {4, 2, 1}) on a subset of
the teacher's timesteps. Each student DDIM step from t_i to t_{i+1} is trained to land on the teacher's state at
t_{i+1}: the loss is Salimans & Ho's progressive-distillation x0 target (the x0 that makes one DDIM step from z_t
reach the teacher's z_s) with their truncated-SNR weighting max(SNR(t), 1).

Why this method: SPIC's sampler is short (20 steps, starting close to the data at t <= 200) and deterministic
once eta = 0, so the teacher's whole trajectory costs one batch of forwards and gives exact targets for every
student step at once; matching the trajectory directly needs no rounds of halving (20 is not a power of two)
and, unlike consistency distillation, no ODE-solver bootstrap whose errors compound at 1-2 steps. The teacher's
guided output is the target, so guidance and step count are distilled in one run.

The saved folder is an ordinary `SPICPipeline` with a DDIM scheduler and the student's timesteps and guidance
scale 1.0 registered as the pipeline's defaults: a plain `SPICPipeline.from_pretrained(folder)(labels, coarse)`
runs the K single-pass steps. Conventions follow `train_spic.py`: Accelerate, EMA, atomic checkpoints that
resume (`--resume_from_checkpoint latest`), foreign output folders refused, `--push_to_hub`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..dtypes import parse_dtype
from ..memory import available_memory
from ..sizes import as_hw
from ..models.unet_spic import SPICUNet2DModel
from .arguments import TrainingInputError, _float_list, _resolution, add_training_arguments, check_training_args
from .loop import TrainingRun, epoch_sampler, make_accelerator, step_generator
from .trainer import augment_batch, crop_batch, prepare_data

logger = logging.getLogger("spic_diffusers.training.distill")

DISTILL_MARKER = "spic_distill_args.json"
SUMMARY_FILE = "distill_summary.json"


# ----------------------------------------------------------------------------------------------- schedule


def teacher_pipeline(path: str, device=None):
    """The teacher `SPICPipeline` with a DDIM scheduler built from its own config (eta = 0 makes it an ODE)."""
    from diffusers import DDIMScheduler

    from ..pipelines.pipeline_spic import SPICPipeline

    try:
        pipe = SPICPipeline.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise TrainingInputError(f"cannot load the teacher pipeline from {path!r}: {err}") from None
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.unet.eval().requires_grad_(False)
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def teacher_timesteps(pipe, num_inference_steps: int = 100, max_timestep: int = 200) -> list[int]:
    """The timesteps SPIC's sampler visits (the pipeline's own truncation rule), highest first."""
    return [int(t) for t in pipe.get_timesteps(num_inference_steps, max_timestep, None, "cpu")]


def student_timesteps(teacher_ts: Sequence[int], num_steps: int) -> list[int]:
    """`num_steps` of the teacher's timesteps, evenly spaced in the teacher's step index, starting at the first."""
    n = len(teacher_ts)
    if not 1 <= num_steps <= n:
        raise TrainingInputError(f"the student's steps must be in 1..{n} (the teacher's steps), got {num_steps}")
    return [int(teacher_ts[round(i * n / num_steps)]) for i in range(num_steps)]


@torch.no_grad()
def teacher_states(pipe, segmentation_map, low_res_image, teacher_ts: Sequence[int], stops: Sequence[int],
                   guidance_scale: float = 1.5, unet_dtype=None, noise: torch.Tensor | None = None,
                   channels_last: bool = False) -> list[torch.Tensor]:
    """Run the guided DDIM teacher (the pipeline's own call) from the upsampled coarse image (noised to the first
    timestep with `noise`, as the pipeline's `start_noise="forward"`, when given); return its states at the
    timesteps `stops` (each one of `teacher_ts`) and, last, its final output (timestep -1)."""
    ts = [int(t) for t in teacher_ts]
    wanted = {int(s) for s in stops}
    start_noise = "none" if noise is None else "forward"
    states = []
    if ts[0] in wanted:  # the start, before the first step
        shape = (segmentation_map.shape[0], pipe.unet.config.in_channels, *segmentation_map.shape[-2:])
        states.append(pipe.prepare_latents(low_res_image.float().clamp(-1, 1), shape, torch.tensor(ts[:1]), start_noise,
                                           ts[0], latents=noise))
    reached = ts[1:] + [-1]  # the timestep of the sample after each step

    def collect(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        if reached[step] in wanted or reached[step] == -1:
            states.append(callback_kwargs["sample"])
        return {}

    pipe(segmentation_map, low_res_image, guidance_scale=guidance_scale, timesteps=ts, max_timestep=max(ts),
         start_noise=start_noise, latents=noise, eta=0.0, output_type="latent", callback_on_step_end=collect,
         max_pixels=None, unet_dtype=unet_dtype or pipe.unet.dtype, guidance_batching="auto",
         channels_last=channels_last)
    return states


def per_frame_choices(batch: dict, seed: int, teacher_crop: Sequence[int] | None, down: int) -> dict:
    """Fix, per frame (by its id), what the cached teacher states depend on: which of the coded coarse images it
    uses (`low_res_variants`, from --coarse_qualities) and where the teacher's crop lies (on the coarse grid)."""
    ids = [str(i) for i in batch.get("id", [])]
    if not ids:
        ids = [str(i) for i in range(batch["segmentation_map"].shape[0])]
    draws = [np.random.default_rng([seed, zlib.crc32(i.encode())]) for i in ids]
    batch = dict(batch)
    variants = batch.pop("low_res_variants", None)
    if variants is not None:
        pick = torch.tensor([int(d.integers(variants.shape[1])) for d in draws], device=variants.device)
        batch["low_res_image"] = variants[torch.arange(len(ids), device=variants.device), pick]
    if teacher_crop is not None:
        height, width = batch["segmentation_map"].shape[-2:]
        crop_h, crop_w = teacher_crop
        tops = [int(d.integers((height - crop_h) // down + 1)) * down for d in draws]
        lefts = [int(d.integers((width - crop_w) // down + 1)) * down for d in draws]
        batch = crop_batch(batch, tops, lefts, teacher_crop, down)
    return batch


def distillation_loss(student, scheduler, states: Sequence[torch.Tensor], student_ts: Sequence[int],
                      segmentation_map, low_res_image, segments: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample, max(SNR(t), 1) * mean |x0_student - x0_target|^2 on the student's step `segments[b]` (all the
    student's steps, averaged, when `segments` is None).

    x0_target = (z_s - sigma_s / sigma_t * z_t) / (alpha_s - sigma_s / sigma_t * alpha_t) is the clean image that
    makes the DDIM step z_t -> z_s land exactly on the teacher's state z_s (Salimans & Ho, eq. 8)."""
    if segments is None:
        batch = states[0].shape[0]
        return torch.stack([
            distillation_loss(student, scheduler, states, student_ts, segmentation_map, low_res_image,
                              torch.full((batch,), i, dtype=torch.long)) for i in range(len(student_ts))
        ]).mean(0)  # fmt: skip
    channels = student.config.in_channels if hasattr(student, "config") else student.module.config.in_channels
    device = states[0].device
    stacked = torch.stack(list(states))  # [K + 1, B, C, H, W]
    rows = torch.arange(stacked.shape[1], device=device)
    segments = segments.to(device)
    z_t, z_s = stacked[segments, rows], stacked[segments + 1, rows]
    ts = torch.tensor([int(t) for t in student_ts] + [-1], device=device)
    t, s = ts[segments], ts[segments + 1]
    abar = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, device=device, dtype=torch.float32)
    abar_t = abar[t].view(-1, 1, 1, 1)
    abar_s = torch.where(s >= 0, abar[s.clamp(min=0)], final).view(-1, 1, 1, 1)
    alpha_t, sigma_t = abar_t.sqrt(), (1 - abar_t).sqrt()
    alpha_s, sigma_s = abar_s.sqrt(), (1 - abar_s).sqrt()
    ratio = sigma_s / sigma_t
    target = (z_s - ratio * z_t) / (alpha_s - ratio * alpha_t)
    eps = student(z_t, t, segmentation_map, low_res_image).sample[:, :channels].float()
    x0 = (z_t - sigma_t * eps) / alpha_t
    weight = torch.clamp(abar_t / (1 - abar_t), min=1.0).view(-1)
    return weight * ((x0 - target) ** 2).mean(dim=(1, 2, 3))


def student_pipeline(unet: SPICUNet2DModel, teacher_scheduler_config, student_ts: Sequence[int],
                     start_noise: str = "none", unet_dtype: str | None = None):
    """The student as a plain `SPICPipeline`: DDIM scheduler; its timesteps, guidance 1.0, the teacher's start and
    `unet_dtype` (where the device runs it natively) as the defaults."""
    from diffusers import DDIMScheduler

    from ..pipelines.pipeline_spic import SPICPipeline

    return SPICPipeline(unet=unet, scheduler=DDIMScheduler.from_config(teacher_scheduler_config),
                        default_timesteps=list(student_ts), default_guidance_scale=1.0,
                        default_start_noise=None if start_noise == "none" else start_noise,
                        default_unet_dtype=unet_dtype)


# ---------------------------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Distil SPIC's guided 20-step sampler into a single-pass few-step student.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--teacher", required=True, help="The teacher SPICPipeline folder or Hub id.")
    p.add_argument("--student_init", default=None,
                   help="Start the student from this pipeline folder (e.g. a 4-step student when distilling a "
                        "2-step one) instead of the teacher.")
    p.add_argument("--dataset_name_or_path", required=True,
                   help="A `save_to_disk` folder, a Hub dataset id, a data folder, or data files (as train_spic).")
    p.add_argument("--dataset_config_name", default=None)
    p.add_argument("--train_split", default="train")
    p.add_argument("--cache_dir", default=None)
    p.add_argument("--max_train_samples", type=int, default=None, help="Use only the first N training rows.")
    p.add_argument("--resolution", type=_resolution, default=None, help="HEIGHT,WIDTH (default: the teacher's).")
    p.add_argument("--random_crop", type=_resolution, default=None,
                   help="Train the student on random HEIGHT,WIDTH crops of the teacher's whole-frame states.")
    p.add_argument("--random_flip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--coarse_downsample", type=int, default=4)
    p.add_argument("--coarse_source", default="auto", choices=("auto", "column", "on_the_fly"))
    p.add_argument("--coarse_codec", default="hevc", help="Codec for on-the-fly coarse images ('none': area).")
    p.add_argument("--coarse_quality", type=float, default=35.0)
    p.add_argument("--coarse_qualities", type=_float_list, default=None,
                   help="Several qualities of --coarse_codec, e.g. 30,35,40,45: each training frame's coarse image is "
                        "coded at one of them, fixed per frame (so cached teacher states stay valid).")
    p.add_argument("--teacher_crop", type=_resolution, default=None,
                   help="Run the teacher on a HEIGHT,WIDTH crop of each frame, fixed per frame (on the coarse grid), "
                        "instead of the whole frame: native-resolution frames then cost a fraction of the teacher "
                        "time. --random_crop then crops within it.")
    p.add_argument("--channels_last", action="store_true",
                   help="Channels-last inputs for the teacher and the student (faster convolutions on CPUs).")
    p.add_argument("--default_unet_dtype", default="bf16", choices=("bf16", "fp16", "none"),
                   help="The student pipeline's saved `default_unet_dtype` (applied only where the device runs it "
                        "natively): a single-pass student is meant to be fast.")
    p.add_argument("--validate_rows", type=int, default=16, help="Rows checked before training.")
    p.add_argument("--num_student_steps", type=int, default=4, help="K: the student's steps (4, 2 or 1).")
    p.add_argument("--teacher_num_inference_steps", type=int, default=100, help="The teacher's spacing (paper: 100).")
    p.add_argument("--max_timestep", type=int, default=200, help="The teacher's start bound (paper: 200).")
    p.add_argument("--guidance_scale", type=float, default=1.5, help="The teacher's guidance scale (paper: 1.5).")
    p.add_argument("--start_noise", default="forward", choices=("forward", "none"),
                   help="The teacher's (and the student's) start: the coarse image noised to the first timestep "
                        "('forward'), or as is ('none', the paper's start made deterministic).")
    p.add_argument("--teacher_dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="Run the teacher's UNet under autocast in this dtype (bf16 halves its time on CPUs with native "
                        "bf16, e.g. AVX512-BF16 or AMX, and is tens of times slower on those without).")
    p.add_argument("--cache_teacher", action="store_true",
                   help="Keep each example's teacher states in memory (keyed by row id and flip): the teacher then "
                        "runs once per example and flip (use with --max_train_samples on a CPU).")
    p.add_argument("--teacher_cache", default=None,
                   help="A safetensors file of teacher trajectories (all teacher timesteps) shared between runs: "
                        "read when it exists (its teacher settings must match), extended and rewritten as new "
                        "examples are computed. Students of 4, 2 and 1 steps from one teacher then pay for the "
                        "teacher once. Implies --cache_teacher; one process only.")
    p.add_argument("--segments", default="random", choices=("random", "all"),
                   help="Train each sample on one random student step per update ('random': one forward) or on "
                        "all K of them ('all': K forwards).")
    add_training_arguments(p, {
        "train_batch_size": 4, "max_train_steps": 1000, "learning_rate": 2e-5, "lr_scheduler": "constant_with_warmup",
        "lr_warmup_steps": 20, "max_grad_norm": 1.0, "ema_decay": 0.999, "checkpointing_steps": 100,
        "checkpoints_total_limit": 2,
    })
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_training_args(args)
    for name in ("num_student_steps", "coarse_downsample", "teacher_num_inference_steps"):
        if getattr(args, name) < 1:
            raise TrainingInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.coarse_qualities is not None:
        if args.coarse_source == "column" or args.coarse_codec == "none":
            raise TrainingInputError("--coarse_qualities codes coarse images on the fly with a codec")
        args.coarse_quality = args.coarse_qualities[0]
    for name in ("teacher_crop", "random_crop"):
        crop = getattr(args, name)
        if crop is not None and (crop[0] % args.coarse_downsample or crop[1] % args.coarse_downsample):
            raise TrainingInputError(f"--{name} {crop[0]}x{crop[1]} must be divisible by --coarse_downsample "
                                     f"{args.coarse_downsample}")
    if args.teacher_crop is not None and args.random_crop is not None and (
            args.random_crop[0] > args.teacher_crop[0] or args.random_crop[1] > args.teacher_crop[1]):
        raise TrainingInputError(f"--random_crop {args.random_crop} is larger than --teacher_crop {args.teacher_crop}")
    # What trainer.prepare_data reads besides the options above.
    args.streaming, args.validation_steps, args.num_validation_images = False, 0, 0
    args.validation_split = None
    return args


# ------------------------------------------------------------------------------------------------ distil


def distill(args: argparse.Namespace) -> dict[str, Any]:
    """Run a distillation; returns the summary also written to `output_dir/distill_summary.json`."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from .dataset import make_dataloader

    accelerator = make_accelerator(args, DISTILL_MARKER)
    world, rank = accelerator.num_processes, accelerator.process_index

    teacher = teacher_pipeline(args.teacher, accelerator.device)
    config = teacher.unet.config
    args.num_classes = teacher.num_classes
    args.use_instance_edges = bool(config.instance_edge_channel)
    if args.resolution is None:
        args.resolution = as_hw(config.sample_size, "the teacher's sample_size")
    if args.teacher_crop is not None and (args.teacher_crop[0] > args.resolution[0]
                                          or args.teacher_crop[1] > args.resolution[1]):
        raise TrainingInputError(f"--teacher_crop {args.teacher_crop} is larger than the frames {args.resolution}")
    teacher_ts = teacher_timesteps(teacher, args.teacher_num_inference_steps, args.max_timestep)
    student_ts = student_timesteps(teacher_ts, args.num_student_steps)
    teacher_dtype = parse_dtype(args.teacher_dtype, "--teacher_dtype")  # fp32: the teacher's own, no autocast
    logger.info("teacher: %d guided steps %s; student: %d single-pass steps %s", len(teacher_ts), teacher_ts,
                len(student_ts), student_ts)

    rows, processor, _ = prepare_data(args, accelerator, config.num_semantic_channels)
    student = SPICUNet2DModel.from_config(config)
    if args.student_init:
        try:
            init = SPICUNet2DModel.from_pretrained(args.student_init, subfolder="unet")
            student.load_state_dict(init.state_dict())
        except (OSError, ValueError, RuntimeError) as err:
            raise TrainingInputError(f"--student_init {args.student_init!r}: not a pipeline of the teacher's "
                                     f"architecture ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    else:
        student.load_state_dict(teacher.unet.state_dict())
    student.requires_grad_(True).train()
    ema = EMAModel(student.parameters(), decay=args.ema_decay, model_cls=SPICUNet2DModel,
                   model_config=student.config) if args.use_ema else None
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer, num_warmup_steps=args.lr_warmup_steps * world,
                                 num_training_steps=args.max_train_steps * world)
    ga = args.gradient_accumulation_steps
    sampler, steps_per_epoch = epoch_sampler(len(rows), world, rank, args.seed, args.train_batch_size, ga)
    student, optimizer, lr_scheduler = accelerator.prepare(student, optimizer, lr_scheduler)
    run = TrainingRun(accelerator, student, optimizer, lr_scheduler, output_dir=args.output_dir,
                      marker=DISTILL_MARKER, max_train_steps=args.max_train_steps,
                      checkpointing_steps=args.checkpointing_steps,
                      checkpoints_total_limit=args.checkpoints_total_limit, max_grad_norm=args.max_grad_norm, ema=ema)
    run.resume(args.resume_from_checkpoint)
    run.start(args)

    cache = None
    if args.cache_teacher or args.teacher_cache:
        if args.teacher_cache and world > 1:
            raise TrainingInputError("--teacher_cache is for one process (each would write the file); use "
                                     "--cache_teacher with several")
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k in CACHE_SETTINGS}
        for key in ("teacher", "dataset_name_or_path"):  # local folders by absolute path, Hub ids as given
            if settings.get(key) and os.path.exists(settings[key]):
                settings[key] = os.path.abspath(settings[key])
        keep = teacher_ts if args.teacher_cache else student_ts
        check_cache_memory(sampler.share * (2 if args.random_flip else 1), len(keep) + 1, config.in_channels,
                           args.teacher_crop or args.resolution)
        cache = TeacherCache(keep, args.teacher_cache, settings, channels=config.in_channels)
        if cache.entries:
            logger.info("teacher cache %s: %d examples", args.teacher_cache, len(cache.entries))
    bar = tqdm(total=args.max_train_steps, initial=run.global_step, desc="steps",
               disable=not accelerator.is_local_main_process)

    def loader_for_epoch(epoch: int, skip: int):
        sampler.set_epoch(epoch, start=skip * args.train_batch_size)
        return make_dataloader(rows, processor, batch_size=args.train_batch_size,
                               num_workers=args.dataloader_num_workers, sampler=sampler)

    started, last_loss = time.perf_counter(), float("nan")
    teacher_seconds = 0.0
    for micro_step, batch in ([] if run.done else run.micro_batches(loader_for_epoch, steps_per_epoch)):
        generator = step_generator(args.seed, micro_step, rank)
        flips = (torch.rand(args.train_batch_size, generator=step_generator(args.seed + 1, micro_step, rank))
                 < 0.5) if args.random_flip else torch.zeros(args.train_batch_size, dtype=torch.bool)
        batch = {k: (v.to(accelerator.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        batch = per_frame_choices(batch, args.seed, args.teacher_crop, args.coarse_downsample)
        for key in ("segmentation_map", "low_res_image"):
            mask = flips.to(batch[key].device).view(-1, 1, 1, 1)
            batch[key] = torch.where(mask, batch[key].flip(-1), batch[key])
        tick = time.perf_counter()
        noise = None
        if args.start_noise == "forward":
            shape = (batch["segmentation_map"].shape[0], config.in_channels, *batch["segmentation_map"].shape[-2:])
            noise = torch.randn(shape, generator=step_generator(args.seed + 2, micro_step, rank))
        inputs = (batch["segmentation_map"], batch["low_res_image"], teacher_ts, student_ts, args.guidance_scale,
                  teacher_dtype, noise, args.channels_last)
        if cache is None:
            states = teacher_states(teacher, *inputs)
        else:
            states = cache.states(batch.get("id"), flips, teacher, *inputs)
            cache.save()
        teacher_seconds += time.perf_counter() - tick
        # The teacher ran on whole frames; crop its states with the inputs (they ride in `pixel_values`).
        batch["pixel_values"] = torch.cat(states, dim=1)
        batch = augment_batch(batch, generator, random_flip=False, cfg_drop_rate=0.0, crop=args.random_crop,
                              coarse_downsample=args.coarse_downsample)
        states = list(batch["pixel_values"].split(states[0].shape[1], dim=1))
        segmap, low_res = batch["segmentation_map"], batch["low_res_image"]
        if args.channels_last:
            states = [x.contiguous(memory_format=torch.channels_last) for x in states]
            segmap, low_res = (x.contiguous(memory_format=torch.channels_last) for x in (segmap, low_res))
        segments = None
        if args.segments == "random":
            segments = torch.randint(0, len(student_ts), (segmap.shape[0],), generator=generator)
        with accelerator.accumulate(student):
            with accelerator.autocast():
                loss = distillation_loss(student, teacher.scheduler, states, student_ts, segmap, low_res,
                                         segments).mean()
            accelerator.backward(loss)
        closed = run.accumulate_loss(loss, what="the distillation loss",
                                     advice="lower --learning_rate, set --max_grad_norm, or check the teacher cache")
        if closed is None:
            continue
        last_loss = closed
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.5f}")
        if (run.global_step + 1) % args.logging_steps == 0:
            logger.info("step %d loss %.6f", run.global_step + 1, last_loss)
        run.end_step(args.train_batch_size * ga * world)
        if run.done:
            break
    bar.close()
    elapsed = time.perf_counter() - started
    accelerator.wait_for_everyone()

    summary = {
        "global_step": run.global_step,
        "samples_seen": run.progress.samples_seen,
        "last_loss": last_loss,
        "teacher_timesteps": teacher_ts,
        "student_timesteps": student_ts,
        "seconds_this_run": elapsed,
        "teacher_seconds_this_run": teacher_seconds,
        "teacher_examples_computed": cache.computed if cache is not None else None,
        "steps_per_second": run.steps_this_run / elapsed if elapsed > 0 else None,
    }
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(student)
        if ema is not None:
            ema.copy_to(model.parameters())
        model.eval()
        pipeline = student_pipeline(model, teacher.scheduler.config, student_ts, args.start_noise,
                                    None if args.default_unet_dtype == "none" else args.default_unet_dtype)
        pipeline.save_pretrained(args.output_dir)
        with open(os.path.join(args.output_dir, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
        if args.push_to_hub:
            from ..hub import push_to_hub

            recipe = {
                "Teacher": f"`{args.teacher}`: guided DDIM (s = {args.guidance_scale}), {len(teacher_ts)} steps "
                           f"from t <= {args.max_timestep}",
                "Student": f"{len(student_ts)} single-pass steps at {student_ts}",
                "Objective": "x0 target of progressive distillation, truncated-SNR weighting",
                "Data": f"`{args.dataset_name_or_path}` ({args.train_split} split)",
                "Optimiser": f"AdamW, lr {args.learning_rate:g}, batch {args.train_batch_size}, "
                             f"{run.global_step} steps",
            }
            push_to_hub(pipeline, args.hub_model_id, private=args.hub_private_repo, token=args.hub_token,
                        source="distilled with training/distill_spic.py", training=recipe)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def check_cache_memory(examples: int, states: int, channels: int, resolution: Sequence[int],
                       available_bytes: int | None = None) -> None:
    """Refuse, before the teacher runs, a teacher cache that cannot fit in the memory available now: it keeps
    `states` float32 images per example (and flip) until training ends."""
    height, width = resolution
    need = examples * states * channels * height * width * 4
    available = available_memory("cpu") if available_bytes is None else available_bytes
    if available is not None and need > available:
        raise TrainingInputError(
            f"the teacher cache would hold {examples} example(s) x {states} states of {channels}x{height}x{width} "
            f"float32 = {need / 2**30:.1f} GiB but {available / 2**30:.1f} GiB is available; lower "
            "--max_train_samples, or cache less (--cache_teacher keeps only the student's timesteps; without either "
            "option the teacher runs on every batch)")


CACHE_SETTINGS = ("teacher", "dataset_name_or_path", "train_split", "resolution", "guidance_scale",
                  "teacher_num_inference_steps", "max_timestep", "start_noise", "teacher_dtype", "seed",
                  "coarse_source", "coarse_codec", "coarse_quality", "coarse_downsample", "coarse_qualities",
                  "teacher_crop")


# What a teacher's cached states can be: its output dtypes, and values of images in [-1, 1] plus at most a few
# standard deviations of noise.
CACHE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_CACHED_MAGNITUDE = 100.0


class TeacherCache:
    """Teacher trajectories per (row id, flip), kept in memory and, with a `path`, in a safetensors file.

    In memory alone it keeps the states at the student's timesteps; with a file it keeps the whole trajectory
    (every teacher timestep), so students with any step count can share it. The file records the teacher settings
    (`CACHE_SETTINGS`) and is refused when they differ: its states would be another teacher's. An example keeps the
    start noise of its first visit (the student trains from the start its teacher states came from)."""

    def __init__(self, keep_timesteps: Sequence[int], path: str | None = None, settings: dict | None = None,
                 channels: int | None = None):
        self.keep = [int(t) for t in keep_timesteps]
        self.channels = channels
        self.path, self.settings = path, settings or {}
        self.entries: dict[tuple[str, bool], torch.Tensor] = {}
        self.computed = 0
        self._dirty = False
        if path and os.path.exists(path):
            self._load()

    def _load(self) -> None:
        from safetensors import safe_open

        try:
            with safe_open(self.path, framework="pt") as f:
                saved = json.loads((f.metadata() or {}).get("spic_teacher_cache", "null"))
                if not isinstance(saved, dict):
                    raise TrainingInputError(f"--teacher_cache {self.path!r} is not a teacher cache of "
                                             "distill_spic.py")
                differ = sorted(k for k in set(saved) | set(self.settings) if saved.get(k) != self.settings.get(k))
                if differ:
                    raise TrainingInputError(
                        f"--teacher_cache {self.path!r} holds another teacher's trajectories (settings differ: "
                        + ", ".join(f"{k}={saved.get(k)!r} there, {self.settings.get(k)!r} here" for k in differ)
                        + "); pass another file")
                size = list(self.settings.get("teacher_crop") or self.settings.get("resolution") or [])
                for name in f.keys():
                    row_id, _, flip = name.rpartition("|")
                    states = f.get_tensor(name)
                    if states.ndim != 4 or states.shape[0] != len(self.keep) + 1 or (
                            size and list(states.shape[-2:]) != size):
                        raise TrainingInputError(
                            f"--teacher_cache {self.path!r}: entry {name!r} has shape {list(states.shape)}, not "
                            f"[{len(self.keep) + 1}, C, {', '.join(map(str, size)) or 'H, W'}] (one state per "
                            "teacher timestep and the output); the file is damaged or not this teacher's")
                    self._check_entry(name, states)
                    self.entries[(row_id, flip == "1")] = states
        except TrainingInputError:
            raise
        except Exception as err:  # a truncated or foreign file
            raise TrainingInputError(f"--teacher_cache {self.path!r} cannot be read ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0] if str(err) else ''})") from None

    def _check_entry(self, name: str, states: torch.Tensor) -> None:
        """Channels, dtype and values of one cached trajectory: a state the teacher cannot have produced would
        train the student to NaN (or to nonsense) without any error."""
        where = f"--teacher_cache {self.path!r}: entry {name!r}"
        if self.channels is not None and states.shape[1] != self.channels:
            raise TrainingInputError(f"{where} has {states.shape[1]} channels, the teacher makes {self.channels}")
        if states.dtype not in CACHE_DTYPES:
            raise TrainingInputError(f"{where} holds {states.dtype}, not one of the float types the teacher writes")
        if not bool(torch.isfinite(states).all()):
            raise TrainingInputError(f"{where} holds NaN or infinite values; the file is damaged")
        peak = float(states.abs().max()) if states.numel() else 0.0
        if peak > MAX_CACHED_MAGNITUDE:
            raise TrainingInputError(
                f"{where} holds values up to {peak:.3g}; a teacher's states stay within +-{MAX_CACHED_MAGNITUDE:g} "
                "(images in [-1, 1] plus noise); the file is damaged or not a teacher cache"
            )

    def save(self) -> None:
        """Rewrite the file atomically when examples were added since the last save."""
        if not self.path or not self._dirty:
            return
        from safetensors.torch import save_file

        tensors = {f"{row_id}|{int(flip)}": states.contiguous() for (row_id, flip), states in self.entries.items()}
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{self.path}.tmp"
        save_file(tensors, tmp, metadata={"spic_teacher_cache": json.dumps(self.settings)})
        os.replace(tmp, self.path)
        self._dirty = False

    def states(self, ids, flips, teacher, segmap, low_res, teacher_ts, student_ts, guidance_scale, unet_dtype,
               noise=None, channels_last: bool = False) -> list[torch.Tensor]:
        """The teacher's states at `student_ts` and its final output for a batch, computing only missing rows."""
        if not ids or not all(str(i) for i in ids):
            return teacher_states(teacher, segmap, low_res, teacher_ts, student_ts, guidance_scale, unet_dtype,
                                  noise, channels_last)
        keys = [(str(i), bool(f)) for i, f in zip(ids, flips.tolist())]
        missing = [j for j, key in enumerate(keys) if key not in self.entries]
        if missing:
            index = torch.tensor(missing, device=segmap.device)
            fresh = teacher_states(teacher, segmap[index], low_res[index], teacher_ts, self.keep, guidance_scale,
                                   unet_dtype, None if noise is None else noise[index.cpu()], channels_last)
            stacked = torch.stack(fresh, dim=1).cpu()  # [B, len(keep) + 1, C, H, W]
            for n, j in enumerate(missing):
                self.entries[keys[j]] = stacked[n]
            self.computed += len(missing)
            self._dirty = True
        pick = [self.keep.index(int(t)) for t in student_ts] + [len(self.keep)]
        batch = torch.stack([self.entries[key] for key in keys]).to(segmap.device)
        return [batch[:, k] for k in pick]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options and distil (the body of `training/distill_spic.py`)."""
    return distill(parse_args(argv))


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: input problems print one clear line and exit with status 2."""
    import sys

    try:
        main(argv)
    except TrainingInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
