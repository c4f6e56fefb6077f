"""End-to-end evaluation of SPIC: code each image, decode it with the diffusion pipeline, score it.

For every *setting* (coarse codec, quality, downsample factor, scheduler, steps, guidance) each image is
encoded into one SPIC stream, decoded by the pipeline and compared with the original. Baselines run on the
same images at the same rate: the decoded coarse image upsampled bicubically, and whole-image coding with
every available codec at the quality whose size best matches SPIC's stream from below.

Per-image results are stored one JSON file per (setting, image) under ``records/`` so an interrupted run
resumes where it stopped; aggregates (set-level mIoU, FID/KID over the set, means of the rest), a Markdown
table, rate curves and a sample grid are rebuilt from those records at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from . import metrics
from .codec.coarse import DEFAULT_COARSE_CODEC
from .pipelines.schedulers import SCHEDULER_CLASSES, scheduler_from_name


RESULTS_MARKER = "spic_eval.json"
_INCEPTION_CACHE: dict[tuple[str, int], torch.nn.Module] = {}
SPIC = "SPIC"
COARSE_BASELINE = "coarse (bicubic)"
ORIGINAL = "original"


class EvaluationError(ValueError):
    """Bad evaluation input: unknown names, unusable output folder, inconsistent data."""


# ----------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateSetting:
    """What fixes the bitstream (and so the rate) of one image."""

    coarse_codec: str = DEFAULT_COARSE_CODEC
    coarse_quality: float | int | None = None
    downsample: int = 4
    map_coder: str = "context"

    def label(self) -> str:
        quality = "default" if self.coarse_quality is None else f"{self.coarse_quality:g}"
        return f"{self.coarse_codec} q={quality} d={self.downsample}"


@dataclass(frozen=True)
class SamplerSetting:
    """What fixes the decoder's sampling."""

    scheduler: str = "ddpm"
    steps: int = 100
    guidance: float = 1.5
    max_timestep: int = 200
    seed: int = 0

    def label(self) -> str:
        return f"{self.scheduler} x{self.steps} g={self.guidance:g}"


@dataclass(frozen=True)
class EvalSetting:
    rate: RateSetting = field(default_factory=RateSetting)
    sampler: SamplerSetting = field(default_factory=SamplerSetting)

    def label(self) -> str:
        return f"{self.rate.label()}, {self.sampler.label()}"


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def parse_sampler_sweep(spec: str, guidance: float, max_timestep: int, seed: int) -> list[SamplerSetting]:
    """``"ddpm:20,ddim:10,dpmsolver++:5"`` -> sampler settings (unknown names raise EvaluationError)."""
    out = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, steps = item.rpartition(":")
        if not sep or not name or not steps.isdigit() or int(steps) < 1:
            raise EvaluationError(f"sampler sweep entries are NAME:STEPS with STEPS >= 1, got {item!r}")
        check_scheduler_name(name)
        out.append(SamplerSetting(name, int(steps), guidance, max_timestep, seed))
    if not out:
        raise EvaluationError(f"empty sampler sweep: {spec!r}")
    return out


def parse_number_list(spec: str, kind: type, name: str) -> list:
    values = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            values.append(kind(item))
        except ValueError as error:
            raise EvaluationError(f"{name}: cannot read {item!r} as {kind.__name__}") from error
    if not values:
        raise EvaluationError(f"{name}: empty list {spec!r}")
    return values


def check_scheduler_name(name: str) -> None:
    if name not in SCHEDULER_CLASSES:
        raise EvaluationError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULER_CLASSES)}")


def make_scheduler(name: str, base_config: Any):
    """A diffusers scheduler of the short ``name`` built from the pipeline's scheduler config."""
    check_scheduler_name(name)
    return scheduler_from_name(name, base_config)


# ----------------------------------------------------------------------------------------------------------
# Inputs: dataset, pipeline, segmenter, codec
# ----------------------------------------------------------------------------------------------------------


def load_eval_dataset(path_or_id: str, split: str):
    """A dataset split from a ``save_to_disk`` folder, a local data folder, or a Hub id."""
    import datasets

    looks_local = os.path.isabs(path_or_id) or path_or_id.startswith(("./", "../", "~"))
    if looks_local and not os.path.exists(os.path.expanduser(path_or_id)):
        raise EvaluationError(f"cannot load split {split!r}: dataset folder {path_or_id} does not exist")
    path_or_id = os.path.expanduser(path_or_id)
    if os.path.isdir(path_or_id) and (
        os.path.isfile(os.path.join(path_or_id, "dataset_dict.json"))
        or os.path.isfile(os.path.join(path_or_id, "state.json"))
    ):
        loaded = datasets.load_from_disk(path_or_id)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise EvaluationError(f"split {split!r} not in {path_or_id} (has {', '.join(loaded)})")
            loaded = loaded[split]
        dataset = loaded
    else:
        try:
            dataset = datasets.load_dataset(path_or_id, split=split)
        except (OSError, ValueError) as error:  # FileNotFoundError, unknown split, unreachable Hub id
            raise EvaluationError(f"cannot load split {split!r} of {path_or_id}: {error}") from error
    missing = {"image", "semantic_map"} - set(dataset.column_names)
    if missing:
        raise EvaluationError(f"dataset {path_or_id} lacks column(s) {sorted(missing)}")
    return dataset


