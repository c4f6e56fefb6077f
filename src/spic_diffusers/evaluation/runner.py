"""The evaluation runner: per image, code and decode it with SPIC, score SPIC and the baselines, keep records.

For every image the transmitter codes the *transmitted map* (the dataset's map, or with
``transmit_map="segmenter"`` the segmenter's prediction on the original) and the coarse image; the pipeline
decodes the stream. Every candidate (SPIC, the upsampled coarse image, each codec at the matched rate) gets
PSNR, SSIM, MS-SSIM, LPIPS, boundary PSNR and region colour error against the original (boundaries and regions
of the dataset's map), and, with a segmenter, a confusion matrix of its prediction against the transmitted map
(``confusion``, the paper's mIoU) and against the dataset's map (``confusion_gt``).
"""

from __future__ import annotations

import dataclasses
import os
import time
import zlib
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .. import codec, metrics
from . import aggregate, report
from ..image_processing import upsample_bicubic
from .baselines import available_codecs, match_rate
from .distributed import Shard
from .inputs import check_rates, example_arrays, image_ids, load_eval_dataset, load_pipeline, load_segmenter
from .records import RecordStore, check_output_dir, prepare_output_dir, safe_name
from .settings import COARSE_BASELINE, MAP_ONLY, SAVED_SAMPLER, TRANSMIT_MAPS, EvalConfig, EvalSetting, EvaluationError
from .settings import RateSetting, SamplerSetting, digest, make_scheduler

_INCEPTION_CACHE: dict[tuple[str, int], torch.nn.Module] = {}


def image_scores(reference: np.ndarray, candidate: np.ndarray, truth_map: np.ndarray, lpips: Any) -> dict[str, Any]:
    per_class = metrics.region_colour_errors(reference, candidate, truth_map)
    scores: dict[str, Any] = {
        "psnr": metrics.psnr(reference, candidate),
        "boundary_psnr": metrics.masked_psnr(reference, candidate, metrics.boundary_mask(truth_map)),
        "region_colour_error": float(np.mean(list(per_class.values()))) if per_class else None,
    }
    for name, fn in (("ssim", metrics.ssim), ("ms_ssim", metrics.ms_ssim)):
        try:
            scores[name] = fn(reference, candidate)
        except metrics.MetricUnavailable:
            scores[name] = None
    scores["lpips"] = lpips(reference, candidate) if lpips is not None else None
    return scores


