"""CamVid (Cambridge driving sequences) in the project's `datasets` format, in Cityscapes train ids.

CamVid's 701 labelled frames (480x360, SegNet's 11-class version: ``train/ trainannot/ val/ valannot/
test/ testannot/``) are real street photographs with pixel labels. Converted here they have the same
columns as the Cityscapes converter's output (``image``, ``semantic_map`` in the 19 train ids with 255 =
ignore, ``city``, ``id``) plus ``sequence``, so training, evaluation and the codec take them unchanged.
``city`` holds the sequence name (``0001TP``, ``0006R0``, ``0016E5``, ``Seq05VD``): CamVid was filmed in
one city, and a Cityscapes-shaped reader finds its grouping key where it expects it.

The 11 CamVid classes map onto 11 of the 19 train ids (:data:`CAMVID_TO_TRAIN_ID`); wall, traffic light,
terrain, truck, bus, train, motorcycle and bicycle never occur, which is what a model trained on CamVid
knows (:data:`CAMVID_TRAIN_IDS`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..labels import (  # the CamVid label table lives with the Cityscapes one; re-exported here
    CAMVID_CLASSES as CAMVID_CLASSES,
    CAMVID_TO_CITYSCAPES as CAMVID_TO_CITYSCAPES,
    CAMVID_TO_TRAIN_ID as CAMVID_TO_TRAIN_ID,
    CAMVID_TRAIN_IDS as CAMVID_TRAIN_IDS,
    camvid_to_train_ids as camvid_to_train_ids,
    looks_like_camvid_annotation as looks_like_camvid_annotation,
)
from .cityscapes import (
    encode_png,
    generate_rows,
    parse_coarse_spec,
    push_dataset_to_hub,
    raise_cause,
    require_make_coarse,
    save_dataset_dict,
)
from .dataset_files import DatasetFileError, is_regular_file, open_dataset_image

# Split folder -> `datasets` split name.
CAMVID_SPLITS = {"train": "train", "val": "validation", "test": "test"}


class CamVidLayoutError(ValueError):
    """A CamVid folder is missing files, has unmatched files, or files that cannot be used."""


def sequence_of(frame_id: str) -> str:
    """The driving sequence a frame belongs to (``0016E5_07959`` -> ``0016E5``)."""
    match = re.match(r"^(.+?)_", frame_id)
    return match.group(1) if match else frame_id


@dataclass(frozen=True)
class CamVidRecord:
    """The image and annotation of one CamVid frame, matched by file name."""

    id: str
    sequence: str
    split: str
    image_path: str
    annotation_path: str


def find_camvid_files(root: str | os.PathLike, split: str) -> list[CamVidRecord]:
    """List one split's frames, pairing ``SPLIT/NAME.png`` with ``SPLITannot/NAME.png`` by name.

    Every image needs an annotation and every annotation an image; all problems are reported at once.
    """
    if split not in CAMVID_SPLITS:
        raise ValueError(f"unknown CamVid split {split!r}; choose from {sorted(CAMVID_SPLITS)}")
    root = Path(root).expanduser()
    image_dir, annot_dir = root / split, root / f"{split}annot"
    missing = [str(d) for d in (image_dir, annot_dir) if not d.is_dir()]
    if missing:
        raise CamVidLayoutError(f"missing CamVid folder(s): {', '.join(missing)}")
    images = {p.stem: p for p in sorted(image_dir.glob("*.png"))}
    annotations = {p.stem: p for p in sorted(annot_dir.glob("*.png"))}
    problems = [f"not a regular file (a FIFO, device, socket or folder): {p}"
                for p in [*images.values(), *annotations.values()] if not is_regular_file(p)]
    problems += [f"image without an annotation: {images[k]} (expected {annot_dir / (k + '.png')})"
                for k in sorted(set(images) - set(annotations))]
    problems += [f"annotation without an image: {annotations[k]} (expected {image_dir / (k + '.png')})"
                 for k in sorted(set(annotations) - set(images))]
    if not images:
        problems.append(f"no .png images under {image_dir}")
    if len(problems) == 1:  # one problem, one line
        raise CamVidLayoutError(f"CamVid split {split!r} under {root}: {problems[0]}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CamVidLayoutError(
            f"{len(problems)} problem(s) in CamVid split {split!r} under {root}:\n  " + "\n  ".join(shown)
        )
    return [
        CamVidRecord(id=k, sequence=sequence_of(k), split=split, image_path=str(images[k]),
                     annotation_path=str(annotations[k]))
        for k in sorted(images)
    ]  # fmt: skip


def _open(path: str) -> Image.Image:
    """A regular file, within the converters' pixel budget (read from its header), decoded."""
    try:
        return open_dataset_image(path)
    except DatasetFileError as error:
        raise CamVidLayoutError(str(error)) from error


