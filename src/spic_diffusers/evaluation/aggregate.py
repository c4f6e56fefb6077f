"""From per-image records to one row per (method, setting): means, set-level mIoU, FID/KID over the set.

mIoU is the paper's set-level measure: per-class intersections and unions are summed over all images
before each class's IoU is taken, and classes whose union is empty over the set are left out of the mean.
So a segmenter that knows only some of the 19 classes is measured on those (the runner ignores target
pixels of the classes it cannot predict).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from .. import metrics
from .records import json_default
from .settings import ORIGINAL, SPIC, EvalConfig

MEAN_SCORES = ("psnr", "boundary_psnr", "region_colour_error", "ssim", "ms_ssim", "lpips")


def config_dict(config: EvalConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=json_default))


def _set_level(entries: list[dict], key: str) -> metrics.ConfusionMatrix | None:
    matrices = [e.get(key) for e in entries]
    if not matrices or any(m is None for m in matrices):
        return None
    total = metrics.ConfusionMatrix()
    for matrix in matrices:
        total.merge(metrics.ConfusionMatrix.from_dict(matrix))
    return total


def segmentation_scores(entries: list[dict]) -> dict[str, Any]:
    """mIoU and pixel accuracy against the transmitted map, and mIoU against the dataset's map."""
    out: dict[str, Any] = {}
    transmitted, truth = _set_level(entries, "confusion"), _set_level(entries, "confusion_gt")
    if transmitted is not None:
        out["miou"] = transmitted.miou()
        out["pixel_accuracy"] = transmitted.pixel_accuracy()
        out["iou_per_class"] = [None if math.isnan(v) else v for v in transmitted.iou_per_class()]
    if truth is not None:
        out["miou_gt"] = truth.miou()
    return out


class FidKid:
    """FID/KID of a set of candidate images against the originals, from gathered features."""

    def __init__(self, bundles: list[dict], skipped: dict[str, str]):
        self.skipped = skipped
        self.features = {path: f for bundle in bundles for path, f in bundle["features"].items()}
        real = [bundle["real_features"] for bundle in bundles]
        self.real = None if "fid" in skipped or any(f is None for f in real) else np.stack(real)

    def __call__(self, image_paths: list[str]) -> dict[str, Any]:
        if self.real is None:
            return {}
        if len(image_paths) < 2 or len(self.real) < 2:
            self.skipped["fid"] = self.skipped["kid"] = "needs at least 2 images"
            return {}
        fake = np.stack([self.features[path] for path in image_paths])
        kid_mean, kid_std = metrics.kid_from_features(self.real, fake, num_subsets=100, subset_size=1000)
        return {"fid": metrics.fid_from_features(self.real, fake), "kid": kid_mean, "kid_std": kid_std}


def row(method: str, setting_label: str, entries: list[dict], fid_kid: FidKid, extra: dict) -> dict:
    ok = [e for e in entries if "error" not in e]
    out: dict[str, Any] = {"method": method, "setting": setting_label, "n": len(ok), **extra}
    out["errors"] = len(entries) - len(ok)
    if not ok:
        return out
    out["bpp"] = float(np.mean([e["bpp"] for e in ok]))
    if "denoising_steps" in ok[0]:
        out["denoising_steps"] = float(np.mean([e["denoising_steps"] for e in ok]))
    timed = [e["seconds"] for e in ok if e.get("seconds") is not None]
    if timed:
        out["seconds"] = float(np.mean(timed))  # decode time per image
    for name in MEAN_SCORES:
        values = [e["scores"][name] for e in ok if e["scores"].get(name) is not None]
        finite = [v for v in values if math.isfinite(v)]
        out[name] = float(np.mean(finite)) if finite else (math.inf if values else None)
    out.update(segmentation_scores(ok))
    out.update(fid_kid([e["image"] for e in ok]))
    return out


def results(evaluator, bundles: list[dict], count: int) -> dict[str, Any]:
    """The aggregate results of a run from every image's bundle (in dataset order)."""
    config: EvalConfig = evaluator.config
    skipped = dict(evaluator.skipped)
    settings, rates = config.settings(), config.rates()
    fid_kid = FidKid(bundles, skipped)
    rows = []
    if evaluator.segmenter is not None:
        rows.append({"method": ORIGINAL, "setting": "uncompressed", "n": len(bundles),
                     **segmentation_scores([b["original"] for b in bundles])})
        rows[-1].pop("iou_per_class", None)
    if any(e["scores"].get("ms_ssim") is None for b in bundles for e in b["spic"]):
        skipped.setdefault("ms_ssim", f"images smaller than {metrics.ms_ssim_min_size()} px per side")
    for r, rate in enumerate(rates):
        records = [b["rates"][r] for b in bundles]
        for s, setting in enumerate(settings):
            if setting.rate != rate:
                continue
            extra = {"rate": dataclasses.asdict(rate), "sampler": dataclasses.asdict(setting.sampler)}
            spic = row(SPIC, setting.label(), [b["spic"][s] for b in bundles], fid_kid, extra)
            for part in ("map", "coarse", "header"):
                spic[f"bpp_{part}"] = float(np.mean([record["bpp"][part] for record in records]))
            rows.append(spic)
        if not config.baselines:
            continue
        for method in dict.fromkeys(m for record in records for m in record["methods"]):
            entries = [record["methods"][method] for record in records if method in record["methods"]]
            extra = {"rate": dataclasses.asdict(rate)}
            qualities = [e["quality"] for e in entries if "quality" in e]
            if qualities:
                extra["quality_mean"] = float(np.mean(qualities))
                extra["above_target"] = sum(bool(e.get("above_target")) for e in entries)
            rows.append(row(method, rate.label(), entries, fid_kid, extra))
    return {"config": config_dict(config), "num_images": count, "skipped": skipped, "rows": rows}