def example_arrays(example: dict, index: int) -> tuple[str, np.ndarray, np.ndarray]:
    """(id, image uint8 HxWx3, semantic map uint8 HxW) of one dataset row."""
    image = np.asarray(example["image"].convert("RGB"), dtype=np.uint8)
    semantic = example["semantic_map"]
    semantic = np.asarray(semantic.convert("L") if isinstance(semantic, Image.Image) else semantic)
    if semantic.shape != image.shape[:2]:
        raise EvaluationError(f"row {index}: semantic map {semantic.shape} differs from image {image.shape[:2]}")
    image_id = str(example.get("id") or f"{index:06d}")
    return image_id, image, semantic.astype(np.uint8)


def load_segmenter(path_or_id: str, device: str = "cpu"):
    """The codec's ``Segmenter`` (a ``transformers`` model mapped to Cityscapes train ids) on ``device``.

    The same class predicts maps at the transmitter, so evaluation and coding agree on label handling.
    """
    from .codec import Segmenter

    try:
        segmenter = Segmenter.from_pretrained(path_or_id)
    except ValueError as error:
        raise EvaluationError(str(error)) from error
    segmenter.model.to(device)
    return segmenter


def _codec_module():
    from . import codec

    return codec


def available_codecs(names: Iterable[str] | None = None) -> tuple[dict[str, type], dict[str, str]]:
    """Whole-image codecs that work here ({name: codec class}) and why the others do not ({name: reason}).

    A codec counts as available when it codes a small test image (external tools are looked up then).
    """
    codec = _codec_module()
    from .codec.coarse import COARSE_CODECS

    names = list(COARSE_CODECS) if names is None else list(names)
    probe = np.zeros((16, 16, 3), dtype=np.uint8)
    usable, missing = {}, {}
    for name in names:
        if name not in COARSE_CODECS:
            raise EvaluationError(f"unknown codec {name!r}; choose from {', '.join(COARSE_CODECS)}")
        try:
            coder = codec.get_coarse_codec(name)
            coder.decode(coder.encode(probe), 16, 16)
        except Exception as error:  # missing tools surface as CodecUnavailableError (or the tool's failure)
            missing[name] = f"{type(error).__name__}: {error}"
            continue
        usable[name] = COARSE_CODECS[name]
    return usable, missing


def quality_candidates(codec_class: type) -> list[int]:
    """Integer qualities of a codec ordered from the smallest to the largest output."""
    low, high = codec_class.quality_range
    values = list(range(int(math.ceil(low)), int(math.floor(high)) + 1))
    return values if codec_class.higher_is_better else values[::-1]


def match_rate(codec_name: str, image: np.ndarray, target_bytes: int) -> dict[str, Any]:
    """Code the whole ``image`` at the quality whose size is the largest not above ``target_bytes``.

    Binary search over the codec's quality scale (sizes assumed monotonic in quality). When even the
    smallest setting is larger than the target, that setting is used and ``above_target`` is set.
    """
    codec = _codec_module()
    from .codec.coarse import COARSE_CODECS

    candidates = quality_candidates(COARSE_CODECS[codec_name])
    streams: dict[int, bytes] = {}

    def stream(i: int) -> bytes:
        if i not in streams:
            streams[i] = codec.get_coarse_codec(codec_name, candidates[i]).encode(image)
        return streams[i]

    lo, hi, best = 0, len(candidates) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(stream(mid)) <= target_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    above = best is None
    best = 0 if above else best
    data = stream(best)
    decoded = codec.get_coarse_codec(codec_name, candidates[best]).decode(data, image.shape[0], image.shape[1])
    return {"quality": candidates[best], "bytes": len(data), "decoded": np.asarray(decoded, np.uint8),
            "above_target": above, "encodes": len(streams)}


def upsample_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC), dtype=np.uint8)


def colorize(semantic_map: np.ndarray) -> np.ndarray:
    from .data.cityscapes import train_ids_to_color

    return train_ids_to_color(semantic_map)


