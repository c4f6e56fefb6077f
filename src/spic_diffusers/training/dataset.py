"""Training data: load a SPIC dataset, check it before training, shard and shuffle it reproducibly.

Rows follow the project's dataset format (`image`, `semantic_map`, optional `instance_map` and `coarse`).
Coarse images come from the `coarse` column or are made on the fly (area down-sampling, then a lossy round trip
through a `spic_diffusers.codec` coarse codec), exactly as the receiver would see them.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..data.transforms import SPICTransform, collate_examples, resize_image
from ..image_processing import image_to_tensor
from .arguments import TrainingInputError

REQUIRED_COLUMNS = ("image", "semantic_map")
_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json", "dataset_info.json")
    ) and not any(f.endswith(".parquet") for f in os.listdir(path))


def load_split(path_or_id: str, split: str, *, config_name: str | None = None, streaming: bool = False,
               cache_dir: str | None = None, files_split: str = "train"):
    """One split of a dataset from a `save_to_disk` folder, data files, a data folder or a Hub id.

    Data files (`*.parquet`, globs) hold one split, named `files_split`; asking them for another split fails.
    """
    import datasets

    if _is_saved_dataset(path_or_id):
        try:
            loaded = datasets.load_from_disk(path_or_id)
        except Exception as err:
            raise TrainingInputError(f"cannot load the saved dataset at {path_or_id!r}: {err}") from err
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise TrainingInputError(
                    f"split {split!r} is not in {path_or_id!r}; it has {sorted(loaded)}"
                )
            loaded = loaded[split]
        return loaded.to_iterable_dataset() if streaming else loaded

    extension = os.path.splitext(path_or_id)[1].lower()
    if extension in _FILE_BUILDERS and (os.path.isfile(path_or_id) or glob.glob(path_or_id)):
        if split != files_split:
            raise TrainingInputError(f"data files {path_or_id!r} hold the {files_split!r} split only, not {split!r}")
        builder, kwargs = _FILE_BUILDERS[extension], {"data_files": {split: path_or_id}}
    else:
        builder, kwargs = path_or_id, {"name": config_name}
    try:
        return datasets.load_dataset(builder, split=split, streaming=streaming, cache_dir=cache_dir, **kwargs)
    except ValueError as err:
        if "split" in str(err).lower():
            raise TrainingInputError(f"split {split!r} is not in {path_or_id!r}: {err}") from err
        raise TrainingInputError(f"cannot load the dataset {path_or_id!r}: {err}") from err
    except FileNotFoundError as err:
        raise TrainingInputError(f"dataset {path_or_id!r} not found (a folder, data files or a Hub id): {err}") from err


def check_columns(dataset, *, need_instances: bool, need_coarse: bool) -> None:
    """Fail early when a column the training needs is missing."""
    features = getattr(dataset, "features", None)
    columns = set(features) if features is not None else set(next(iter(dataset)).keys())
    required = list(REQUIRED_COLUMNS)
    required += (["instance_map"] if need_instances else []) + (["coarse"] if need_coarse else [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise TrainingInputError(
            f"the dataset lacks column(s) {missing} (it has {sorted(columns)}); SPIC training needs "
            f"{required}"
        )


class ExampleProcessor:
    """A dataset row -> the tensors of one training example (`SPICTransform` + the coarse image).

    Args:
        transform: The row transform (resizing, one-hot map); its own random flip must be off (flips are drawn
            per step so resuming reproduces them).
        coarse_from_column: Use the row's `coarse` image; otherwise make it from the resized image.
        coarse_codec: Codec name for on-the-fly coarse images, `"none"` for area down-sampling alone, or None for
            the default (HEVC at QP 35, or the first available fallback, with a logged warning).
        coarse_qualities: Several qualities of `coarse_codec`: the example then also carries `low_res_variants`,
            its coarse image coded at each (the trainer draws one per sample with its step generator, so a resumed
            run draws the same). Coded images are kept in memory (bounded), since the codec is deterministic.
    """

    CACHE_BYTES = 512 * 2**20

    def __init__(self, transform: SPICTransform, *, coarse_from_column: bool, coarse_codec: str | None = None,
                 coarse_quality: float | None = None, coarse_qualities: Sequence[float] | None = None):
        self.transform = transform
        self.coarse_from_column = coarse_from_column
        self.coarse_codec = coarse_codec
        self.coarse_quality = coarse_quality
        self._codec = None
        self._variant_codecs = []
        self._cache: dict[tuple[bytes, int], np.ndarray] = {}
        self._cache_bytes = 0
        if coarse_qualities is not None and (coarse_from_column or coarse_codec == "none"):
            raise TrainingInputError("--coarse_qualities needs coarse images made on the fly by a codec")
        if not coarse_from_column and coarse_codec != "none":
            from ..codec import CodecUnavailableError, select_coarse_codec

            try:  # an unavailable codec fails here, before any training work
                self._codec = select_coarse_codec(coarse_codec, coarse_quality)
                if coarse_qualities is not None and len(coarse_qualities) > 1:
                    self._variant_codecs = [select_coarse_codec(self._codec.name, q) for q in coarse_qualities]
            except (ValueError, CodecUnavailableError) as err:
                raise TrainingInputError(f"--coarse_codec/--coarse_quality: {err}") from None
            self.coarse_codec, self.coarse_quality = self._codec.name, self._codec.quality

    @property
    def coarse_qualities(self) -> list[float]:
        """The qualities the coarse images are drawn from (one unless several were asked for)."""
        if self._variant_codecs:
            return [codec.quality for codec in self._variant_codecs]
        return [] if self.coarse_quality is None else [self.coarse_quality]

    def make_coarse(self, image: np.ndarray, codec=None) -> np.ndarray:
        from ..codec import area_downsample, make_coarse

        factor = self.transform.coarse_downsample
        if self.coarse_codec == "none":
            return area_downsample(image, factor)
        return make_coarse(image, factor, codec or self._codec)

    def _coarse_variants(self, image: np.ndarray) -> list[np.ndarray]:
        key = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()
        out = []
        for index, codec in enumerate(self._variant_codecs):
            coarse = self._cache.get((key, index))
            if coarse is None:
                coarse = np.asarray(self.make_coarse(image, codec), dtype=np.uint8)
                if self._cache_bytes + coarse.nbytes <= self.CACHE_BYTES:
                    self._cache[(key, index)] = coarse
                    self._cache_bytes += coarse.nbytes
            out.append(coarse)
        return out

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        variants = None
        if self.coarse_from_column:
            if row.get("coarse") is None:
                raise ValueError(f"row {row.get('id', '?')} has no coarse image")
        elif self._variant_codecs:
            variants = self._coarse_variants(resize_image(row["image"], self.transform.size))
            row["coarse"] = variants[0]
        else:
            row["coarse"] = self.make_coarse(resize_image(row["image"], self.transform.size))
        example = self.transform.transform_example(row, flip=False)
        if variants is not None:
            low_size = tuple(example["low_res_image"].shape[-2:])
            example["low_res_variants"] = torch.cat([image_to_tensor(resize_image(c, low_size)) for c in variants])
        example.setdefault("id", str(row.get("id", "")))
        example.pop("city", None)
        return example


def validate_rows(dataset, processor: ExampleProcessor, max_rows: int) -> int:
    """Run the row checks of the transform (label range, sizes, modes) on the first rows; returns rows checked."""
    transform = processor.transform
    rows = dataset if not max_rows else itertools.islice(dataset, max_rows)
    count = 0
    for index, row in enumerate(rows):
        try:
            transform.transform_example(row, flip=False)
        except (ValueError, TypeError) as err:
            name = row.get("id") or f"#{index}"
            raise TrainingInputError(f"dataset row {name}: {err}") from None
        count += 1
    if count == 0:
        raise TrainingInputError("the training split is empty")
    return count


class ShardedEpochSampler(torch.utils.data.Sampler[int]):
    """This process's share of a per-epoch permutation that depends only on (seed, epoch).

    Every process sees a disjoint, equally long share; `start` skips the first samples of the share, so a resumed
    run continues the epoch exactly where the interrupted one stopped.
    """

    def __init__(self, num_rows: int, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        self.num_rows, self.num_replicas, self.rank = num_rows, num_replicas, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    @property
    def share(self) -> int:
        return self.num_rows // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_rows)
        mine = order[: self.share * self.num_replicas][self.rank :: self.num_replicas]
        return iter(mine[self.start :].tolist())

    def __len__(self) -> int:
        return max(self.share - self.start, 0)


class _MapDataset(torch.utils.data.Dataset):
    def __init__(self, rows, processor: ExampleProcessor):
        self.rows, self.processor = rows, processor

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.processor(self.rows[int(index)])


class _StreamDataset(torch.utils.data.IterableDataset):
    def __init__(self, rows, processor: ExampleProcessor, skip: int = 0):
        self.rows, self.processor, self.skip = rows, processor, skip

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rows = self.rows
        if info is not None and info.num_workers > 1:
            rows = itertools.islice(rows, info.id, None, info.num_workers)
        for row in itertools.islice(rows, self.skip, None):
            yield self.processor(row)


def make_dataloader(rows, processor: ExampleProcessor, *, batch_size: int, num_workers: int, sampler=None,
                    skip_samples: int = 0) -> torch.utils.data.DataLoader:
    """A loader of collated examples: map-style rows with `sampler`, or a (pre-sharded) stream."""
    if sampler is not None:
        dataset = _MapDataset(rows, processor)
    else:
        dataset = _StreamDataset(rows, processor, skip=skip_samples)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
        collate_fn=collate_examples, persistent_workers=False,
    )


def random_training_batch(batch_size: int, height: int, width: int, num_classes: int, coarse_downsample: int,
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch in the trainer's layout (images in [-1, 1], a one-hot map, the coarse image) of random values:
    what the benchmarks time a training step on, without a dataset."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (batch_size, height, width), generator=g)
    d = coarse_downsample
    return {
        "pixel_values": torch.rand(batch_size, 3, height, width, generator=g) * 2 - 1,
        "segmentation_map": torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float(),
        "low_res_image": torch.rand(batch_size, 3, height // d, width // d, generator=g) * 2 - 1,
    }
