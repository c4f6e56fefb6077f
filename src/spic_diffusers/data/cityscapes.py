"""The conversion of a Cityscapes download into a `datasets.DatasetDict`.

The label table (train ids, names, colours) lives in `spic_diffusers.labels` and is re-exported here.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import datasets

from .dataset_files import DatasetFileError, open_dataset_image, read_regular_file
from ..labels import (  # noqa: F401  (re-exported: the label table used to live here)
    NUM_CLASSES,
    IGNORE_INDEX,
    CityscapesLabel,
    CITYSCAPES_LABELS,
    LABELS_BY_NAME,
    LABELS_BY_ID,
    TRAIN_LABELS,
    ID2LABEL,
    LABEL2ID,
    TRAIN_ID_COLORS,
    TRAIN_ID_TO_LABEL_ID,
    INSTANCE_LABEL_IDS,
    LABEL_ID_TO_TRAIN_ID_LUT,
    label_ids_to_train_ids,
    train_ids_to_label_ids,
    validate_train_ids,
    train_ids_to_color,
    color_to_train_ids,
    id2label_json,
)

# Cityscapes split folder -> `datasets` split name (Hub convention).
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
COLOR_SUFFIX = "_gtFine_color.png"


# --------------------------------------------------------------------------------------------
# The `datasets` format
# --------------------------------------------------------------------------------------------


def dataset_features(with_instances: bool = True, with_coarse: bool = False):
    """The columns shared by the converter and the synthetic generator."""
    import datasets

    columns = {
        "image": datasets.Image(mode="RGB"),
        "semantic_map": datasets.Image(mode="L"),
    }
    if with_instances:
        columns["instance_map"] = datasets.Image(mode="I")
    if with_coarse:
        columns["coarse"] = datasets.Image(mode="RGB")
    columns["city"] = datasets.Value("string")
    columns["id"] = datasets.Value("string")
    return datasets.Features(columns)


def encode_png(array: np.ndarray) -> dict:
    """PNG-encode an image array losslessly as a `datasets.Image` value.

    uint8 [H, W] -> 8-bit grey, uint8 [H, W, 3] -> RGB, integer maps up to 65535 -> 16-bit grey
    (Cityscapes instance ids fit; Pillow cannot write 32-bit PNGs).
    """
    array = np.asarray(array)
    if array.ndim == 2 and array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError("integer maps must lie in 0..65535 to be stored as 16-bit PNG")
        image = Image.fromarray(array.astype(np.uint16))
    elif array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        image = Image.fromarray(array)
    else:
        raise ValueError(f"cannot PNG-encode an array of shape {array.shape} and dtype {array.dtype}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def parse_coarse_spec(spec: str) -> tuple[str, float | int]:
    """Parse ``CODEC:QUALITY`` (e.g. ``hevc:30``) for precomputed coarse images."""
    codec, sep, quality = spec.partition(":")
    if not sep or not codec or not quality:
        raise ValueError(f"coarse spec must look like CODEC:QUALITY (e.g. hevc:30), got {spec!r}")
    try:
        value: float | int = int(quality)
    except ValueError:
        try:
            value = float(quality)
        except ValueError:
            raise ValueError(f"coarse quality must be a number, got {quality!r} in {spec!r}") from None
    return codec, value


def check_coarse_spec(spec: str) -> tuple[str, float | int]:
    """Parse ``CODEC:QUALITY`` and check that the codec runs here, so an unavailable codec stops a conversion
    before any work, in one line (`codec.CodecUnavailableError`: what is missing and how to get it)."""
    codec, quality = parse_coarse_spec(spec)
    require_make_coarse()
    from ..codec import select_coarse_codec  # noqa: PLC0415

    select_coarse_codec(codec, quality, fallback=False)
    return codec, quality


def require_make_coarse():
    """Return `spic_diffusers.codec.make_coarse`, or raise ImportError saying which option needs it."""
    try:
        from ..codec import make_coarse  # noqa: PLC0415
    except ImportError as error:
        raise ImportError(
            "precomputing coarse images needs `spic_diffusers.codec.make_coarse`, which could not be "
            f"imported ({error}); convert without --precompute_coarse, or install a version of "
            "spic-diffusers that includes the codec module"
        ) from error
    return make_coarse


# --------------------------------------------------------------------------------------------
# Reading the official folder layout
# --------------------------------------------------------------------------------------------


class CityscapesLayoutError(ValueError):
    """A Cityscapes folder is missing files, has unmatched files or inconsistent files."""


@dataclass(frozen=True)
class CityscapesRecord:
    """The files of one Cityscapes frame, matched by id."""

    id: str
    city: str
    split: str
    image_path: str
    label_ids_path: str | None
    train_ids_path: str | None
    instance_ids_path: str | None


_GT_SUFFIXES = {
    LABEL_IDS_SUFFIX: "label_ids",
    TRAIN_IDS_SUFFIX: "train_ids",
    INSTANCE_IDS_SUFFIX: "instance_ids",
}


def _format_problems(problems: Sequence[str], limit: int = 20) -> str:
    lines = list(problems[:limit])
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "\n  ".join(lines)


def _city_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


def find_cityscapes_files(
    root: str | os.PathLike, split: str, *, with_instances: bool = True
) -> list[CityscapesRecord]:
    """List the frames of one split, matching images and ground truth by frame id.

    Matching is by id (``aachen_000000_000019``), never by listing order. Every image needs a
    label map (``_labelTrainIds.png`` or ``_labelIds.png``) and, with `with_instances`, an
    instance map; every ground-truth file needs an image. All problems are reported at once.
    """
    root = Path(root).expanduser()
    image_root = root / "leftImg8bit" / split
    gt_root = root / "gtFine" / split
    for folder in (image_root, gt_root):
        if not folder.is_dir():
            raise CityscapesLayoutError(f"missing Cityscapes folder: {folder}")

    problems: list[str] = []
    images: dict[str, tuple[str, Path]] = {}
    for city_dir in _city_dirs(image_root):
        for path in sorted(city_dir.glob(f"*{IMAGE_SUFFIX}")):
            frame_id = path.name[: -len(IMAGE_SUFFIX)]
            if frame_id in images:
                problems.append(f"duplicate frame id {frame_id}: {images[frame_id][1]} and {path}")
                continue
            images[frame_id] = (city_dir.name, path)

    ground_truth: dict[str, dict[str, Path]] = {}
    gt_city: dict[str, tuple[str, Path]] = {}
    for city_dir in _city_dirs(gt_root):
        for path in sorted(city_dir.iterdir()):
            for suffix, kind in _GT_SUFFIXES.items():
                if path.name.endswith(suffix):
                    frame_id = path.name[: -len(suffix)]
                    ground_truth.setdefault(frame_id, {})[kind] = path
                    gt_city.setdefault(frame_id, (city_dir.name, path))
                    break

    if not images:
        problems.append(f"no *{IMAGE_SUFFIX} files under {image_root}")

    records: list[CityscapesRecord] = []
    for frame_id in sorted(images):
        city, image_path = images[frame_id]
        gt = ground_truth.get(frame_id, {})
        expected = gt_root / city / frame_id
        if frame_id in gt_city and gt_city[frame_id][0] != city:
            problems.append(
                f"ground truth for {image_path} is in city folder {gt_city[frame_id][0]!r}: {gt_city[frame_id][1]}"
            )
            continue
        if "label_ids" not in gt and "train_ids" not in gt:
            problems.append(
                f"missing label map for {image_path}: expected {expected}{LABEL_IDS_SUFFIX} "
                f"or {expected}{TRAIN_IDS_SUFFIX}"
            )
            continue
        if with_instances and "instance_ids" not in gt:
            problems.append(f"missing instance map for {image_path}: expected {expected}{INSTANCE_IDS_SUFFIX}")
            continue
        records.append(
            CityscapesRecord(
                id=frame_id,
                city=city,
                split=split,
                image_path=str(image_path),
                label_ids_path=str(gt["label_ids"]) if "label_ids" in gt else None,
                train_ids_path=str(gt["train_ids"]) if "train_ids" in gt else None,
                instance_ids_path=str(gt["instance_ids"]) if with_instances else None,
            )
        )
    for frame_id in sorted(set(ground_truth) - set(images)):
        for path in sorted(ground_truth[frame_id].values()):
            problems.append(
                f"ground-truth file without an image: {path} "
                f"(expected {image_root / gt_city[frame_id][0] / (frame_id + IMAGE_SUFFIX)})"
            )
    if problems:
        raise CityscapesLayoutError(
            f"{len(problems)} problem(s) in Cityscapes split {split!r} under {root}:\n  " + _format_problems(problems)
        )
    return records


def _read_image(source, name: str | None = None, decode: bool = True) -> Image.Image:
    """A regular file (or its bytes), within the converters' pixel budget (read from its header)."""
    try:
        return open_dataset_image(source, name, decode=decode)
    except DatasetFileError as error:
        raise CityscapesLayoutError(str(error)) from error