class Evaluator:
    """Runs one :class:`EvalConfig`; see :func:`run_evaluation`."""

    def __init__(self, config: EvalConfig, pipeline: Any = None, segmenter: Any = None):
        self.config = config
        if config.transmit_map not in TRANSMIT_MAPS:
            raise EvaluationError(f"transmit_map must be one of {TRANSMIT_MAPS}, got {config.transmit_map!r}")
        if config.transmit_map == "segmenter" and segmenter is None and not config.segmenter:
            raise EvaluationError("--transmit_map segmenter needs --segmenter")
        self.shard = Shard(config.device)
        check_rates(config)
        self.dataset = load_eval_dataset(config.dataset, config.split)
        self.pipeline = pipeline if pipeline is not None else load_pipeline(config, self.shard.device)
        self.base_scheduler = self.pipeline.scheduler
        self.base_scheduler_config = dict(self.pipeline.scheduler.config)
        self.segmenter = segmenter
        if self.segmenter is None and config.segmenter:
            self.segmenter = load_segmenter(config.segmenter, self.shard.device)
        # the classes mIoU is taken over: those the segmenter can predict (all 19 for a Cityscapes model)
        self.classes = sorted(getattr(self.segmenter, "known_classes", range(metrics.CITYSCAPES_NUM_CLASSES)))
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
        self.extractor = self._load_extractor()
        check_output_dir(config)  # every rank refuses the same folder; only the main one writes
        out = prepare_output_dir(config) if self.shard.is_main else config.output_dir
        self.shard.wait()
        self.store = RecordStore(out, config.identity(), config.force)
        self.out = self.store.out

    def _load_extractor(self):
        """The Inception feature extractor (loaded once per process), or None when FID is unavailable."""
        path = self.config.inception_weights or metrics.inception_weights_cache_path()
        key = (os.path.abspath(path), self.config.fid_feature_dim)
        if key not in _INCEPTION_CACHE:
            try:
                _INCEPTION_CACHE[key] = metrics.load_inception(path, self.config.fid_feature_dim)
            except metrics.MetricUnavailable as error:
                self.skipped["fid"] = self.skipped["kid"] = str(error)
                return None
            stat = os.stat(path)
            _INCEPTION_CACHE[key].cache_key = digest([key, stat.st_size, stat.st_mtime_ns])
        return _INCEPTION_CACHE[key]

    def _features(self, relative: str | None, image: np.ndarray | None = None, image_id: str = "") -> Any:
        if self.extractor is None:
            return None
        key = self.extractor.cache_key
        if relative is None:  # the original image
            cache = self.out / "features" / f"real-{key}" / f"{safe_name(image_id)}.npy"
        else:
            cache = self.out / f"{relative}.{key}.npy"
        source = (lambda: image) if image is not None else (lambda: self.store.load_rgb(relative))
        return self.store.features(cache, source, lambda x: metrics.FeatureSet(self.extractor).extract(x)[0])

    # -- scores of one candidate -----------------------------------------------------------------------

    def _confusions(self, candidate: np.ndarray, transmitted: np.ndarray, truth: np.ndarray,
                    prediction: np.ndarray | None = None) -> dict[str, Any]:
        if self.segmenter is None:
            return {"confusion": None, "confusion_gt": None}
        prediction = self.segmenter(candidate) if prediction is None else prediction
        out = {}
        for name, target in (("confusion", transmitted), ("confusion_gt", truth)):
            target = np.where(np.isin(target, self.classes), target, metrics.IGNORE_INDEX)
            out[name] = metrics.ConfusionMatrix().update(prediction, target).to_dict()
        return out

    def _candidate(self, image, candidate, maps, relative: str) -> dict[str, Any]:
        transmitted, truth = maps
        return {"image": relative, "scores": image_scores(image, candidate, truth, self.lpips),
                **self._confusions(candidate, transmitted, truth)}

    # -- records of one image --------------------------------------------------------------------------

    @staticmethod
    def _stream(rate: RateSetting, image: np.ndarray, transmitted: np.ndarray, streams: dict) -> bytes:
        """The SPIC stream of one image at one rate, coded once per image (its records share it)."""
        if rate not in streams:
            streams[rate] = codec.encode(image, transmitted, coarse_codec=rate.coarse_codec,
                                         coarse_quality=rate.coarse_quality, downsample=rate.downsample,
                                         map_coder=rate.map_coder)
        return streams[rate]

    def _folder(self, kind: str, setting: Any, label: str):
        return self.out / "images" / safe_name(f"{kind}-{label}-{digest(dataclasses.asdict(setting))}")

    def rate_record(self, rate: RateSetting, image_id: str, image: np.ndarray, maps, streams: dict,
                    encodes: dict | None = None) -> dict:
        """Stream sizes, the coarse baseline and the codec baselines of one image at one rate setting. ``encodes``
        ({codec: {quality index: stream}}) carries the baselines' encodes of this image from one rate to the next."""

        def compute() -> dict:
            stream = self._stream(rate, image, maps[0], streams)
            breakdown = codec.bpp_breakdown(stream)
            start = time.perf_counter()
            parts = codec.decode_parts(stream)
            height, width = maps[0].shape
            coarse_up = upsample_bicubic(np.asarray(parts.coarse_image, dtype=np.uint8), height, width)
            seconds = time.perf_counter() - start  # the whole stream's decode: map and coarse image
            if not np.array_equal(np.asarray(parts.semantic_map), maps[0]):
                raise EvaluationError(f"{image_id}: the semantic map did not survive coding losslessly")
            path = self.store.save_png(
                self._folder("rate", rate, rate.label()) / "coarse" / f"{safe_name(image_id)}.png", coarse_up
            )
            coarse_bytes = breakdown["bytes"]["coarse"] + breakdown["bytes"]["header"]
            coarse = {**self._candidate(image, coarse_up, maps, path), "bpp": 8.0 * coarse_bytes / (height * width),
                      "seconds": seconds}
            return {"id": image_id, "rate": dataclasses.asdict(rate), "bytes": breakdown["bytes"],
                    "bpp": breakdown["bpp"], "methods": {COARSE_BASELINE: coarse}}

        record = self.store.load_or_compute(self.store.path("rate", dataclasses.asdict(rate), image_id), compute)
        if self.config.map_only:
            record["methods"][MAP_ONLY] = self.map_only_record(rate, image_id, image, maps, streams)
        for name in self.baseline_codecs:
            record["methods"][f"{name} (same rate)"] = self.baseline_record(
                rate, name, image_id, image, maps, record["bytes"]["total"],
                None if encodes is None else encodes.setdefault(name, {}))
        return record

    def baseline_record(self, rate: RateSetting, name: str, image_id: str, image, maps, target: int,
                        encodes: dict | None = None) -> dict:
        """Whole-image coding with codec ``name`` at the rate of SPIC's stream (``target`` bytes)."""

        def compute() -> dict:
            try:
                matched = match_rate(name, image, target, encodes)
            except Exception as error:  # one codec failing on one image must not stop the run
                return {"error": f"{type(error).__name__}: {error}"}
            decoded = matched.pop("decoded")
            path = self.store.save_png(self._folder("rate", rate, rate.label()) / name / f"{safe_name(image_id)}.png",
                                       decoded)
            return {**self._candidate(image, decoded, maps, path),
                    "bpp": metrics.bpp_from_bytes(matched["bytes"], *image.shape[:2]), "quality": matched["quality"],
                    "above_target": matched["above_target"], "target_bytes": target, "seconds": matched["seconds"]}

        key = {"rate": dataclasses.asdict(rate), "codec": name, "target": target}
        return self.store.load_or_compute(self.store.path("baseline", key, image_id), compute)

    def _under_other_map_coder(self, kind: str, key_of: Callable[[str], Any], image_id: str,
                               map_coder: str) -> tuple[str, dict] | None:
        """A stored record of the same decode made with another map coder, as (that coder, its record). The map is
        coded losslessly, so the receiver gets the same map and draws the same image; only the rate differs. A run
        that compares map coders, or follows a change of the default one, thus never repeats a diffusion decode."""
        for other in codec.MAP_CODERS:
            if other != map_coder:
                record = self.store.load(self.store.path(kind, key_of(other), image_id))
                if record is not None:
                    return other, record
        return None

    def _map_decode_seconds(self, rate: RateSetting, image: np.ndarray, transmitted: np.ndarray,
                            streams: dict) -> float:
        """Wall seconds to take one stream's parts apart (the map and the coarse image), best of two runs."""
        stream = self._stream(rate, image, transmitted, streams)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            codec.decode_parts(stream)
            times.append(time.perf_counter() - start)
        return min(times)

    def spic_record(self, setting: EvalSetting, image_id: str, image: np.ndarray, maps, streams: dict) -> dict:
        def key_of(map_coder: str) -> dict:
            rate = dataclasses.replace(setting.rate, map_coder=map_coder)
            return dict(dataclasses.asdict(dataclasses.replace(setting, rate=rate)), unet_dtype=self.config.unet_dtype)

        def compute() -> dict:
            stream = self._stream(setting.rate, image, maps[0], streams)
            found = self._under_other_map_coder("spic", key_of, image_id, setting.rate.map_coder)
            if found is not None:  # the same image: take its scores, with this coder's rate and map decode time
                other, record = found
                change = self._map_decode_seconds(setting.rate, image, maps[0], streams) - self._map_decode_seconds(
                    dataclasses.replace(setting.rate, map_coder=other), image, maps[0], streams)
                return {**record, "setting": dataclasses.asdict(setting),
                        "bpp": metrics.bpp_from_bytes(stream, *image.shape[:2]),
                        "seconds": record["seconds"] + change, "decoded_with_map_coder": other}
            decoded, visited, seconds = self._sample(setting.sampler, image_id, setting.label(),
                                                     lambda **kwargs: codec.decode(stream, self.pipeline, **kwargs))
            if decoded.shape != image.shape:
                raise EvaluationError(f"{image_id}: decoded size {decoded.shape} differs from {image.shape}")
            path = self.store.save_png(self._folder("spic", setting, setting.label()) / f"{safe_name(image_id)}.png",
                                       decoded)
            return {"id": image_id, "setting": dataclasses.asdict(setting),
                    **self._candidate(image, decoded, maps, path),
                    "bpp": metrics.bpp_from_bytes(stream, *image.shape[:2]),
                    "denoising_steps": len(visited),  # steps actually run (those at or below max_timestep)
                    "timesteps": visited, "seconds": seconds}

        return self.store.load_or_compute(self.store.path("spic", key_of(setting.rate.map_coder), image_id), compute)

    def _sample(self, sampler: SamplerSetting, image_id: str, label: str, call) -> tuple[np.ndarray, list, float]:
        """Run one decode (`call(**sampling kwargs)`) with a sampler setting: (RGB uint8, timesteps visited, wall
        seconds of the whole decode). The "saved" sampler keeps the pipeline's own scheduler, schedule and guidance."""
        if sampler.scheduler == SAVED_SAMPLER:
            self.pipeline.scheduler = self.base_scheduler
            kwargs = {}
        else:
            self.pipeline.scheduler = make_scheduler(sampler.scheduler, self.base_scheduler_config)
            kwargs = {"num_inference_steps": sampler.steps, "guidance_scale": sampler.guidance}
        if self.config.unet_dtype is not None:
            kwargs["unet_dtype"] = self.config.unet_dtype
        generator = torch.Generator("cpu").manual_seed(sampler.seed + zlib.crc32(image_id.encode()))
        visited: list[int] = []

        def count_step(pipe, step, timestep, callback_kwargs):
            visited.append(int(timestep))
            return {}

        start = time.perf_counter()
        try:
            decoded = call(max_timestep=sampler.max_timestep, generator=generator, callback_on_step_end=count_step,
                           **kwargs)
        except ValueError as error:  # the pipeline rejects a sampler setting (e.g. no step <= max_timestep)
            raise EvaluationError(f"setting [{label}] cannot be sampled: {error}") from error
        seconds = time.perf_counter() - start
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8), visited, seconds

    def map_only_record(self, rate: RateSetting, image_id: str, image: np.ndarray, maps, streams: dict) -> dict:
        """SPIC without its coarse image: the receiver decodes the transmitted map with a flat mid-grey coarse image
        (what is left when the coarse payload is dropped). Its rate is the map's and the header's bytes alone."""
        sampler = self.config.sampler

        def key_of(map_coder: str) -> dict:
            return {"sampler": dataclasses.asdict(sampler), "map_coder": map_coder, "downsample": rate.downsample,
                    "unet_dtype": self.config.unet_dtype}

        def compute() -> dict:
            stream = self._stream(rate, image, maps[0], streams)
            breakdown = codec.bpp_breakdown(stream)
            map_bytes = breakdown["bytes"]["map"] + breakdown["bytes"]["header"]
            found = self._under_other_map_coder("map-only", key_of, image_id, rate.map_coder)
            if found is not None:  # the same image (its time is the pipeline's alone): only the rate differs
                return {**found[1], "bpp": metrics.bpp_from_bytes(map_bytes, *image.shape[:2]),
                        "decoded_with_map_coder": found[0]}
            parts = codec.decode_parts(stream)
            flat = np.full_like(np.asarray(parts.coarse_image, dtype=np.uint8), 128)
            label = f"{MAP_ONLY}, {sampler.label()}"
            decoded, visited, seconds = self._sample(
                sampler, image_id, label,
                lambda **kwargs: self.pipeline(parts.semantic_map, flat, output_type="pil", **kwargs).images[0])
            path = self.store.save_png(self._folder("map-only", sampler, rate.map_coder) / f"{safe_name(image_id)}.png",
                                       decoded)
            return {**self._candidate(image, decoded, maps, path),
                    "bpp": metrics.bpp_from_bytes(map_bytes, *image.shape[:2]),
                    "denoising_steps": len(visited), "seconds": seconds}

        return self.store.load_or_compute(self.store.path("map-only", key_of(rate.map_coder), image_id), compute)

    def original_record(self, image_id: str, image: np.ndarray, truth: np.ndarray) -> dict:
        """The segmenter on the original image: its map (transmitted with ``transmit_map="segmenter"``)."""

        def compute() -> dict:
            record: dict[str, Any] = {"id": image_id}
            if self.segmenter is not None:
                prediction = self.segmenter(image)
                record["prediction"] = self.store.save_png(
                    self.out / "images" / "segmenter" / f"{safe_name(image_id)}.png", prediction)
                transmitted = prediction if self.config.transmit_map == "segmenter" else truth
                record.update(self._confusions(image, transmitted, truth, prediction))
            return record

        return self.store.load_or_compute(self.store.path("original", None, image_id), compute)

    def evaluate_image(self, index: int) -> dict[str, Any]:
        """Every record of one image, and the Inception features of the original and of each candidate."""
        image_id, image, truth = example_arrays(self.dataset[index], index)
        original = self.original_record(image_id, image, truth)
        transmitted = truth
        if self.config.transmit_map == "segmenter":
            transmitted = np.asarray(Image.open(self.out / original["prediction"]), dtype=np.uint8)
        maps, streams, encodes = (transmitted, truth), {}, {}
        rates = [self.rate_record(rate, image_id, image, maps, streams, encodes) for rate in self.config.rates()]
        spic = [self.spic_record(setting, image_id, image, maps, streams) for setting in self.config.settings()]
        candidates = [m for r in rates for m in r["methods"].values()] + spic
        features = {c["image"]: self._features(c["image"]) for c in candidates if "image" in c}
        return {"index": index, "id": image_id, "original": original, "rates": rates, "spic": spic,
                "features": features, "real_features": self._features(None, image, image_id)}

    # -- the whole run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        """Evaluate this process's share of the images; the main process gathers, aggregates and writes."""
        from tqdm.auto import tqdm

        count = len(self.dataset)
        if self.config.num_samples is not None:
            count = min(self.config.num_samples, count)
        if count < 1:
            raise EvaluationError("no images to evaluate")
        image_ids(self.dataset, count)
        mine = self.shard.indices(count)
        if self.shard.world > 1:
            print(f"rank {self.shard.rank} of {self.shard.world}: {len(mine)} of {count} images", flush=True)
        local: list[dict] = []
        try:
            for index in tqdm(mine, desc="evaluating", disable=not (self.config.show_progress and self.shard.is_main)):
                local.append(self.evaluate_image(index))
        except EvaluationError as error:  # tell the other processes instead of leaving them waiting
            local = [{"error": str(error)}]
        bundles = self.shard.gather(local)
        failed = [b["error"] for b in bundles if "error" in b]
        if failed:
            raise EvaluationError(failed[0])
        if not self.shard.is_main:
            self.shard.wait()
            return None
        bundles.sort(key=lambda bundle: bundle["index"])
        results = aggregate.results(self, bundles, count)
        report.write_outputs(self.store, results, self.config, bundles, self.dataset)
        self.shard.wait()
        return results


def run_evaluation(config: EvalConfig, pipeline: Any = None, segmenter: Any = None) -> dict[str, Any] | None:
    """Evaluate SPIC and its baselines as ``config`` says; writes everything under ``config.output_dir``.

    Under ``accelerate launch`` with several processes, each evaluates its share of the images and the main
    process writes the same outputs a single process would; it returns the results there, None elsewhere.
    """
    return Evaluator(config, pipeline=pipeline, segmenter=segmenter).run()
