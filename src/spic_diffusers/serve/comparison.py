"""One comparison as the web page shows it, without any web framework: upload -> SPIC stream -> figures.

Kept apart from the page so that the work (reading uploads, coding, decoding, the classical codecs at the same
byte count, the measurements) is one plain function, :func:`compare`, that the page, its tests and a Python
user call alike. Every problem with an upload is a :class:`ServeError` whose message is written for the page.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The two decoders the page offers, by the name of the shipped model each uses (see demo.SHIPPED_MODELS).
DECODERS = {"fast": "fast student (few steps)", "paper": "paper sampler (the teacher, many steps)"}
DECODER_MODELS = {"fast": "fast", "paper": "default"}
# Classical codecs coding the whole image at the SPIC stream's byte count, by codec name: the name shown.
BASELINE_CODECS = {"hevc": "HEVC", "webp": "WebP"}
RATE_MODES = ("coarse quality", "target bpp")
DEFAULT_TARGET_BPP = 0.15  # the paper's operating point at 360x480
# Uploads are resized to the model's size; this bounds what is read and decoded from the upload first.
DEFAULT_UPLOAD_PIXELS = 4096 * 4096

Progress = Callable[[float, str], None]


class ServeError(ValueError):
    """A problem with what the user asked for (an upload, a setting), in words for the page."""


@dataclass
class RateSetting:
    """How the coarse image is coded: to a target rate, or at a fixed quality; always at ``downsample``."""

    mode: str = "coarse quality"
    target_bpp: float = DEFAULT_TARGET_BPP
    coarse_quality: float | None = None
    downsample: int = 4

    def check(self) -> None:
        if self.mode not in RATE_MODES:
            raise ServeError(f"rate setting must be one of {', '.join(RATE_MODES)}, got {self.mode!r}")
        if isinstance(self.downsample, float) and self.downsample.is_integer():
            self.downsample = int(self.downsample)
        if not isinstance(self.downsample, int) or not 1 <= self.downsample <= 16:
            raise ServeError(f"downsampling must be a whole number from 1 to 16, got {self.downsample!r}")
        if self.mode == "target bpp":
            if self.target_bpp is None or not math.isfinite(self.target_bpp) or self.target_bpp <= 0:
                raise ServeError(f"the target rate must be a positive number of bits per pixel, got {self.target_bpp}")


@dataclass
class Comparison:
    """What one run produced: images (uint8 arrays at the coded size), figures, the stream's file."""

    height: int
    width: int
    map_source: str
    images: dict[str, np.ndarray]
    rate: dict[str, Any]
    candidates: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    decoder: dict[str, Any]
    stream_path: Path
    notes: list[str] = field(default_factory=list)


