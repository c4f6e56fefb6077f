"""The end-to-end demo: scene -> SPIC stream -> reconstruction with the model shipped in the package.

Runs offline on a CPU in seconds: a real street photograph (one of two CamVid test frames shipped in the
package, never used in training), a seeded synthetic street scene, or the user's own image + train-id map
is coded into one stream (lossless map + coarse image at a low rate), decoded with the paper's sampler,
and compared with the upsampled coarse image the receiver would have without the diffusion model.

With the shipped segmentation network (or ``segmenter=`` any ``transformers`` segmentation model) it
reports the paper's semantic metric, the mIoU of the segmenter's map of each candidate against the
transmitted map, beside what the transmitted map itself lets us measure:

- **PSNR** against the original image;
- **boundary PSNR**: PSNR over pixels within 2 px of a class boundary of the map, where the coarse image is
  blurred and the map carries the information;
- **region colour error**: per class of the map, the distance between the mean colour of that region in
  the candidate and in the original (RGB, 0-255), averaged over the classes present.

"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .image_processing import InputFileError, open_image_file, read_segmentation_file, upsample_bicubic
from .metrics import boundary_mask, masked_psnr, region_colour_errors  # noqa: F401  (the demo's measures)
from .sizes import as_hw

# The SPIC pipelines shipped in the package, by name: "default" (the receiver) and "fast" (its single-pass student)
# are trained on real CamVid photographs at their native 360x480.
SHIPPED_MODELS = {"default": "spic-camvid", "synthetic": "spic-synthetic-tiny", "fast": "spic-camvid-fast"}
SHIPPED_SEGMENTER = "upernet-camvid"
# Real demo scenes: CamVid test frames at their native 360x480 with their maps in train ids (assets/camvid_frames).
DEMO_FRAMES = ("0001TP_009960", "Seq05VD_f04920")
# Synthetic demo scenes come from the synthetic generator's "test" stream, which the shipped model never saw
# (it was trained on the "train" stream of seed 0).
DEMO_SEED = 2024
HELD_OUT_SEED = 1
MAX_DEMO_PIXELS = 1024 * 2048  # Cityscapes' full resolution
OUTPUT_FILES = {
    "stream": "scene.spic",
    "original": "original.png",
    "semantic_map": "semantic_map.png",
    "semantic_map_color": "semantic_map_color.png",
    "coarse": "coarse_upsampled.png",
    "reconstruction": "reconstruction.png",
    "side_by_side": "side_by_side.png",
    "metrics": "metrics.json",
}


# Decodes of more UNet evaluations than this (the paper's sampler: 40) announce their expected time first.
ANNOUNCE_EVALUATIONS = 4


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


class DemoError(ValueError):
    """A demo input or output problem (missing/unreadable file, existing outputs, unusable size)."""


def _asset(*parts: str) -> Path:
    return Path(str(resources.files("spic_diffusers").joinpath("assets", *parts)))


def shipped_model_path(name: str = "default") -> Path:
    """The folder of a SPIC pipeline shipped inside the package (:data:`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise DemoError(f"no shipped model {name!r}; choose from {sorted(SHIPPED_MODELS)}")
    path = _asset(SHIPPED_MODELS[name])
    if not (path / "model_index.json").is_file():
        if name == "fast":
            raise DemoError(f"the shipped fast (distilled) model is missing from {path}; distil one with "
                            "training/distill_spic.py and pass --model PATH, or drop --fast")
        raise DemoError(f"the shipped model is missing from {path}; reinstall spic-diffusers or pass --model PATH")
    return path


def shipped_segmenter_path() -> Path:
    """The folder of the segmenter shipped inside the package (a UperNet knowing CamVid's 11 classes, in train ids)."""
    path = _asset(SHIPPED_SEGMENTER)
    if not (path / "config.json").is_file():
        raise DemoError(f"the shipped segmenter is missing from {path}; reinstall spic-diffusers or pass --segmenter")
    return path


def load_shipped_segmenter():
    """The shipped segmenter as a :class:`spic_diffusers.codec.Segmenter`."""
    from .codec import Segmenter

    return Segmenter.from_pretrained(shipped_segmenter_path())


def demo_frame(index: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """One shipped CamVid test frame: (RGB uint8 360x480x3, train-id map 360x480, description)."""
    if not 0 <= index < len(DEMO_FRAMES):
        raise DemoError(f"frame must be 0..{len(DEMO_FRAMES) - 1}, got {index}")
    name = DEMO_FRAMES[index]
    folder = _asset("camvid_frames")
    image = read_image(folder / f"{name}.png")
    labels = read_segmentation(folder / f"{name}_labelTrainIds.png")
    return image, labels, f"CamVid test frame {name} (a real street photograph, not used in training)"


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def _open_image(path: str | os.PathLike, what: str):
    try:
        return open_image_file(path, what)
    except InputFileError as err:
        raise DemoError(str(err)) from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB uint8 image from any file Pillow reads (16-bit grey scaled to 8 bits, not clipped)."""
    from .codec.transmitter import to_rgb_image

    image = _open_image(path, "image")
    try:
        return np.asarray(to_rgb_image(image))
    except ValueError as err:
        raise DemoError(f"image {path}: {err}") from None


def read_segmentation(path: str | os.PathLike, label_ids: bool = False, label_format: str | None = None) -> np.ndarray:
    """A uint8 train-id map (255 = ignore) from a single-channel PNG; ``label_ids`` maps official ids,
    ``label_format`` names the ids (see :func:`image_files.read_segmentation_file`)."""
    try:
        labels = read_segmentation_file(path, label_ids, label_format)
    except InputFileError as err:
        raise DemoError(str(err)) from None
    bad = np.setdiff1d(np.unique(labels), np.r_[np.arange(19), 255])
    if bad.size:
        raise DemoError(
            f"segmentation map {path} holds values {bad[:8].tolist()} that are not train ids 0..18 or 255 "
            "(pass --label_ids for official Cityscapes label ids)"
        )
    return labels


def size_multiple(pipeline, downsample: int) -> int:
    """Sides must divide by this: the UNet's down-sampling and the coarse image's factor."""
    levels = len(pipeline.unet.config.block_out_channels)
    return math.lcm(2 ** (levels - 1), downsample)


def model_size(pipeline) -> tuple[int, int]:
    return as_hw(pipeline.unet.config.sample_size, "sample_size")


def target_size(
    image_hw: tuple[int, int], pipeline, downsample: int, size: str | tuple[int, int] = "model"
) -> tuple[int, int]:
    """The size the demo codes an image at.

    ``"model"``: the shipped model's training size; ``"native"``: the image's own size rounded to the nearest
    multiple of :func:`size_multiple`; or an explicit ``(height, width)`` (which must be such multiples).
    """
    multiple = size_multiple(pipeline, downsample)
    if size == "model":
        return model_size(pipeline)
    if size == "native":
        height, width = (max(multiple, int(round(s / multiple)) * multiple) for s in image_hw)
    elif isinstance(size, str):
        raise DemoError(f"size must be 'model', 'native' or (height, width), got {size!r}")
    else:
        height, width = (int(s) for s in size)
        if height < multiple or width < multiple or height % multiple or width % multiple:
            raise DemoError(f"size {height}x{width} must be positive multiples of {multiple}")
    if height * width > MAX_DEMO_PIXELS:
        raise DemoError(
            f"{height}x{width} is too large for a CPU demo (at most {MAX_DEMO_PIXELS} pixels); pass a smaller --size"
        )
    return height, width


# ----------------------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------------------


def measure(truth: np.ndarray, candidate: np.ndarray, labels: np.ndarray, segmenter=None) -> dict[str, Any]:
    """The demo's figures for one candidate reconstruction (see the module docstring)."""
    from . import metrics

    per_class = metrics.region_colour_errors(truth, candidate, labels)
    result = {
        "psnr": metrics.psnr(truth, candidate),
        "boundary_psnr": metrics.masked_psnr(truth, candidate, metrics.boundary_mask(labels)),
        "region_colour_error": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "region_colour_error_per_class": per_class,
    }
    if segmenter is not None:
        result["miou"] = metrics.miou(segmenter(candidate), labels)
    return result


# ----------------------------------------------------------------------------------------------------------
# Coding
# ----------------------------------------------------------------------------------------------------------


def encode_with_fallback(
    image: np.ndarray,
    labels: np.ndarray,
    coarse_codec: str | None = None,
    coarse_quality: float | None = None,
    downsample: int = 4,
    log: Callable[[str], None] = print,
) -> tuple[bytes, str]:
    """Encode with ``coarse_codec`` (None: HEVC at QP 35, as the shipped model was trained); if it cannot
    run here, say so and use the first available codec of ``codec.COARSE_FALLBACKS``.
    """
    from .codec import DEFAULT_COARSE_CODEC, encode, select_coarse_codec

    wanted = coarse_codec or DEFAULT_COARSE_CODEC
    codec = select_coarse_codec(coarse_codec, coarse_quality, fallback=True, log=log)
    if codec.name != wanted:
        log(
            f"NOTE: coded the coarse image with {codec.name!r} at quality {codec.quality} instead of {wanted!r}; "
            "the shipped model was trained on HEVC coarse images, so expect a weaker reconstruction"
        )
    stream = encode(image, labels, coarse_codec=codec.name, coarse_quality=codec.quality, downsample=downsample)
    return stream, codec.name


# ----------------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------------


def side_by_side(panels: list[tuple[str, np.ndarray]], min_height: int = 192):
    """A labelled row of equally sized panels, enlarged (nearest neighbour) when small."""
    from PIL import Image, ImageDraw

    height, width = panels[0][1].shape[:2]
    scale = max(1, -(-min_height // height))
    tile_h, tile_w = height * scale, width * scale
    pad, header = 4, 16
    canvas = Image.new("RGB", (len(panels) * (tile_w + pad) - pad, header + tile_h), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (title, array) in enumerate(panels):
        x = index * (tile_w + pad)
        draw.text((x + 2, 2), title, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(array).resize((tile_w, tile_h), Image.NEAREST), (x, header))
    return canvas


# ----------------------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What one demo run measured and wrote."""

    height: int
    width: int
    source: str
    coarse_codec: str
    bytes: dict[str, int]
    bpp: dict[str, float]
    spic: dict[str, Any]
    coarse: dict[str, Any]
    sampler: dict[str, Any]
    seconds: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)


def load_pipeline(model: str | os.PathLike | None = None, device: str | None = None):
    """The shipped pipeline (default) or a local folder / Hub id."""
    from .pipelines.pipeline_spic import SPICPipeline

    path = shipped_model_path() if model is None else model
    try:
        pipeline = SPICPipeline.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise DemoError(f"cannot load a SPIC pipeline from {str(path)!r}: {err}") from None
    if device:
        pipeline.to(device)
    return pipeline


def _check_outputs(output_dir: Path, force: bool) -> dict[str, Path]:
    paths = {key: output_dir / name for key, name in OUTPUT_FILES.items()}
    if output_dir.exists() and not output_dir.is_dir():
        raise DemoError(f"{output_dir} exists and is not a folder")
    existing = [p.name for p in paths.values() if p.exists()]
    if existing and not force:
        raise DemoError(f"{output_dir} already holds {', '.join(existing)}; pass --overwrite to replace them")
    return paths


def check_demo_inputs(
    output_dir: str | os.PathLike,
    image: str | os.PathLike | None = None,
    segmentation: str | os.PathLike | None = None,
    label_ids: bool = False,
    force: bool = False,
    label_format: str | None = None,
):
    """Fail fast (before loading a model) on missing/unreadable inputs or outputs that would be overwritten.

    Returns ``(output paths, image array or None, label map or None)``.
    """
    if (image is None) != (segmentation is None):
        raise DemoError("pass both --image and --segmentation (or neither, for a synthetic scene)")
    paths = _check_outputs(Path(output_dir), force)
    if image is None:
        return paths, None, None
    truth, labels = read_image(image), read_segmentation(segmentation, label_ids, label_format)
    if truth.shape[:2] != labels.shape:
        raise DemoError(
            f"image {image} is {truth.shape[0]}x{truth.shape[1]} but segmentation map {segmentation} is "
            f"{labels.shape[0]}x{labels.shape[1]}; they must have the same size"
        )
    return paths, truth, labels


def run_demo(
    output_dir: str | os.PathLike,
    *,
    pipeline=None,
    model: str | os.PathLike | None = None,
    image: str | os.PathLike | None = None,
    segmentation: str | os.PathLike | None = None,
    label_ids: bool = False,
    label_format: str | None = None,
    size: str | tuple[int, int] = "model",
    synthetic: bool = False,
    frame: int = 0,
    scene_seed: int = DEMO_SEED,
    coarse_codec: str | None = None,
    coarse_quality: float | None = None,
    downsample: int = 4,
    num_inference_steps: int | None = None,
    max_timestep: int = 200,
    guidance_scale: float | None = None,
    seed: int = 0,
    segmenter=None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Code a scene, decode it, write and report.

    The scene is ``image`` + ``segmentation`` when given, else a synthetic scene with ``synthetic``, else the
    shipped CamVid test frame number ``frame``. ``segmenter`` (a callable image -> train-id map, e.g.
    :func:`load_shipped_segmenter`) adds mIoU figures.

    Writes the files of :data:`OUTPUT_FILES` into ``output_dir`` (created if missing); refuses to replace
    any of them unless ``force``. Returns the figures (also written to ``metrics.json``).
    """
    import torch

    from .codec import bpp_breakdown, decode, decode_parts
    from .data import make_scene, resize_image, resize_map, train_ids_to_color
    from .data.synthetic import scene_seed as split_seed

    output_dir = Path(output_dir)
    paths, truth, labels = check_demo_inputs(output_dir, image, segmentation, label_ids, force, label_format)
    if image is not None:
        source = f"{image} + {segmentation}"
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if pipeline is None:
        pipeline = load_pipeline(model)
    timings["load_model"] = time.perf_counter() - start
    if image is None and synthetic:
        height, width = target_size(model_size(pipeline), pipeline, downsample, size)
        scene = make_scene(height, width, split_seed(scene_seed, "test", 0))
        truth, labels = scene.image, scene.semantic_map
        source = f"synthetic street scene (seed {scene_seed}, test stream: not a training scene)"
    else:
        if image is None:
            truth, labels, source = demo_frame(frame)
            if size == "model":
                size = model_size(pipeline)
        height, width = target_size(truth.shape[:2], pipeline, downsample, size)
        if (height, width) != truth.shape[:2]:
            log(f"resizing {truth.shape[0]}x{truth.shape[1]} -> {height}x{width} (--size)")
            truth, labels = resize_image(truth, (height, width)), resize_map(labels, (height, width))
    log(f"scene: {source}, {height}x{width}")

    start = time.perf_counter()
    stream, codec_used = encode_with_fallback(truth, labels, coarse_codec, coarse_quality, downsample, log)
    timings["encode"] = time.perf_counter() - start
    info = bpp_breakdown(stream)
    log(
        f"bitstream: {len(stream)} bytes = {info['bpp']['total']:.4f} bpp "
        f"(map {info['bytes']['map']} B / {info['bpp']['map']:.4f} bpp, "
        f"coarse {info['bytes']['coarse']} B / {info['bpp']['coarse']:.4f} bpp [{codec_used}], "
        f"header {info['bytes']['header']} B)"
    )

    parts = decode_parts(stream)
    coarse_up = upsample_bicubic(parts.coarse_image, height, width)
    # Unset values come from the pipeline's saved defaults (a distilled student's schedule), else the paper's.
    guidance_scale, num_inference_steps, timesteps = pipeline.resolve_sampling_defaults(
        guidance_scale, num_inference_steps, None
    )
    sampler = {
        "scheduler": type(pipeline.scheduler).__name__,
        "num_inference_steps": num_inference_steps,
        "max_timestep": max_timestep,
        "guidance_scale": guidance_scale,
        "seed": seed,
    }
    if timesteps is not None:
        sampler["timesteps"] = timesteps
    schedule = f"timesteps {timesteps}" if timesteps is not None else f"{num_inference_steps}-step spacing"
    log(f"decoding with {sampler['scheduler']}: {schedule}, t <= {max_timestep}, guidance {guidance_scale}")
    evaluations = pipeline.unet_evaluations(guidance_scale, num_inference_steps, max_timestep, timesteps)
    if evaluations > ANNOUNCE_EVALUATIONS:  # a long decode (the paper's sampler): say how long before it starts
        expected = pipeline.estimate_decode_seconds(height, width, evaluations)
        log(f"{evaluations} UNet evaluations at {height}x{width}: about {_duration(expected)} on this machine")
        sampler["expected_seconds"] = round(expected, 1)
    start = time.perf_counter()
    generator = torch.Generator(device=pipeline.device).manual_seed(seed)
    reconstruction = np.asarray(
        decode(stream, pipeline, num_inference_steps=num_inference_steps, max_timestep=max_timestep,
               guidance_scale=guidance_scale, timesteps=timesteps, generator=generator).convert("RGB")
    )
    timings["decode"] = time.perf_counter() - start

    spic_scores = measure(truth, reconstruction, labels, segmenter)
    coarse_scores = measure(truth, coarse_up, labels, segmenter)
    if segmenter is not None:
        from . import metrics

        spic_scores["miou_original"] = coarse_scores["miou_original"] = metrics.miou(segmenter(truth), labels)
    result = DemoResult(
        height=height, width=width, source=source, coarse_codec=codec_used,
        bytes=dict(info["bytes"]), bpp=dict(info["bpp"]), spic=spic_scores, coarse=coarse_scores,
        sampler=sampler, seconds={k: round(v, 3) for k, v in timings.items()},
    )  # fmt: skip

    from PIL import Image

    from .output_files import save_image_atomically, write_atomically

    output_dir.mkdir(parents=True, exist_ok=True)
    colour_map = train_ids_to_color(labels)
    # Each file whole or not at all, and none that appeared since the start replaced without ``force``.
    try:
        write_atomically(paths["stream"], stream, overwrite=force)
        save_image_atomically(Image.fromarray(truth), paths["original"], overwrite=force)
        save_image_atomically(Image.fromarray(labels, mode="L"), paths["semantic_map"], overwrite=force)
        save_image_atomically(Image.fromarray(colour_map), paths["semantic_map_color"], overwrite=force)
        save_image_atomically(Image.fromarray(coarse_up), paths["coarse"], overwrite=force)
        save_image_atomically(Image.fromarray(reconstruction), paths["reconstruction"], overwrite=force)
        panels = [("original", truth), ("semantic map", colour_map), ("coarse (bicubic)", coarse_up),
                  ("SPIC", reconstruction)]
        save_image_atomically(side_by_side(panels), paths["side_by_side"], overwrite=force)
        result.files = {k: str(p) for k, p in paths.items()}
        write_atomically(paths["metrics"], json.dumps(_finite(asdict(result)), indent=2).encode(), overwrite=force)
    except FileExistsError as err:
        raise DemoError(
            f"{err.filename} appeared while the demo ran; it was kept (pass --overwrite to replace it)"
        ) from None
    except OSError as err:
        raise DemoError(f"cannot write into {output_dir}: {err.strerror or err}") from None
    for line in format_report(result):
        log(line)
    return result


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def format_report(result: DemoResult) -> list[str]:
    """The demo's printed summary: one line per figure, SPIC next to the upsampled coarse image."""
    rows = [
        ("PSNR [dB] (higher is better)", "psnr", "{:.2f}"),
        ("boundary PSNR [dB], <=2 px from a class edge", "boundary_psnr", "{:.2f}"),
        ("region colour error (mean over classes, 0-255, lower is better)", "region_colour_error", "{:.2f}"),
    ]
    if "miou" in result.spic:
        rows.append(("mIoU of the segmenter vs the transmitted map (higher is better)", "miou", "{:.3f}"))
    lines = [f"{'':<66}{'SPIC':>9}{'coarse':>9}"]
    for title, key, fmt in rows:
        lines.append(f"{title:<66}{fmt.format(result.spic[key]):>9}{fmt.format(result.coarse[key]):>9}")
    if "miou_original" in result.spic:
        lines.append(f"(the segmenter on the original photograph scores mIoU {result.spic['miou_original']:.3f})")
    lines.append(f"wrote {result.files.get('side_by_side', '')} and the other files in the same folder")
    return lines


def evaluate_held_out(
    pipeline,
    num_scenes: int = 8,
    *,
    scene_seed: int = HELD_OUT_SEED,
    coarse_codec: str | None = None,
    coarse_quality: float | None = None,
    downsample: int = 4,
    num_inference_steps: int | None = None,
    max_timestep: int = 200,
    guidance_scale: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """SPIC vs the upsampled coarse image on ``num_scenes`` synthetic test-stream scenes at the model's size.

    Returns the per-scene figures and their means (``{"spic": {...}, "coarse": {...}, "bpp": ...}``).
    """
    import torch

    from .codec import bpp_breakdown, decode, decode_parts
    from .data import make_scene
    from .data.synthetic import scene_seed as split_seed

    if num_scenes < 1:
        raise DemoError(f"num_scenes must be >= 1, got {num_scenes}")
    height, width = model_size(pipeline)
    guidance_scale, num_inference_steps, timesteps = pipeline.resolve_sampling_defaults(
        guidance_scale, num_inference_steps, None
    )  # a student's saved schedule unless the call names one
    per_scene = []
    for index in range(num_scenes):
        scene = make_scene(height, width, split_seed(scene_seed, "test", index))
        stream, _ = encode_with_fallback(scene.image, scene.semantic_map, coarse_codec, coarse_quality,
                                         downsample, log=lambda _: None)
        parts = decode_parts(stream)
        generator = torch.Generator(device=pipeline.device).manual_seed(seed + index)
        recon = np.asarray(decode(stream, pipeline, num_inference_steps=num_inference_steps,
                                  max_timestep=max_timestep, guidance_scale=guidance_scale, timesteps=timesteps,
                                  generator=generator).convert("RGB"))
        coarse_up = upsample_bicubic(parts.coarse_image, height, width)
        per_scene.append({
            "bpp": bpp_breakdown(stream)["bpp"]["total"],
            "spic": measure(scene.image, recon, scene.semantic_map),
            "coarse": measure(scene.image, coarse_up, scene.semantic_map),
        })  # fmt: skip
    keys = ("psnr", "boundary_psnr", "region_colour_error")

    def mean(kind: str, key: str) -> float:
        values = [s[kind][key] for s in per_scene if math.isfinite(s[kind][key])]
        return float(np.mean(values)) if values else float("nan")

    return {
        "num_scenes": num_scenes,
        "size": [height, width],
        "bpp": float(np.mean([s["bpp"] for s in per_scene])),
        "spic": {k: mean("spic", k) for k in keys},
        "coarse": {k: mean("coarse", k) for k in keys},
        "scenes_where_spic_psnr_is_higher": sum(s["spic"]["psnr"] > s["coarse"]["psnr"] for s in per_scene),
        "per_scene": per_scene,
    }