def load_record(record: CityscapesRecord, decode_image: bool = True) -> dict:
    """Read one frame: RGB image (file bytes, and the array if `decode_image`), train-id map (read
    or computed), instance ids. Checks that every map has the image's size and holds valid values.
    """
    try:
        image_bytes = read_regular_file(record.image_path)
    except DatasetFileError as error:
        raise CityscapesLayoutError(str(error)) from error
    image = _read_image(image_bytes, record.image_path, decode=False)  # the size from the header, checked
    try:
        if not decode_image:
            image.verify()  # chunk checksums: a truncated or corrupt file fails here, cheaply
    except (OSError, ValueError, SyntaxError) as error:
        raise CityscapesLayoutError(f"cannot read {record.image_path}: {error}") from error
    out: dict = {"image_bytes": image_bytes if image.mode == "RGB" else None, "image": None}
    size = image.size
    if decode_image or image.mode != "RGB":
        image = _read_image(image_bytes, record.image_path).convert("RGB")
        out["image"] = np.asarray(image)

    if record.train_ids_path is not None:
        label_path = record.train_ids_path
        label_image = _read_image(label_path)
        _check_size(label_image, size, label_path, record.image_path)
        try:
            out["semantic_map"] = validate_train_ids(np.asarray(label_image), name=label_path)
        except ValueError as error:
            raise CityscapesLayoutError(str(error)) from error
    else:
        label_path = record.label_ids_path
        label_image = _read_image(label_path)
        _check_size(label_image, size, label_path, record.image_path)
        try:
            out["semantic_map"] = label_ids_to_train_ids(np.asarray(label_image))
        except ValueError as error:
            raise CityscapesLayoutError(f"{label_path}: {error}") from error
    if out["semantic_map"].ndim != 2:
        raise CityscapesLayoutError(f"label map must be single-channel: {label_path}")

    if record.instance_ids_path is not None:
        instance_image = _read_image(record.instance_ids_path)
        _check_size(instance_image, size, record.instance_ids_path, record.image_path)
        instances = np.asarray(instance_image)
        if instances.ndim != 2:
            raise CityscapesLayoutError(f"instance map must be single-channel: {record.instance_ids_path}")
        out["instance_map"] = instances.astype(np.int32)
    return out


