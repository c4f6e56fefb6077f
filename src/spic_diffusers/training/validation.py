"""Validation during training: sample a fixed batch with the EMA weights and log a grid of the results."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..labels import train_ids_to_color


def validation_grid(
    labels: torch.Tensor, low_res: torch.Tensor, samples: np.ndarray, truth: torch.Tensor
) -> np.ndarray:
    """uint8 HxWx3 grid, one row per example: colour map | coarse (nearest upsampled) | sample | truth."""
    rows = []
    height, width = labels.shape[-2:]
    for i in range(labels.shape[0]):
        colour = np.asarray(train_ids_to_color(labels[i].cpu().numpy().astype(np.uint8)))[..., :3]
        coarse = torch.nn.functional.interpolate(low_res[i : i + 1].float(), size=(height, width), mode="nearest")
        coarse = ((coarse[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        sample = (samples[i] * 255).round().clip(0, 255).astype(np.uint8)
        real = ((truth[i].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        rows.append(np.concatenate([colour, coarse, sample, real], axis=1))
    return np.concatenate(rows, axis=0)


def run_validation(accelerator, unet, ema, batch: dict[str, Any], args: argparse.Namespace, step: int) -> str:
    """Sample the validation batch with the EMA weights; log the grid to the trackers and save it as PNG."""
    from ..pipelines.pipeline_spic import SPICPipeline, default_scheduler

    model = accelerator.unwrap_model(unet)
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    was_training = model.training
    model.eval()
    try:
        pipe = SPICPipeline(unet=model, scheduler=default_scheduler(args.num_train_timesteps))
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator(device="cpu").manual_seed(args.seed)
        with accelerator.autocast():
            samples = pipe(
                batch["segmentation_map"].to(accelerator.device), batch["low_res_image"].to(accelerator.device),
                guidance_scale=args.validation_guidance_scale, num_inference_steps=args.validation_inference_steps,
                max_timestep=args.validation_max_timestep, generator=generator, output_type="np",
            ).images
    finally:
        if ema is not None:
            ema.restore(model.parameters())
        model.train(was_training)
    grid = validation_grid(batch["labels"], batch["low_res_image"], samples, batch["pixel_values"])
    folder = os.path.join(args.output_dir, "validation")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step-{step:07d}.png")
    Image.fromarray(grid).save(path)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("validation", grid, step, dataformats="HWC")
        elif hasattr(tracker, "log_images"):
            tracker.log_images({"validation": [grid]}, step=step)
    return path