class Models:
    """The shipped models the page uses, loaded once: both decoders, the segmenter, the usable codecs.

    Sizes and names come from :func:`spic_diffusers.demo.shipped_model_path`, so a new shipped model is served
    without a change here. One lock serialises decoding: torch on a small CPU is not faster in parallel.
    """

    def __init__(self, threads: int | None = None) -> None:
        import torch

        from .. import demo
        from ..evaluation.baselines import available_codecs
        from ..pipelines.pipeline_spic import SPICPipeline

        if threads is not None:
            torch.set_num_threads(threads)
        self.pipelines = {
            key: SPICPipeline.from_pretrained(demo.shipped_model_path(name)) for key, name in DECODER_MODELS.items()
        }
        for pipeline in self.pipelines.values():
            pipeline.set_progress_bar_config(disable=True)
        self.segmenter = demo.load_shipped_segmenter()
        self.segmenter_name = demo.shipped_segmenter_path().name
        self.codecs, self.missing_codecs = available_codecs(BASELINE_CODECS)
        self.lock = threading.Lock()
        self._seconds_per_evaluation: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """The (height, width) the page codes at: the fast model's training size."""
        from ..demo import model_size

        return model_size(self.pipelines["fast"])

    def schedule(self, decoder: str) -> dict[str, Any]:
        """The decoder's sampling settings and how many UNet evaluations they cost."""
        if decoder not in self.pipelines:
            raise ServeError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        pipeline = self.pipelines[decoder]
        guidance, steps, timesteps = pipeline.resolve_sampling_defaults(None, None, None)
        visited = len(pipeline.get_timesteps(steps, 200, timesteps, "cpu"))
        evaluations = visited * (2 if guidance > 1 else 1)
        return {"name": DECODERS[decoder], "guidance_scale": guidance, "num_inference_steps": steps,
                "timesteps": timesteps, "steps": visited, "unet_evaluations": evaluations,
                "max_timestep": 200}  # fmt: skip

    def expected_seconds(self, decoder: str) -> float:
        """The decoder's expected time here: its UNet evaluations times one evaluation's measured time."""
        if self._seconds_per_evaluation is None:
            from ..demo import demo_frame

            image, labels, _ = demo_frame(0)
            with self.lock:
                self.decode_timed(self.code(image, labels, RateSetting("coarse quality"))[0], "fast")
        return self._seconds_per_evaluation * self.schedule(decoder)["unet_evaluations"]

    def code(self, image: np.ndarray, labels: np.ndarray, rate: RateSetting) -> tuple[bytes, dict[str, Any]]:
        """One SPIC stream at the rate setting, and what the coarse image was coded with."""
        from ..codec import encode_to_rate, read_header
        from ..demo import encode_with_fallback

        notes: list[str] = []
        if rate.mode == "target bpp":
            try:
                fit = encode_to_rate(image, labels, target_bpp=float(rate.target_bpp), downsample=rate.downsample)
            except ValueError as err:
                raise ServeError(f"cannot reach {rate.target_bpp:g} bpp: {err}") from None
            stream, quality = fit.stream, fit.coarse_quality
            if fit.bpp < 0.9 * rate.target_bpp:  # the coarse codec's best quality at this factor stops short
                notes.append(f"the stream reaches only {fit.bpp:.4f} bpp of the {rate.target_bpp:g} asked for: that "
                             f"is the best coarse quality at downsampling {rate.downsample}; a smaller factor "
                             "spends more")
        else:
            try:
                stream, _ = encode_with_fallback(image, labels, None, rate.coarse_quality, rate.downsample,
                                                 notes.append)
            except ValueError as err:
                raise ServeError(f"cannot code the coarse image: {err}") from None
            quality = rate.coarse_quality
        header = read_header(stream)
        return stream, {"coarse_codec": header.coarse_codec, "coarse_quality": quality,
                        "downsample": header.downsample, "notes": notes}  # fmt: skip

    def decode_timed(self, stream: bytes, decoder: str, progress: Progress | None = None) -> tuple[np.ndarray, float]:
        """The reconstruction and its decode time, which also updates the expected times the page shows."""
        import torch

        from ..codec import decode

        pipeline, schedule = self.pipelines[decoder], self.schedule(decoder)

        def step_done(pipe, step: int, timestep, tensors: dict) -> dict:
            if progress is not None:
                progress(0.3 + 0.5 * (step + 1) / schedule["steps"], f"decoding: step {step + 1}/{schedule['steps']}")
            return {}

        start = time.perf_counter()
        image = decode(stream, pipeline, guidance_scale=schedule["guidance_scale"],
                       num_inference_steps=schedule["num_inference_steps"], timesteps=schedule["timesteps"],
                       max_timestep=schedule["max_timestep"], generator=torch.Generator().manual_seed(0),
                       callback_on_step_end=step_done)  # fmt: skip
        seconds = time.perf_counter() - start
        self._seconds_per_evaluation = seconds / schedule["unet_evaluations"]
        return np.asarray(image.convert("RGB")), seconds


# ----------------------------------------------------------------------------------------------------------
# Uploads
# ----------------------------------------------------------------------------------------------------------