def load_camvid_record(record: CamVidRecord) -> dict:
    """Read one frame: the RGB image (array) and its map in Cityscapes train ids, both checked."""
    image = _open(record.image_path)
    annotation = _open(record.annotation_path)
    if annotation.size != image.size:
        raise CamVidLayoutError(
            f"size mismatch: {record.annotation_path} is {annotation.size[0]}x{annotation.size[1]} but "
            f"{record.image_path} is {image.size[0]}x{image.size[1]}"
        )
    if annotation.mode not in ("L", "P", "I", "I;16"):
        raise CamVidLayoutError(
            f"{record.annotation_path}: expected a single-channel label PNG, got mode {annotation.mode}"
        )
    try:
        train_ids = camvid_to_train_ids(np.asarray(annotation), name=record.annotation_path)
    except ValueError as error:
        raise CamVidLayoutError(str(error)) from error
    return {"image": np.asarray(image.convert("RGB")), "semantic_map": train_ids}


def camvid_features(with_coarse: bool = False):
    """The Cityscapes converter's columns without instances, plus ``sequence``."""
    import datasets

    from .cityscapes import dataset_features  # noqa: PLC0415

    features = dict(dataset_features(with_instances=False, with_coarse=with_coarse))
    features["sequence"] = datasets.Value("string")
    return datasets.Features(features)


def _encode_camvid_record(record: CamVidRecord, coarse: tuple | None = None) -> dict:
    arrays = load_camvid_record(record)
    example = {
        "image": encode_png(arrays["image"]),
        "semantic_map": encode_png(arrays["semantic_map"]),
        "city": record.sequence,
        "id": record.id,
        "sequence": record.sequence,
    }
    if coarse is not None:
        from .transforms import resize_image  # noqa: PLC0415

        codec, quality, size, downsample = coarse
        resized = resize_image(arrays["image"], size) if size is not None else arrays["image"]
        made = require_make_coarse()(resized, downsample, codec, quality)
        example["coarse"] = encode_png(np.asarray(made, dtype=np.uint8))
    return example


def _generate_camvid(records: list[CamVidRecord], stamps: list, coarse: tuple | None, num_proc: int):
    del stamps  # in gen_kwargs only so that the cache fingerprint follows the files
    yield from generate_rows(_encode_camvid_record, records, num_proc, chunksize=4, coarse=coarse)


def _coarse_settings(precompute_coarse, coarse_image_size, coarse_downsample) -> tuple | None:
    if precompute_coarse is None:
        return None
    codec, quality = parse_coarse_spec(precompute_coarse)
    from ..codec import get_coarse_codec  # noqa: PLC0415

    get_coarse_codec(codec, quality).encode(np.zeros((16, 16, 3), np.uint8))  # unavailable codecs fail here
    size = None
    if coarse_image_size is not None:
        height, width = (int(v) for v in coarse_image_size)
        if height % coarse_downsample or width % coarse_downsample:
            raise ValueError(
                f"coarse_image_size {coarse_image_size} must be divisible by coarse_downsample {coarse_downsample}"
            )
        size = (height, width)
    return (codec, quality, size, int(coarse_downsample))


