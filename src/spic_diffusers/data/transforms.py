"""The training/evaluation transform: dataset rows -> model-ready tensors.

Images are resized as guided-diffusion (and so the SPIC paper) does: box-filter halving while
the image is at least twice the target, then bicubic to the exact size; label and instance maps
use nearest neighbour so no new label values appear.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..image_processing import instance_edges, resize_image, resize_map  # noqa: F401
from ..image_processing import labels_to_one_hot as one_hot  # noqa: F401  (re-exported)
from ..image_processing import semantic_channels
from ..labels import IGNORE_INDEX, NUM_CLASSES
from ..sizes import SizeLike, as_hw
from .cityscapes import parse_coarse_spec, require_make_coarse

def _to_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, Image.Image):
        return np.asarray(value)
    if isinstance(value, torch.Tensor):
        return value.cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a PIL image or an array, got {type(value).__name__}")


def _label_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, Image.Image) and value.mode not in ("L", "I", "I;16"):
        raise ValueError(f"{name} must be a single-channel (mode L) train-id image, got mode {value.mode}")
    array = _to_array(value, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array


class SPICTransform:
    """Turn rows of the SPIC dataset format into the tensors the model and trainer expect.

    Use with ``Dataset.set_transform`` / ``with_transform`` (batched rows) or with
    ``IterableDataset.map`` (single rows or ``batched=True``). Per example it returns
    ``pixel_values`` float [3, H, W] in [-1, 1], ``segmentation_map`` float one-hot [C, H, W]
    (C = num_classes, +1 with the instance-edge channel; ignore pixels are all-zero),
    ``labels`` long [H, W] (255 = ignore), and ``low_res_image`` [3, H/d, W/d] in [-1, 1] when a
    ``coarse`` column is present (or `coarse` asks for one to be made on the fly). ``id`` and
    ``city`` are passed through when present.

    Args:
        size: the model's (height, width), or one int for a square.
        num_classes: number of semantic classes (19 for Cityscapes).
        random_flip: flip horizontally with probability `flip_probability`, identically for the
            image, semantic map, instance map and coarse image.
        use_instance_edges: append the instance-edge channel (needs an ``instance_map`` column).
        coarse_downsample: the coarse image's factor d; a coarse image of another size is resized.
        coarse: for rows without a ``coarse`` column, make ``low_res_image`` from the resized image:
            ``"downsample"`` (area downsampling only) or ``"CODEC:QUALITY"`` (downsampling plus a lossy
            round trip through `spic_diffusers.codec.make_coarse`, as the transmitter would send it).
        seed: seeds the flip decisions (a private generator; the global RNG is never touched).
    """

    def __init__(
        self,
        size: SizeLike,
        num_classes: int = NUM_CLASSES,
        *,
        random_flip: bool = False,
        flip_probability: float = 0.5,
        use_instance_edges: bool = False,
        coarse_downsample: int = 4,
        coarse: str | None = None,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
    ) -> None:
        self.size = as_hw(size)
        if num_classes < 1 or num_classes >= ignore_index:
            raise ValueError(f"num_classes must be in 1..{ignore_index - 1}, got {num_classes}")
        if coarse_downsample < 1 or self.size[0] % coarse_downsample or self.size[1] % coarse_downsample:
            raise ValueError(f"size {self.size} must be divisible by coarse_downsample {coarse_downsample}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        self.num_classes = num_classes
        self.random_flip = random_flip
        self.flip_probability = flip_probability
        self.use_instance_edges = use_instance_edges
        self.coarse_downsample = coarse_downsample
        self.coarse = coarse
        self._make_coarse = None
        if coarse is not None and coarse != "downsample":
            self._coarse_codec, self._coarse_quality = parse_coarse_spec(coarse)
            self._make_coarse = require_make_coarse()
        self.ignore_index = ignore_index
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._rng_worker: int | None = None

    @property
    def num_channels(self) -> int:
        """Channels of ``segmentation_map`` (the model's ``num_semantic_channels``)."""
        return self.num_classes + int(self.use_instance_edges)

    def _generator(self) -> np.random.Generator:
        # One generator per DataLoader worker so workers do not repeat each other's flips.
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else -1
        if self._rng is None or self._rng_worker != worker:
            entropy = [self.seed] if self.seed is not None else None
            sequence = (
                np.random.SeedSequence(entropy, spawn_key=(worker + 1,)) if entropy else np.random.SeedSequence()
            )
            self._rng = np.random.default_rng(sequence)
            self._rng_worker = worker
        return self._rng

    def transform_example(self, example: Mapping[str, Any], flip: bool | None = None) -> dict[str, Any]:
        """Transform one row; `flip` forces the flip decision (None = random if enabled)."""
        for key in ("image", "semantic_map"):
            if key not in example or example[key] is None:
                raise ValueError(f"example is missing the {key!r} column")
        height, width = self.size

        image = _to_array(example["image"], "image")
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
        labels = _label_array(example["semantic_map"], "semantic_map")
        bad = (labels >= self.num_classes) & (labels != self.ignore_index)
        if labels.dtype.kind == "i":
            bad |= labels < 0
        if bad.any():
            raise ValueError(
                f"semantic_map{' of ' + str(example['id']) if 'id' in example else ''} has values outside "
                f"0..{self.num_classes - 1} that are not the ignore value {self.ignore_index}: "
                f"{np.unique(labels[bad])[:20].tolist()}"
            )
        if labels.shape != image.shape[:2]:
            raise ValueError(f"semantic_map shape {labels.shape} does not match image shape {image.shape[:2]}")

        source_shape = labels.shape
        image = resize_image(image, self.size)
        labels = resize_map(labels, self.size).astype(np.int64)

        instances = None
        if self.use_instance_edges:
            if example.get("instance_map") is None:
                raise ValueError("use_instance_edges=True needs an 'instance_map' column")
            instances = _label_array(example["instance_map"], "instance_map")
            if instances.shape != source_shape:
                raise ValueError(f"instance_map shape {instances.shape} does not match image shape {source_shape}")
            instances = resize_map(instances, self.size)

        coarse = None
        low_size = (height // self.coarse_downsample, width // self.coarse_downsample)
        if example.get("coarse") is not None:
            coarse = resize_image(example["coarse"], low_size)
        elif self._make_coarse is not None:
            made = self._make_coarse(
                np.ascontiguousarray(image), self.coarse_downsample, self._coarse_codec, self._coarse_quality
            )
            coarse = resize_image(np.asarray(made, dtype=np.uint8), low_size)
        elif self.coarse == "downsample":
            coarse = resize_image(image, low_size)

        if flip is None:
            flip = self.random_flip and self._generator().random() < self.flip_probability
        if flip:
            image = image[:, ::-1]
            labels = labels[:, ::-1]
            instances = instances[:, ::-1] if instances is not None else None
            coarse = coarse[:, ::-1] if coarse is not None else None

        labels_t = torch.from_numpy(np.ascontiguousarray(labels))
        edges = None if instances is None else torch.from_numpy(instance_edges(instances))
        segmentation = semantic_channels(labels_t, self.num_classes, edges, self.ignore_index)

        out: dict[str, Any] = {
            "pixel_values": _image_to_tensor(image),
            "segmentation_map": segmentation,
            "labels": labels_t,
        }
        if coarse is not None:
            out["low_res_image"] = _image_to_tensor(coarse)
        for key in ("id", "city"):
            if key in example:
                out[key] = example[key]
        return out

    def __call__(self, examples: Mapping[str, Any]) -> dict[str, Any]:
        """Batched rows (dict of lists) -> dict of lists; a single row -> a single transformed row."""
        if "image" not in examples:
            raise ValueError("rows must have an 'image' column")
        if not isinstance(examples["image"], (list, tuple)):
            return self.transform_example(examples)
        count = len(examples["image"])
        rows = [{key: values[i] for key, values in examples.items()} for i in range(count)]
        transformed = [self.transform_example(row) for row in rows]
        keys = transformed[0].keys() if transformed else ()
        return {key: [row[key] for row in transformed] for key in keys}


def _image_to_tensor(image: np.ndarray) -> torch.Tensor:
    array = np.ascontiguousarray(image[..., :3]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def collate_examples(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack transformed rows into a batch (for `torch.utils.data.DataLoader`)."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