def _check_size(image: Image.Image, size: tuple[int, int], path: str, image_path: str) -> None:
    if image.size != size:
        raise CityscapesLayoutError(
            f"size mismatch: {path} is {image.size[0]}x{image.size[1]} but {image_path} is {size[0]}x{size[1]}"
        )


def _file_stamp(path: str | None) -> tuple | None:
    if path is None:
        return None
    stat = os.stat(path)
    return (path, stat.st_size, stat.st_mtime_ns)


def _encode_record(record: CityscapesRecord, coarse: tuple | None = None) -> dict:
    """One dataset row (PNG-encoded images) from one frame's files."""
    arrays = load_record(record, decode_image=coarse is not None)
    example = {
        # The original PNG bytes when already RGB: lossless and no re-encoding cost.
        "image": {"bytes": arrays["image_bytes"], "path": None}
        if arrays["image_bytes"] is not None
        else encode_png(arrays["image"]),
        "semantic_map": encode_png(arrays["semantic_map"]),
        "city": record.city,
        "id": record.id,
    }
    if record.instance_ids_path is not None:
        example["instance_map"] = encode_png(arrays["instance_map"])
    if coarse is not None:
        from ..image_processing import resize_image  # noqa: PLC0415

        codec, quality, size, downsample = coarse
        make_coarse = require_make_coarse()
        resized = resize_image(arrays["image"], size)
        example["coarse"] = encode_png(np.asarray(make_coarse(resized, downsample, codec, quality), dtype=np.uint8))
    return example