# ----------------------------------------------------------------------------------------------------------
# Configuration and output folder
# ----------------------------------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    model: str
    dataset: str
    output_dir: str
    split: str = "validation"
    num_samples: int | None = None
    rate: RateSetting = field(default_factory=RateSetting)
    sampler: SamplerSetting = field(default_factory=SamplerSetting)
    rate_sweep: list[RateSetting] = field(default_factory=list)
    sampler_sweep: list[SamplerSetting] = field(default_factory=list)
    segmenter: str | None = None
    baselines: bool = True
    baseline_codecs: list[str] | None = None  # None: every available codec
    inception_weights: str | None = None
    fid_feature_dim: int = 2048
    lpips: bool = True
    grid_images: int = 4
    device: str = "cpu"
    force: bool = False
    show_progress: bool = True

    def settings(self) -> list[EvalSetting]:
        """Base setting, rate sweep at the base sampler, sampler sweep at the base rate (deduplicated)."""
        out = [EvalSetting(self.rate, self.sampler)]
        out += [EvalSetting(rate, self.sampler) for rate in self.rate_sweep]
        out += [EvalSetting(self.rate, sampler) for sampler in self.sampler_sweep]
        return list(dict.fromkeys(out))

    def identity(self) -> dict[str, Any]:
        """What makes stored records reusable: same model, data and segmenter (local folders are
        fingerprinted by their files' sizes and modification times, so a retrained model is not reused)."""
        from . import __version__

        return {
            "spic_diffusers": __version__,
            "model": [self.model, _fingerprint(self.model)],
            "dataset": [self.dataset, _fingerprint(self.dataset)],
            "split": self.split,
            "segmenter": [self.segmenter, _fingerprint(self.segmenter)],
        }


def _fingerprint(path: str | None) -> str | None:
    if not path or not os.path.exists(path):
        return None  # a Hub id (or nothing): its name is the identity
    entries = []
    for root, _, files in os.walk(path):
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            entries.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    return _digest(sorted(entries))


def _safe_name(text: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    return safe if safe == text else f"{safe[:80]}-{zlib.crc32(text.encode()):08x}"


def prepare_output_dir(config: EvalConfig) -> Path:
    """Create or reuse the output folder; refuse a non-empty folder that this tool did not write."""
    out = Path(config.output_dir)
    marker = out / RESULTS_MARKER
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not marker.is_file() and not config.force:
        raise EvaluationError(f"output folder {out} is not empty and holds no {RESULTS_MARKER}; pass --force to use it")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"identity": config.identity()}, indent=2))
    return out


# ----------------------------------------------------------------------------------------------------------
# Per-image evaluation
# ----------------------------------------------------------------------------------------------------------


def _image_scores(reference: np.ndarray, candidate: np.ndarray, lpips: Any) -> dict[str, Any]:
    scores: dict[str, Any] = {"psnr": metrics.psnr(reference, candidate)}
    for name, fn in (("ssim", metrics.ssim), ("ms_ssim", metrics.ms_ssim)):
        try:
            scores[name] = fn(reference, candidate)
        except metrics.MetricUnavailable:
            scores[name] = None
    scores["lpips"] = lpips(reference, candidate) if lpips is not None else None
    return scores


def _confusion(segmenter: Any, image: np.ndarray, target: np.ndarray) -> dict | None:
    if segmenter is None:
        return None
    return metrics.ConfusionMatrix().update(segmenter(image), target).to_dict()