def build_camvid_dataset(
    root: str | os.PathLike,
    splits: Iterable[str] = ("train", "val", "test"),
    *,
    precompute_coarse: str | None = None,
    coarse_image_size: tuple[int, int] | None = None,
    coarse_downsample: int = 4,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Read a CamVid folder into a `DatasetDict` (``val`` becomes ``validation``).

    ``precompute_coarse`` (``CODEC:QUALITY``) adds a ``coarse`` column: the image (resized to
    `coarse_image_size` (H, W) when given) area-downsampled by `coarse_downsample` and coded.
    """
    import datasets
    from datasets.exceptions import DatasetGenerationError

    splits = [s.strip() for s in splits if s.strip()]
    unknown = [s for s in splits if s not in CAMVID_SPLITS]
    if unknown or not splits:
        raise ValueError(f"unknown CamVid split(s) {unknown or splits}; choose from {sorted(CAMVID_SPLITS)}")
    coarse = _coarse_settings(precompute_coarse, coarse_image_size, coarse_downsample)
    all_records = {split: find_camvid_files(root, split) for split in splits}  # every problem before any work
    features = camvid_features(with_coarse=coarse is not None)
    result = {}
    for split, records in all_records.items():
        stamps = [[(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in (r.image_path, r.annotation_path)]
                  for r in records]  # fmt: skip
        try:
            result[CAMVID_SPLITS[split]] = datasets.Dataset.from_generator(
                _generate_camvid,
                features=features,
                gen_kwargs={"records": records, "stamps": stamps, "coarse": coarse,
                            "num_proc": max(1, min(num_proc or 1, len(records)))},
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                split=datasets.NamedSplit(CAMVID_SPLITS[split]),
            )  # fmt: skip
        except DatasetGenerationError as error:
            raise_cause(error, (CamVidLayoutError,))
    return datasets.DatasetDict(result)


def convert_camvid(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    splits: Iterable[str] = ("train", "val", "test"),
    *,
    overwrite: bool = False,
    precompute_coarse: str | None = None,
    coarse_image_size: tuple[int, int] | None = None,
    coarse_downsample: int = 4,
    num_proc: int | None = None,
    push_to_hub: str | None = None,
    private: bool = True,
    token: str | None = None,
) -> Path:
    """Convert a CamVid folder to `save_to_disk` format in `output_dir`: complete, or not written at all."""
    output_dir = Path(output_dir).expanduser().absolute()
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    _coarse_settings(precompute_coarse, coarse_image_size, coarse_downsample)  # fail before reading anything

    def build(cache):
        return build_camvid_dataset(
            root, splits, precompute_coarse=precompute_coarse, coarse_image_size=coarse_image_size,
            coarse_downsample=coarse_downsample, num_proc=num_proc, cache_dir=cache,
        )  # fmt: skip

    save_dataset_dict(None, output_dir, overwrite=overwrite, build=build)
    if push_to_hub:
        push_dataset_to_hub(output_dir, push_to_hub, private=private, token=token)
    return output_dir


def write_fake_camvid(root: str | os.PathLike, counts: dict[str, int] | None = None, height: int = 36,
                      width: int = 48, seed: int = 0) -> Path:
    """Write a small CamVid-layout tree (images, 0..11 annotations, split lists) for tests and examples."""
    counts = counts or {"train": 3, "val": 1, "test": 2}
    root = Path(root)
    rng = np.random.default_rng(seed)
    sequences = ("0001TP", "0006R0", "0016E5", "Seq05VD")
    for split, count in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(count):
            name = f"{sequences[index % len(sequences)]}_{split}{index:05d}.png"
            annotation = np.zeros((height, width), np.uint8)
            annotation[: height // 3] = 0  # sky
            annotation[height // 3: 2 * height // 3] = 1  # building
            annotation[2 * height // 3:] = 3  # road
            annotation[2 * height // 3:, : width // 4] = 4  # pavement
            x = int(rng.integers(0, width - 6))
            annotation[height // 2: height - 2, x: x + 5] = 8  # a car
            annotation[0, 0] = 11  # unlabelled
            colours = rng.integers(0, 256, size=(12, 3), dtype=np.uint8)
            image = colours[annotation] + rng.integers(0, 8, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(annotation).save(root / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root