def raise_cause(error: Exception, kinds: tuple[type[Exception], ...]) -> None:
    """Re-raise the first cause of `error` that is one of `kinds` (our own one-line errors, which `datasets`
    wraps in `DatasetGenerationError`), else `error` itself."""
    cause = error.__cause__
    while cause is not None and not isinstance(cause, kinds):
        cause = cause.__cause__
    if cause is not None:
        raise cause from None
    raise error


def generate_rows(encode: Callable, records: list, num_proc: int, chunksize: int = 1, **kwargs):
    """``encode(record, **kwargs)`` for every record, in order, in `num_proc` worker processes when > 1.

    A process pool re-raises workers' exceptions as they are (datasets' own num_proc loses them), and imap
    keeps the rows in order. `encode` must be a module-level function (it is pickled to the workers).
    """
    if num_proc <= 1:
        for record in records:
            yield encode(record, **kwargs)
        return
    import multiprocessing  # noqa: PLC0415
    from functools import partial  # noqa: PLC0415

    with multiprocessing.get_context().Pool(num_proc) as pool:
        yield from pool.imap(partial(encode, **kwargs), records, chunksize=chunksize)


def _generate_examples(records: list[CityscapesRecord], stamps: list, coarse: tuple | None, num_proc: int):
    # `stamps` is unused here: it is part of gen_kwargs so the cache fingerprint changes when files do.
    del stamps
    yield from generate_rows(_encode_record, records, num_proc, coarse=coarse)