def _save_png(out: Path, path: Path, image: np.ndarray) -> str:
    """Write an image under the output folder; records keep the path relative to it (folders can move)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path.relative_to(out).as_posix()


def _load_rgb(out: Path, relative: str) -> np.ndarray:
    return np.asarray(Image.open(out / relative).convert("RGB"), dtype=np.uint8)


class Evaluator:
    """Runs one :class:`EvalConfig`; see :func:`run_evaluation`."""

    def __init__(self, config: EvalConfig, pipeline: Any = None, segmenter: Any = None):
        self.config = config
        self.codec = _codec_module()
        self._check_rates()
        self.dataset = load_eval_dataset(config.dataset, config.split)
        self.pipeline = pipeline if pipeline is not None else self._load_pipeline()
        self.base_scheduler_config = dict(self.pipeline.scheduler.config)
        self.segmenter = segmenter
        if self.segmenter is None and config.segmenter:
            self.segmenter = load_segmenter(config.segmenter, config.device)
        self.skipped: dict[str, str] = {}
        if self.segmenter is None:
            self.skipped["miou"] = "no segmenter given (--segmenter)"
        self.lpips = None
        if config.lpips:
            try:
                self.lpips = metrics.LPIPS()
            except metrics.MetricUnavailable as error:
                self.skipped["lpips"] = str(error)
        else:
            self.skipped["lpips"] = "disabled"
        self.baseline_codecs: dict[str, type] = {}
        if config.baselines:
            self.baseline_codecs, missing = available_codecs(config.baseline_codecs)
            for name, reason in missing.items():
                self.skipped[f"baseline {name}"] = reason
        self.identity = config.identity()
        self._streams: dict[tuple, bytes] = {}
        self.out = prepare_output_dir(config)  # last: a refused configuration leaves no folder behind

    def _check_rates(self) -> None:
        """Fail before any work for unknown or unusable codec names and qualities."""
        from .codec import MAP_CODERS, CodecUnavailableError

        for rate in dict.fromkeys(s.rate for s in self.config.settings()):
            if rate.map_coder not in MAP_CODERS:
                raise EvaluationError(f"unknown map coder {rate.map_coder!r}; choose from {', '.join(MAP_CODERS)}")
            if rate.downsample < 1:
                raise EvaluationError(f"downsample must be >= 1, got {rate.downsample}")
            try:
                coder = self.codec.get_coarse_codec(rate.coarse_codec, rate.coarse_quality)
                coder.encode(np.zeros((8, 8, 3), dtype=np.uint8))
            except (ValueError, CodecUnavailableError) as error:
                raise EvaluationError(f"coarse codec setting [{rate.label()}]: {error}") from error

    def _load_pipeline(self):
        from .pipelines.pipeline_spic import SPICPipeline

        try:
            pipe = SPICPipeline.from_pretrained(self.config.model)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"cannot load the SPIC pipeline {self.config.model!r}: {error}") from error
        pipe.to(self.config.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # -- records ---------------------------------------------------------------------------------------

    def record_path(self, kind: str, key_payload: Any, image_id: str) -> Path:
        key = _digest({"identity": self.identity, "kind": kind, "key": key_payload})
        return self.out / "records" / f"{kind}-{key}" / f"{_safe_name(image_id)}.json"

    def _load_or_compute(self, path: Path, compute: Callable[[], dict]) -> dict:
        if path.is_file() and not self.config.force:
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # a half-written record from an interrupted run: recompute it
        record = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=_json_default))
        os.replace(tmp, path)
        return record

    # -- one image -------------------------------------------------------------------------------------

    def encode(self, rate: RateSetting, image_id: str, image: np.ndarray, semantic: np.ndarray) -> bytes:
        """The SPIC stream of one image; kept while that image is evaluated (its records share it)."""
        if self._streams and next(iter(self._streams))[1] != image_id:
            self._streams.clear()
        key = (rate, image_id)
        if key not in self._streams:
            self._streams[key] = self._encode(rate, image, semantic)
        return self._streams[key]

    def _encode(self, rate: RateSetting, image: np.ndarray, semantic: np.ndarray) -> bytes:
        return self.codec.encode(
            image,
            semantic,
            coarse_codec=rate.coarse_codec,
            coarse_quality=rate.coarse_quality,
            downsample=rate.downsample,
            map_coder=rate.map_coder,
        )

    def rate_record(self, rate: RateSetting, image_id: str, image: np.ndarray, semantic: np.ndarray) -> dict:
        """Stream sizes, the coarse baseline and the codec baselines of one image at one rate setting."""

        def compute() -> dict:
            stream = self.encode(rate, image_id, image, semantic)
            breakdown = self.codec.bpp_breakdown(stream)
            parts = self.codec.decode_parts(stream)
            if not np.array_equal(np.asarray(parts.semantic_map), semantic):
                raise EvaluationError(f"{image_id}: the semantic map did not survive coding losslessly")
            folder = self.out / "images" / _safe_name(f"rate-{rate.label()}-{_digest(dataclasses.asdict(rate))}")
            height, width = semantic.shape
            coarse_up = upsample_bicubic(np.asarray(parts.coarse_image, dtype=np.uint8), height, width)
            record = {
                "id": image_id,
                "rate": dataclasses.asdict(rate),
                "bytes": breakdown["bytes"],
                "bpp": breakdown["bpp"],
                "methods": {},
            }
            coarse_bytes = breakdown["bytes"]["coarse"] + breakdown["bytes"]["header"]
            record["methods"][COARSE_BASELINE] = {
                "image": _save_png(self.out, folder / "coarse" / f"{_safe_name(image_id)}.png", coarse_up),
                "bpp": 8.0 * coarse_bytes / (height * width),
                "scores": _image_scores(image, coarse_up, self.lpips),
                "confusion": _confusion(self.segmenter, coarse_up, semantic),
            }
            return record

        record = self._load_or_compute(self.record_path("rate", dataclasses.asdict(rate), image_id), compute)
        for name in self.baseline_codecs:
            record["methods"][f"{name} (same rate)"] = self.baseline_record(
                rate, name, image_id, image, semantic, record["bytes"]["total"]
            )
        return record

    def baseline_record(
        self, rate: RateSetting, name: str, image_id: str, image: np.ndarray, semantic: np.ndarray, target: int
    ) -> dict:
        """Whole-image coding with codec ``name`` at the rate of SPIC's stream (``target`` bytes)."""

        def compute() -> dict:
            try:
                matched = match_rate(name, image, target)
            except Exception as error:  # one codec failing on one image must not stop the run
                return {"error": f"{type(error).__name__}: {error}"}
            decoded = matched.pop("decoded")
            folder = self.out / "images" / _safe_name(f"rate-{rate.label()}-{_digest(dataclasses.asdict(rate))}")
            return {
                "image": _save_png(self.out, folder / name / f"{_safe_name(image_id)}.png", decoded),
                "bpp": metrics.bpp_from_bytes(matched["bytes"], *image.shape[:2]),
                "quality": matched["quality"],
                "above_target": matched["above_target"],
                "target_bytes": target,
                "scores": _image_scores(image, decoded, self.lpips),
                "confusion": _confusion(self.segmenter, decoded, semantic),
            }

        key = {"rate": dataclasses.asdict(rate), "codec": name, "target": target}
        return self._load_or_compute(self.record_path("baseline", key, image_id), compute)

    def spic_record(self, setting: EvalSetting, image_id: str, image: np.ndarray, semantic: np.ndarray) -> dict:
        def compute() -> dict:
            stream = self.encode(setting.rate, image_id, image, semantic)
            self.pipeline.scheduler = make_scheduler(setting.sampler.scheduler, self.base_scheduler_config)
            generator = torch.Generator("cpu").manual_seed(setting.sampler.seed + zlib.crc32(image_id.encode()))
            visited: list[int] = []

            def count_step(pipe, step, timestep, callback_kwargs):
                visited.append(int(timestep))
                return {}

            try:
                decoded = self.codec.decode(
                    stream,
                    self.pipeline,
                    num_inference_steps=setting.sampler.steps,
                    guidance_scale=setting.sampler.guidance,
                    max_timestep=setting.sampler.max_timestep,
                    generator=generator,
                    callback_on_step_end=count_step,
                )
            except ValueError as error:  # the pipeline rejects a sampler setting (e.g. no step <= max_timestep)
                raise EvaluationError(f"setting [{setting.label()}] cannot be sampled: {error}") from error
            decoded = np.asarray(decoded.convert("RGB"), dtype=np.uint8)
            if decoded.shape != image.shape:
                raise EvaluationError(f"{image_id}: decoded size {decoded.shape} differs from {image.shape}")
            folder = self.out / "images" / _safe_name(f"spic-{setting.label()}-{_digest(dataclasses.asdict(setting))}")
            return {
                "id": image_id,
                "setting": dataclasses.asdict(setting),
                "bpp": metrics.bpp_from_bytes(stream, *image.shape[:2]),
                "denoising_steps": len(visited),  # steps actually run (those at or below max_timestep)
                "timesteps": visited,
                "image": _save_png(self.out, folder / f"{_safe_name(image_id)}.png", decoded),
                "scores": _image_scores(image, decoded, self.lpips),
                "confusion": _confusion(self.segmenter, decoded, semantic),
            }

        return self._load_or_compute(self.record_path("spic", dataclasses.asdict(setting), image_id), compute)

    def original_record(self, image_id: str, image: np.ndarray, semantic: np.ndarray) -> dict:
        def compute() -> dict:
            return {"id": image_id, "confusion": _confusion(self.segmenter, image, semantic)}

        return self._load_or_compute(self.record_path("original", None, image_id), compute)

    # -- the whole run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        dataset = self.dataset
        count = len(dataset) if self.config.num_samples is None else min(self.config.num_samples, len(dataset))
        if count < 1:
            raise EvaluationError("no images to evaluate")
        settings = self.config.settings()
        rates = list(dict.fromkeys(s.rate for s in settings))
        per_rate: dict[RateSetting, list[dict]] = {rate: [] for rate in rates}
        per_setting: dict[EvalSetting, list[dict]] = {s: [] for s in settings}
        originals: list[dict] = []
        ids: list[str] = []
        jobs = count * (len(settings) + len(rates))
        with tqdm(total=jobs, desc="evaluating", disable=not self.config.show_progress) as bar:
            for index in range(count):
                image_id, image, semantic = example_arrays(dataset[index], index)
                if image_id in ids:
                    raise EvaluationError(f"duplicate image id {image_id!r}")
                ids.append(image_id)
                originals.append(self.original_record(image_id, image, semantic))
                for rate in rates:
                    per_rate[rate].append(self.rate_record(rate, image_id, image, semantic))
                    bar.update(1)
                for setting in settings:
                    per_setting[setting].append(self.spic_record(setting, image_id, image, semantic))
                    bar.update(1)
        real_images = lambda: (example_arrays(dataset[i], i)[:2] for i in range(count))  # noqa: E731
        rows = self.aggregate(settings, per_setting, per_rate, originals, real_images)
        results = {
            "config": _config_dict(self.config),
            "num_images": count,
            "skipped": self.skipped,
            "rows": rows,
        }
        write_outputs(self.out, results, per_setting, per_rate, dataset, count)
        return results

    # -- aggregation -----------------------------------------------------------------------------------

    def _extractor(self):
        """The Inception feature extractor (loaded once per process), or None when FID is unavailable."""
        if "fid" in self.skipped:
            return None
        path = self.config.inception_weights or metrics.inception_weights_cache_path()
        key = (os.path.abspath(path), self.config.fid_feature_dim)
        if key not in _INCEPTION_CACHE:
            try:
                _INCEPTION_CACHE[key] = metrics.load_inception(path, self.config.fid_feature_dim)
            except metrics.MetricUnavailable as error:
                self.skipped["fid"] = self.skipped["kid"] = str(error)
                return None
            stat = os.stat(path)
            _INCEPTION_CACHE[key].cache_key = _digest([key, stat.st_size, stat.st_mtime_ns])
        return _INCEPTION_CACHE[key]

    def _features_of(self, image: Callable[[], np.ndarray], cache: Path) -> np.ndarray:
        """Features of one image, cached next to it so that resumed runs skip the network."""
        if cache.is_file() and not self.config.force:
            return np.load(cache)
        features = metrics.FeatureSet(self._extractor()).extract(image())[0]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, features)
        return features

    def _real_features(self, real_images: Callable[[], Iterable[tuple[str, np.ndarray]]]) -> np.ndarray | None:
        extractor = self._extractor()
        if extractor is None:
            return None
        if not hasattr(self, "_real_feats"):
            folder = self.out / "features" / f"real-{extractor.cache_key}"
            rows = [self._features_of(lambda image=image: image, folder / f"{_safe_name(image_id)}.npy")
                    for image_id, image in real_images()]
            self._real_feats = np.stack(rows)
        return self._real_feats

    def _fid_kid(self, image_paths: list[str], real_images) -> dict[str, Any]:
        real = self._real_features(real_images)
        if real is None:
            return {}
        if len(image_paths) < 2 or len(real) < 2:
            self.skipped["fid"] = self.skipped["kid"] = "needs at least 2 images"
            return {}
        key = self._extractor().cache_key
        fake = np.stack([
            self._features_of(lambda path=path: _load_rgb(self.out, path), self.out / f"{path}.{key}.npy")
            for path in image_paths
        ])
        kid_mean, kid_std = metrics.kid_from_features(real, fake, num_subsets=100, subset_size=1000)
        return {"fid": metrics.fid_from_features(real, fake), "kid": kid_mean, "kid_std": kid_std}

    def _row(self, method: str, setting_label: str, entries: list[dict], real_images, extra: dict) -> dict:
        ok = [e for e in entries if "error" not in e]
        row: dict[str, Any] = {"method": method, "setting": setting_label, "n": len(ok), **extra}
        row["errors"] = len(entries) - len(ok)
        if not ok:
            return row
        row["bpp"] = float(np.mean([e["bpp"] for e in ok]))
        if "denoising_steps" in ok[0]:
            row["denoising_steps"] = float(np.mean([e["denoising_steps"] for e in ok]))
        for name in ("psnr", "ssim", "ms_ssim", "lpips"):
            values = [e["scores"][name] for e in ok if e["scores"].get(name) is not None]
            finite = [v for v in values if math.isfinite(v)]
            row[name] = float(np.mean(finite)) if finite else (math.inf if values else None)
        if ok[0].get("confusion") is not None:
            acc = metrics.ConfusionMatrix()
            for entry in ok:
                acc.merge(metrics.ConfusionMatrix.from_dict(entry["confusion"]))
            row["miou"] = acc.miou()
            row["pixel_accuracy"] = acc.pixel_accuracy()
            row["iou_per_class"] = [None if math.isnan(v) else v for v in acc.iou_per_class()]
        row.update(self._fid_kid([e["image"] for e in ok], real_images))
        return row

    def aggregate(self, settings, per_setting, per_rate, originals, real_images) -> list[dict]:
        rows = []
        if self.segmenter is not None:
            acc = metrics.ConfusionMatrix()
            for entry in originals:
                acc.merge(metrics.ConfusionMatrix.from_dict(entry["confusion"]))
            rows.append({"method": ORIGINAL, "setting": "uncompressed", "n": len(originals),
                         "miou": acc.miou(), "pixel_accuracy": acc.pixel_accuracy()})
        if any(e["scores"].get("ms_ssim") is None for records in per_setting.values() for e in records):
            self.skipped.setdefault("ms_ssim", f"images smaller than {metrics.ms_ssim_min_size()} px per side")
        for rate, records in per_rate.items():
            for setting in (s for s in settings if s.rate == rate):
                row = self._row(SPIC, setting.label(), per_setting[setting], real_images,
                                {"rate": dataclasses.asdict(rate), "sampler": dataclasses.asdict(setting.sampler)})
                for part in ("map", "coarse", "header"):
                    row[f"bpp_{part}"] = float(np.mean([r["bpp"][part] for r in records]))
                rows.append(row)
            if not self.config.baselines:
                continue
            methods = list(dict.fromkeys(m for r in records for m in r["methods"]))
            for method in methods:
                entries = [r["methods"][method] for r in records if method in r["methods"]]
                extra = {"rate": dataclasses.asdict(rate)}
                qualities = [e["quality"] for e in entries if "quality" in e]
                if qualities:
                    extra["quality_mean"] = float(np.mean(qualities))
                    extra["above_target"] = sum(bool(e.get("above_target")) for e in entries)
                rows.append(self._row(method, rate.label(), entries, real_images, extra))
        return rows


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """Non-finite floats -> None, so the JSON outputs stay standard JSON (no NaN/Infinity tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _config_dict(config: EvalConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


# ----------------------------------------------------------------------------------------------------------
# Outputs: JSON, Markdown, plots, sample grid
# ----------------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


TABLE_COLUMNS = (
    ("method", "Method", None),
    ("setting", "Setting", None),
    ("n", "N", None),
    ("bpp", "BPP", 4),
    ("bpp_map", "BPP map", 4),
    ("bpp_coarse", "BPP coarse", 4),
    ("denoising_steps", "Steps run", 1),
    ("miou", "mIoU", 3),
    ("pixel_accuracy", "Pix. acc.", 3),
    ("fid", "FID", 2),
    ("kid", "KID", 4),
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 3),
    ("ms_ssim", "MS-SSIM", 3),
    ("lpips", "LPIPS", 3),
)


def markdown_table(results: dict[str, Any]) -> str:
    """The aggregate rows as a Markdown table, followed by the reasons for skipped metrics."""
    lines = ["| " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if key in ("method", "setting") else "---:" for key, _, _ in TABLE_COLUMNS) + "|")
    for row in results["rows"]:
        cells = [_fmt(row.get(key), digits) if digits else _fmt(row.get(key)) for key, _, digits in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    text = [f"# SPIC evaluation ({results['num_images']} images)", "", *lines, ""]
    text.append("BPP of baselines: whole-image codec at the quality whose size is closest to SPIC's stream from below;"
                " coarse (bicubic): coarse image bytes plus the stream header. mIoU: set-level (summed intersections"
                " over summed unions, 19 classes, ignore excluded) of the segmenter's map of each image against the"
                " transmitted map.")
    if results["skipped"]:
        text += ["", "Skipped or unavailable:", ""]
        text += [f"- {name}: {reason}" for name, reason in sorted(results["skipped"].items())]
    above = [row for row in results["rows"] if row.get("above_target")]
    if above:
        text += ["", "Above the target rate even at the lowest quality: " + ", ".join(
            f"{r['method']} / {r['setting']}: {r['above_target']} image(s)" for r in above)]
    errors = [row for row in results["rows"] if row.get("errors")]
    if errors:
        text += ["", "Failures: " + ", ".join(f"{r['method']} / {r['setting']}: {r['errors']} image(s)" for r in errors)]
    return "\n".join(text) + "\n"


def plot_rate_curves(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Rate vs FID / mIoU / PSNR for SPIC (one curve per sampler) and each baseline method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("bpp") is not None]
    factors = {r["rate"]["downsample"] for r in rows if r["method"] == SPIC}
    written = []
    for metric, title in (("fid", "FID (lower is better)"), ("miou", "mIoU"), ("psnr", "PSNR [dB]")):
        series: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            value = row.get(metric)
            if value is None or not math.isfinite(value):
                continue
            name = row["method"]
            if row["method"] == SPIC:
                sampler = row["sampler"]
                name = f"SPIC {sampler['scheduler']} x{sampler['steps']}"
                if len(factors) > 1:
                    name += f" d={row['rate']['downsample']}"
            series.setdefault(name, []).append((row["bpp"], value))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for name, points in sorted(series.items()):
            points.sort()
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"rate_vs_{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    return written


def plot_sampler_sweep(results: dict[str, Any], out_dir: Path) -> str | None:
    """Quality against the number of sampling steps, one line per scheduler, at the base rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base_rate = results["config"]["rate"]
    rows = [r for r in results["rows"] if r["method"] == SPIC and r.get("rate") == base_rate]
    if len({(r["sampler"]["scheduler"], r["sampler"]["steps"]) for r in rows}) < 2:
        return None
    metrics_shown = [m for m in ("fid", "miou", "psnr") if any(r.get(m) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(metrics_shown), figsize=(4.5 * len(metrics_shown), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics_shown):
        by_scheduler: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            value = row.get(metric)
            if value is not None and math.isfinite(value):
                steps = row.get("denoising_steps", row["sampler"]["steps"])
                by_scheduler.setdefault(row["sampler"]["scheduler"], []).append((steps, value))
        for name, points in sorted(by_scheduler.items()):
            points.sort()
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel("denoising steps run (t <= max_timestep)")
        ax.set_ylabel(metric.upper() if metric != "miou" else "mIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "sampler_sweep.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def sample_grid(
    out: Path, dataset, count: int, spic_records: list[dict], rate_records: list[dict], path: Path,
    max_images: int = 4,
) -> str | None:
    """Rows of truth / colourised map / coarse (bicubic) / SPIC / first codec at the same rate, labelled;
    small images are enlarged (nearest neighbour) so that the grid stays readable."""
    from PIL import ImageDraw

    rows, titles = [], ["truth", "map", "coarse (bicubic)", "SPIC"]
    n = min(max_images, count, len(spic_records))
    for index in range(n):
        _, image, semantic = example_arrays(dataset[index], index)
        rate = rate_records[index]["methods"]
        panels = [image, colorize(semantic), _load_rgb(out, rate[COARSE_BASELINE]["image"]),
                  _load_rgb(out, spic_records[index]["image"])]
        codec_names = [m for m in rate if m != COARSE_BASELINE and "image" in rate[m]]
        if codec_names:
            panels.append(_load_rgb(out, rate[codec_names[0]]["image"]))
            if len(titles) == 4:
                titles.append(codec_names[0])
        rows.append(panels)
    if not rows:
        return None
    columns = max(len(r) for r in rows)
    height, width = rows[0][0].shape[:2]
    scale = max(1, 128 // height)
    height, width = height * scale, width * scale
    pad, header = 2, 14
    canvas = Image.new("RGB", (columns * (width + pad) - pad, header + n * (height + pad) - pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles[:columns]):
        draw.text((j * (width + pad) + 2, 1), title, fill=(0, 0, 0))
    for i, panels in enumerate(rows):
        for j, panel in enumerate(panels):
            tile = Image.fromarray(panel).resize((width, height), Image.NEAREST)
            canvas.paste(tile, (j * (width + pad), header + i * (height + pad)))
    canvas.save(path)
    return str(path)


def write_outputs(out: Path, results: dict[str, Any], per_setting, per_rate, dataset, count: int) -> None:
    settings = list(per_setting)
    base = settings[0]
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    results["plots"] = plot_rate_curves(results, plots)
    sweep = plot_sampler_sweep(results, plots)
    if sweep:
        results["plots"].append(sweep)
    results["sample_grid"] = sample_grid(
        out, dataset, count, per_setting[base], per_rate[base.rate], out / "sample_grid.png",
        results["config"]["grid_images"],
    )
    with open(out / "per_image.jsonl", "w") as handle:
        for setting, records in per_setting.items():
            for record in records:
                handle.write(json.dumps(_finite({"kind": "spic", **record}), default=_json_default) + "\n")
        for rate, records in per_rate.items():
            for record in records:
                handle.write(json.dumps(_finite({"kind": "rate", **record}), default=_json_default) + "\n")
    (out / "results.json").write_text(json.dumps(_finite(results), indent=2, default=_json_default, allow_nan=False))
    (out / "results.md").write_text(markdown_table(results))


def run_evaluation(config: EvalConfig, pipeline: Any = None, segmenter: Any = None) -> dict[str, Any]:
    """Evaluate SPIC and its baselines as ``config`` says; writes everything under ``config.output_dir``."""
    return Evaluator(config, pipeline=pipeline, segmenter=segmenter).run()


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


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
    parser.add_argument("--map_coder", default="context")
    parser.add_argument("--segmenter", default=None, help="transformers semantic-segmentation model (19 classes)")
    parser.add_argument("--scheduler", default="ddpm", choices=sorted(SCHEDULER_CLASSES))
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
    parser.add_argument("--grid_images", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--force", action="store_true", help="recompute everything and write into a foreign folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _quality(value: float | None):
    return None if value is None else (int(value) if float(value).is_integer() else float(value))


def config_from_args(args) -> EvalConfig:
    for name in ("steps", "downsample", "max_timestep"):
        if getattr(args, name) < 1:
            raise EvaluationError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.grid_images < 0:
        raise EvaluationError(f"--grid_images must be >= 0, got {args.grid_images}")
    if args.num_samples is not None and args.num_samples < 1:
        raise EvaluationError(f"--num_samples must be >= 1, got {args.num_samples}")
    rate = RateSetting(args.coarse_codec, _quality(args.coarse_quality), args.downsample, args.map_coder)
    sampler = SamplerSetting(args.scheduler, args.steps, args.guidance, args.max_timestep, args.seed)
    rate_sweep = []
    if args.sweep_qualities or args.sweep_downsample:
        qualities = (parse_number_list(args.sweep_qualities, float, "--sweep_qualities")
                     if args.sweep_qualities else [args.coarse_quality])
        factors = (parse_number_list(args.sweep_downsample, int, "--sweep_downsample")
                   if args.sweep_downsample else [args.downsample])
        rate_sweep = [RateSetting(args.coarse_codec, _quality(q), d, args.map_coder) for d in factors for q in qualities]
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
        baselines=not args.no_baselines,
        baseline_codecs=[c.strip() for c in args.baseline_codecs.split(",") if c.strip()] if args.baseline_codecs else None,
        inception_weights=args.inception_weights,
        fid_feature_dim=args.fid_feature_dim,
        lpips=not args.no_lpips,
        grid_images=args.grid_images,
        device=args.device,
        force=args.force,
        show_progress=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        results = run_evaluation(config)
    except EvaluationError as error:
        parser.error(str(error))
    print(markdown_table(results))
    print(f"results: {Path(config.output_dir) / 'results.json'}")
    return results
