"""What an evaluation run reads: the dataset split, the SPIC pipeline and the segmenter."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from .settings import EvalConfig, EvaluationError


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
    from ..codec import Segmenter

    try:
        segmenter = Segmenter.from_pretrained(path_or_id)
    except ValueError as error:
        raise EvaluationError(str(error)) from error
    segmenter.model.to(device)
    return segmenter


def spread_indices(length: int, count: int) -> list[int]:
    """``min(count, length)`` row indices evenly spaced over ``range(length)``, the first and the last included.

    Spread, not the first rows: video datasets such as CamVid store consecutive frames of one sequence together.
    The benchmarks pick their frames with this (``bench_codecs.py``'s README table: 24 of CamVid's test maps).
    """
    if length < 0 or count < 1:
        raise ValueError(f"need length >= 0 and count >= 1, got {length} and {count}")
    return [int(i) for i in np.linspace(0, length - 1, min(count, length)).astype(int)]


def image_ids(dataset, count: int) -> list[str]:
    """The ids of the first ``count`` rows (read from the ``id`` column alone), refusing duplicates."""
    column = dataset.select(range(count))["id"] if "id" in dataset.column_names else [None] * count
    ids = [str(value or f"{index:06d}") for index, value in enumerate(column)]
    seen: set[str] = set()
    for image_id in ids:
        if image_id in seen:
            raise EvaluationError(f"duplicate image id {image_id!r}")
        seen.add(image_id)
    return ids


def load_pipeline(config: EvalConfig, device: str):
    from ..pipelines.pipeline_spic import SPICPipeline

    try:
        pipe = SPICPipeline.from_pretrained(config.model)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"cannot load the SPIC pipeline {config.model!r}: {error}") from error
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_rates(config: EvalConfig) -> None:
    """Fail before any work for unknown or unusable codec names and qualities."""
    from .. import codec

    for rate in config.rates():
        if rate.map_coder not in codec.MAP_CODERS:
            raise EvaluationError(f"unknown map coder {rate.map_coder!r}; choose from {', '.join(codec.MAP_CODERS)}")
        if rate.downsample < 1:
            raise EvaluationError(f"downsample must be >= 1, got {rate.downsample}")
        try:
            coder = codec.get_coarse_codec(rate.coarse_codec, rate.coarse_quality)
            coder.encode(np.zeros((8, 8, 3), dtype=np.uint8))
        except (ValueError, codec.CodecUnavailableError) as error:
            raise EvaluationError(f"coarse codec setting [{rate.label()}]: {error}") from error