def build_cityscapes_dataset(
    root: str | os.PathLike,
    splits: Iterable[str] = ("train", "val"),
    *,
    with_instances: bool = True,
    precompute_coarse: str | None = None,
    coarse_image_size: tuple[int, int] = (256, 512),
    coarse_downsample: int = 4,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Read an official Cityscapes folder into a `DatasetDict` (``val`` becomes ``validation``).

    Columns: ``image``, ``semantic_map`` (train ids, mode L), ``instance_map`` (mode I, with
    `with_instances`), optional ``coarse``, ``city``, ``id``. ``precompute_coarse`` (``CODEC:QUALITY``)
    stores the decoded coarse image of the image resized to `coarse_image_size` (H, W) and
    downsampled by `coarse_downsample`, made with `spic_diffusers.codec.make_coarse`.
    """
    import datasets
    from datasets.exceptions import DatasetGenerationError

    splits = [s.strip() for s in splits if s.strip()]
    unknown = [s for s in splits if s not in SPLIT_NAMES]
    if unknown or not splits:
        raise ValueError(f"unknown Cityscapes split(s) {unknown or splits}; choose from {sorted(SPLIT_NAMES)}")
    coarse = None
    if precompute_coarse is not None:
        codec, quality = check_coarse_spec(precompute_coarse)  # fail early, before reading anything
        height, width = coarse_image_size
        if height % coarse_downsample or width % coarse_downsample:
            raise ValueError(
                f"coarse_image_size {coarse_image_size} must be divisible by coarse_downsample {coarse_downsample}"
            )
        coarse = (codec, quality, (int(height), int(width)), int(coarse_downsample))

    # Find every problem in every split before doing any work.
    all_records = {split: find_cityscapes_files(root, split, with_instances=with_instances) for split in splits}
    features = dataset_features(with_instances=with_instances, with_coarse=coarse is not None)
    result = {}
    for split, records in all_records.items():
        stamps = [
            [_file_stamp(path) for path in (r.image_path, r.label_ids_path, r.train_ids_path, r.instance_ids_path)]
            for r in records
        ]
        proc = max(1, min(num_proc or 1, len(records)))
        try:
            result[SPLIT_NAMES[split]] = datasets.Dataset.from_generator(
                _generate_examples,
                features=features,
                gen_kwargs={"records": records, "stamps": stamps, "coarse": coarse, "num_proc": proc},
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                split=datasets.NamedSplit(SPLIT_NAMES[split]),
            )
        except DatasetGenerationError as error:
            raise_cause(error, (CityscapesLayoutError, ImportError))
    return datasets.DatasetDict(result)


def save_dataset_dict(
    dataset_dict: "datasets.DatasetDict | None",
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    build: "Callable[[Path], datasets.DatasetDict] | None" = None,
) -> Path:
    """Write a `DatasetDict` with `save_to_disk` so that `output_dir` appears complete or not at all.

    Everything is written into a temporary folder next to `output_dir` and renamed at the end.
    `build`, if given, is called with a scratch cache folder and must return the `DatasetDict`
    (so that its cache files are also cleaned up on failure).
    """
    output_dir = Path(output_dir).expanduser().absolute()
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    if dataset_dict is None and build is None:
        raise ValueError("pass a DatasetDict or a build function")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        if build is not None:
            dataset_dict = build(scratch / "cache")
        staged = scratch / "dataset"
        dataset_dict.save_to_disk(str(staged))
        (staged / "id2label.json").write_text(id2label_json())
        backup = None
        if output_dir.exists():
            backup = scratch / "previous"
            output_dir.rename(backup)
        try:
            staged.rename(output_dir)
        except OSError:
            if backup is not None:
                backup.rename(output_dir)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output_dir


def convert_cityscapes(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    splits: Iterable[str] = ("train", "val"),
    *,
    overwrite: bool = False,
    with_instances: bool = True,
    precompute_coarse: str | None = None,
    coarse_image_size: tuple[int, int] = (256, 512),
    coarse_downsample: int = 4,
    num_proc: int | None = None,
    push_to_hub: str | None = None,
    private: bool = True,
    token: str | None = None,
) -> Path:
    """Convert a Cityscapes download to `save_to_disk` format in `output_dir`, optionally pushing it.

    The Hub copy is Parquet (`DatasetDict.push_to_hub`), private unless `private=False`: Cityscapes
    is registration-gated and may not be redistributed publicly.
    """
    output_dir = Path(output_dir).expanduser().absolute()
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    if precompute_coarse is not None:
        check_coarse_spec(precompute_coarse)

    def build(cache):
        return build_cityscapes_dataset(
            root,
            splits,
            with_instances=with_instances,
            precompute_coarse=precompute_coarse,
            coarse_image_size=coarse_image_size,
            coarse_downsample=coarse_downsample,
            num_proc=num_proc,
            cache_dir=cache,
        )

    save_dataset_dict(None, output_dir, overwrite=overwrite, build=build)
    if push_to_hub:
        push_dataset_to_hub(output_dir, push_to_hub, private=private, token=token)
    return output_dir


def push_dataset_to_hub(
    dataset_dir: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None
) -> None:
    """Push a converted dataset as Parquet plus `id2label.json` to a (private by default) dataset repo.

    Offline, raises `hub.HubUnreachableError`: one line saying that `dataset_dir` is complete.
    """
    import datasets
    from huggingface_hub import HfApi

    from ..hub import reporting_unreachable_hub  # noqa: PLC0415

    dataset_dict = datasets.load_from_disk(str(dataset_dir))
    with reporting_unreachable_hub(dataset_dir):
        dataset_dict.push_to_hub(repo_id, private=private, token=token)
        HfApi(token=token).upload_file(
            path_or_fileobj=id2label_json().encode(),
            path_in_repo="id2label.json",
            repo_id=repo_id,
            repo_type="dataset",
        )
