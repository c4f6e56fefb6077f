"""What one evaluation run is: the rate and sampler settings, the sweeps, and the whole configuration."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..codec.coarse import DEFAULT_COARSE_CODEC
from ..codec.map_coders import DEFAULT_MAP_CODER
from ..pipelines.schedulers import SCHEDULER_CLASSES, scheduler_from_name

SPIC = "SPIC"
MAP_ONLY = "SPIC, map only"
COARSE_BASELINE = "coarse (bicubic)"
SAVED_SAMPLER = "saved"  # the pipeline's own scheduler, timesteps and guidance (a distilled student's schedule)
ORIGINAL = "original"
TRANSMIT_MAPS = ("ground_truth", "segmenter")
# Bumped when records gain or change fields, so that a resumed run does not mix old and new records.
RECORD_FORMAT = 2


class EvaluationError(ValueError):
    """Bad evaluation input: unknown names, unusable output folder, inconsistent data."""


@dataclass(frozen=True)
class RateSetting:
    """What fixes the bitstream (and so the rate) of one image."""

    coarse_codec: str = DEFAULT_COARSE_CODEC
    coarse_quality: float | int | None = None
    downsample: int = 4
    map_coder: str = DEFAULT_MAP_CODER

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
        if self.scheduler == SAVED_SAMPLER:
            return "saved schedule"
        return f"{self.scheduler} x{self.steps} g={self.guidance:g}"


@dataclass(frozen=True)
class EvalSetting:
    rate: RateSetting = field(default_factory=RateSetting)
    sampler: SamplerSetting = field(default_factory=SamplerSetting)

    def label(self) -> str:
        return f"{self.rate.label()}, {self.sampler.label()}"


def digest(payload: Any) -> str:
    """A short stable hash of a JSON-able payload (names record folders and caches)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def check_scheduler_name(name: str) -> None:
    if name != SAVED_SAMPLER and name not in SCHEDULER_CLASSES:
        raise EvaluationError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULER_CLASSES)} or "
                              f"{SAVED_SAMPLER!r} (the pipeline's own)")


def make_scheduler(name: str, base_config: Any):
    """A diffusers scheduler of the short ``name`` built from the pipeline's scheduler config."""
    check_scheduler_name(name)
    return scheduler_from_name(name, base_config)


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
    # what the transmitter codes: the dataset's map, or the segmenter's prediction on the original
    transmit_map: str = "ground_truth"
    baselines: bool = True
    baseline_codecs: list[str] | None = None  # None: every available codec
    inception_weights: str | None = None
    fid_feature_dim: int = 2048
    lpips: bool = True
    grid_images: int = 4
    # also decode each image from its map alone (a flat grey coarse image, no coarse bytes): the map-only ablation
    map_only: bool = False
    unet_dtype: str | None = None  # None: the pipeline's default (a student's saved dtype where it pays)
    device: str = "cpu"
    force: bool = False
    show_progress: bool = True

    def settings(self) -> list[EvalSetting]:
        """Base setting, rate sweep at the base sampler, sampler sweep at the base rate (deduplicated)."""
        out = [EvalSetting(self.rate, self.sampler)]
        out += [EvalSetting(rate, self.sampler) for rate in self.rate_sweep]
        out += [EvalSetting(self.rate, sampler) for sampler in self.sampler_sweep]
        return list(dict.fromkeys(out))

    def rates(self) -> list[RateSetting]:
        return list(dict.fromkeys(s.rate for s in self.settings()))

    def identity(self) -> dict[str, Any]:
        """What makes stored records reusable: same model, data, segmenter and transmitted map (local
        folders are fingerprinted by their files' sizes and modification times, so a retrained model is
        not reused)."""
        from .. import __version__

        return {
            "spic_diffusers": __version__,
            "record_format": RECORD_FORMAT,
            "model": [self.model, fingerprint(self.model)],
            "dataset": [self.dataset, fingerprint(self.dataset)],
            "split": self.split,
            "segmenter": [self.segmenter, fingerprint(self.segmenter)],
            "transmit_map": self.transmit_map,
        }


def fingerprint(path: str | None) -> str | None:
    """Sizes and modification times of a local folder's files. Markdown is left out: a model card written after an
    evaluation (``operating_point_table.py --paper_card``) changes nothing the model decodes."""
    if not path or not os.path.exists(path):
        return None  # a Hub id (or nothing): its name is the identity
    entries = []
    for root, _, files in os.walk(path):
        for name in sorted(files):
            if name.lower().endswith(".md"):
                continue
            stat = os.stat(os.path.join(root, name))
            entries.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    return digest(sorted(entries))