def read_upload(image_path: str | Path | None, map_path: str | Path | None,
                max_pixels: int = DEFAULT_UPLOAD_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """The uploaded photograph (RGB uint8) and its label map (train ids) if one was given.

    Refuses, with one sentence each: no file, a file that is not an image, more pixels than ``max_pixels``
    (read from the header, before decoding), a map that is not one channel, of another size than the
    photograph, or holding values that are not train ids.
    """
    from ..codec.transmitter import to_rgb_image
    from ..image_files import InputFileError, image_file_size, open_image_file, read_segmentation_file
    from ..labels import IGNORE_INDEX, NUM_CLASSES

    if not image_path:
        raise ServeError("upload a photograph first (or click one of the examples)")
    name = Path(image_path).name
    try:
        height, width = image_file_size(image_path, "upload")
    except InputFileError:
        raise ServeError(f"{name} is not an image that can be read (PNG, JPEG, WebP, ... are)") from None
    if height * width > max_pixels:
        raise ServeError(f"{name} has {height}x{width} = {height * width} pixels, more than the {max_pixels} "
                         "this page reads; upload a smaller photograph")
    try:
        rgb = np.asarray(to_rgb_image(open_image_file(image_path, "upload", max_pixels)))
    except (InputFileError, ValueError):
        raise ServeError(f"{name} is not an image that can be read (PNG, JPEG, WebP, ... are)") from None
    if not map_path:
        return rgb, None
    map_name = Path(map_path).name
    try:
        map_size = image_file_size(map_path, "label map")
    except InputFileError:
        raise ServeError(f"the label map {map_name} is not an image that can be read; upload a PNG") from None
    if map_size != (height, width):
        raise ServeError(f"the label map {map_name} is {map_size[0]}x{map_size[1]} but the photograph is "
                         f"{height}x{width}; they must have the same size")
    try:
        labels = read_segmentation_file(map_path, label_format="trainid")
    except InputFileError as err:
        if "mode" in str(err):
            raise ServeError(f"the label map {map_name} must be a single-channel PNG of train ids "
                             f"(0..{NUM_CLASSES - 1}, {IGNORE_INDEX} = ignore)") from None
        raise ServeError(f"the label map {map_name} cannot be read: {err}") from None
    bad = np.setdiff1d(np.unique(labels), np.r_[np.arange(NUM_CLASSES), IGNORE_INDEX])
    if bad.size:
        raise ServeError(f"the label map {map_name} holds values {bad[:8].tolist()} that are not train ids "
                         f"(0..{NUM_CLASSES - 1}, {IGNORE_INDEX} = ignore)")
    return rgb, labels


def fit_to_size(image: np.ndarray, labels: np.ndarray | None,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop the centre to the model's aspect ratio, then resize: a photograph is not stretched."""
    from ..image_processing import resize_image, resize_map

    height, width = image.shape[:2]
    want = size[0] / size[1]
    crop_h, crop_w = (height, round(height / want)) if width * want > height else (round(width * want), width)
    crop_h, crop_w = max(1, min(height, crop_h)), max(1, min(width, crop_w))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    image = resize_image(image[top:top + crop_h, left:left + crop_w], size)
    if labels is not None:
        labels = resize_map(labels[top:top + crop_h, left:left + crop_w], size)
    return image, labels


# ----------------------------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------------------------


def compare(models: Models, image_path: str | Path | None, map_path: str | Path | None = None,
            rate: RateSetting | None = None, decoder: str = "fast", *, max_pixels: int = DEFAULT_UPLOAD_PIXELS,
            output_dir: str | Path | None = None, progress: Progress | None = None) -> Comparison:
    """Code an upload with SPIC, decode it, code it whole with HEVC and WebP at the same byte count, measure.

    The stream is written to ``output_dir`` (default: a new temporary folder) as ``<photo name>.spic``.
    """
    from ..codec import bpp_breakdown, decode_parts
    from ..data import train_ids_to_color
    from ..demo import measure
    from ..evaluation.baselines import match_rate
    from ..image_processing import upsample_bicubic
    from .. import metrics

    def report(fraction: float, what: str) -> None:
        if progress is not None:
            progress(fraction, what)

    rate = rate or RateSetting()
    rate.check()
    models.schedule(decoder)  # an unknown decoder is refused before any work
    report(0.0, "reading the upload")
    image, labels = read_upload(image_path, map_path, max_pixels)
    height, width = models.size
    if height % rate.downsample or width % rate.downsample:
        raise ServeError(f"downsampling {rate.downsample} does not divide the coded size {height}x{width}")
    image, labels = fit_to_size(image, labels, (height, width))
    timings: dict[str, float] = {}
    if labels is None:
        report(0.05, "predicting the label map")
        start = time.perf_counter()
        labels = models.segmenter(image)
        timings["segment"] = time.perf_counter() - start
        map_source = f"predicted by the shipped segmenter ({models.segmenter_name}): no label map was uploaded"
    else:
        map_source = "the uploaded label map"
    report(0.15, "coding")
    with models.lock:
        start = time.perf_counter()
        stream, coding = models.code(image, labels, rate)
        timings["encode"] = time.perf_counter() - start
        report(0.3, "decoding")
        reconstruction, timings["decode"] = models.decode_timed(stream, decoder, progress)
    info = bpp_breakdown(stream)
    coarse = upsample_bicubic(decode_parts(stream).coarse_image, height, width)
    images = {"original": image, "map": train_ids_to_color(labels), "coarse": coarse, "spic": reconstruction}
    candidates: dict[str, dict[str, Any]] = {
        "SPIC": {"bytes": len(stream), "bpp": info["bpp"]["total"], "decode_seconds": timings["decode"]},
        "coarse (bicubic)": {"bytes": len(stream), "bpp": info["bpp"]["total"], "decode_seconds": None},
    }
    notes = list(coding.pop("notes"))
    pictures = {"SPIC": reconstruction, "coarse (bicubic)": coarse}
    for position, (name, shown) in enumerate(BASELINE_CODECS.items()):
        report(0.8 + 0.05 * position, f"coding the whole image with {shown} at {len(stream)} bytes")
        if name not in models.codecs:
            notes.append(f"{shown} cannot run here: {models.missing_codecs.get(name, 'unavailable')}")
            continue
        match = match_rate(name, image, len(stream))
        images[name] = pictures[shown] = match["decoded"]
        candidates[shown] = {"bytes": match["bytes"], "bpp": 8 * match["bytes"] / (height * width),
                             "quality": match["quality"], "decode_seconds": None}
        if match["above_target"]:
            notes.append(f"{shown} cannot go as low as {len(stream)} bytes: its smallest setting "
                         f"takes {match['bytes']} bytes")
    report(0.9, "measuring")
    for key, picture in pictures.items():
        scores = measure(image, picture, labels, models.segmenter)
        scores.pop("region_colour_error_per_class")
        candidates[key].update(scores)
    original_miou = metrics.miou(models.segmenter(image), labels)
    folder = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="spic-serve-"))
    folder.mkdir(parents=True, exist_ok=True)
    stream_path = folder / f"{Path(str(image_path)).stem or 'image'}.spic"
    stream_path.write_bytes(stream)
    report(1.0, "done")
    return Comparison(
        height=height, width=width, map_source=map_source, images=images,
        rate={"bytes": dict(info["bytes"]), "bpp": dict(info["bpp"]), **coding, "mode": rate.mode,
              "target_bpp": rate.target_bpp if rate.mode == "target bpp" else None,
              "original_miou": original_miou},
        candidates=candidates, seconds={k: round(v, 3) for k, v in timings.items()},
        decoder=models.schedule(decoder), stream_path=stream_path, notes=notes,
    )  # fmt: skip
