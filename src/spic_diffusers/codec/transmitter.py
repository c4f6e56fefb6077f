"""The transmitter: image (+ semantic map, given or predicted) -> one SPIC stream."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..config_files import read_json_object
from .bitstream import pack_stream
from .coarse import area_downsample, get_coarse_codec, select_coarse_codec
from .instances import check_instance_map, encode_instance_edges
from .map_coders import DEFAULT_MAP_CODER, get_map_coder
from .rate_search import quality_candidates, search_rate


_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_rgb_image(image: Image.Image) -> Image.Image:
    """An RGB 8-bit copy of ``image``; wide grey is scaled by its range, never clipped or truncated.

    16-bit grey is scaled to 8 bits (Pillow's own conversion clips it).  32-bit grey has no stored range, so
    its values say which it is: float (mode ``F``) within 0..1 is scaled by 255, integer or float within
    0..255 is rounded, integer within 0..65535 is scaled as 16-bit; anything else (negative, larger,
    NaN or infinite) is refused with the range found.  Pillow would truncate a 0..1 float image to black.
    """
    if image.mode not in _WIDE_GREY_MODES:
        return image.convert("RGB")
    array = np.asarray(image)
    if image.mode in ("I", "F"):
        if array.size and not np.all(np.isfinite(array)):
            raise ValueError(f"a {image.mode}-mode (32-bit) grey image holds NaN or infinite values")
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if low < 0 or high > (255 if image.mode == "F" else 65535):
            raise ValueError(
                f"a {image.mode}-mode (32-bit) grey image holds values {low:g}..{high:g}: expected 0..1 or 0..255"
                f"{'' if image.mode == 'F' else ' or 0..65535'}; save it as 8- or 16-bit"
            )
        if image.mode == "F" and high <= 1.0:
            scale = 255.0
        elif high <= 255:
            scale = 1.0
        else:
            scale = 1 / 257.0
        grey = np.clip(np.round(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    else:
        grey = np.round(array.astype(np.float64) / 257.0).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _to_rgb_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb_image(image))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"image must be a PIL image or a uint8 HxWx3 array, got {array.dtype} {array.shape}")
    return array


def _to_label_array(segmentation_map) -> np.ndarray:
    if isinstance(segmentation_map, Image.Image):
        if segmentation_map.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"a segmentation map image must be single-channel (mode L), got mode {segmentation_map.mode}"
            )
        segmentation_map = np.asarray(segmentation_map)
    array = np.asarray(segmentation_map)
    if array.ndim != 2:
        raise ValueError(f"segmentation map must be HxW, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"segmentation map must hold integer train ids, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("segmentation map labels must lie in 0..255 (train ids, 255 = ignore)")
    return array.astype(np.uint8)


# A segmentation model names a few dozen classes; transformers builds dictionaries of ``num_labels`` entries and
# a classifier of that width, so ``num_labels: 1e8`` costs gigabytes before any weight is read.
MAX_SEGMENTER_LABELS = 1000
# The processor resizes every photograph to its configured size before the model sees it.
MAX_SEGMENTER_SIDE = 4096
MAX_SEGMENTER_PIXELS = 4096 * 2048
# An aspect-keeping processor scales by the factor nearer 1 of its two sides: a 200x60000 strip would be enlarged
# to 360x108000 before the model sees it. Photographs are far squarer than this.
MAX_SEGMENTER_ASPECT = 8.0


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sizes(sizes: dict, where: str) -> None:
    """``size``/``crop_size`` entries of a preprocessor: each side and their product within the budgets."""
    for key, size in sizes.items():
        if size is None:
            continue
        if not isinstance(size, (dict, int, float, str, list)) and hasattr(size, "__dataclass_fields__"):
            size = {name: getattr(size, name) for name in size.__dataclass_fields__}  # transformers' SizeDict
        values = size if isinstance(size, dict) else {"side": size}
        for name, value in values.items():
            limit = MAX_SEGMENTER_PIXELS if "pixels" in name else MAX_SEGMENTER_SIDE
            if value is not None and (not _is_count(value) or not 1 <= value <= limit):
                raise ValueError(f"{where}: {key}.{name} must be an integer in 1..{limit}, got {value!r}")
        if isinstance(size, dict) and _is_count(size.get("height")) and _is_count(size.get("width")):
            if size["height"] * size["width"] > MAX_SEGMENTER_PIXELS:
                raise ValueError(f"{where}: {key} {size['height']}x{size['width']} is above the budget of "
                                 f"{MAX_SEGMENTER_PIXELS} pixels")


def check_segmenter_folder(path: str | os.PathLike) -> None:
    """A local segmenter folder's ``config.json`` and ``preprocessor_config.json``, before transformers reads them.

    Any model type ``AutoModelForSemanticSegmentation`` loads is accepted (SegFormer, UperNet, DPT, ...);
    its label count and its preprocessor's sizes must be sane.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

    path = os.fspath(path)
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"{path} has no config.json: not a transformers model folder")
    config = read_json_object(config_path, "the model config")
    model_type = config.get("model_type")
    if model_type not in MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES:
        raise ValueError(f"{config_path}: model_type {model_type!r} is not a semantic-segmentation model "
                         f"(known: {', '.join(sorted(MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES))})")
    labels = config.get("num_labels")
    if labels is not None and (not _is_count(labels) or not 1 <= labels <= MAX_SEGMENTER_LABELS):
        raise ValueError(f"{config_path}: num_labels must be an integer in 1..{MAX_SEGMENTER_LABELS}, got {labels!r}")
    for key in ("id2label", "label2id"):
        table = config.get(key)
        if table is not None and (not isinstance(table, dict) or not 1 <= len(table) <= MAX_SEGMENTER_LABELS):
            raise ValueError(f"{config_path}: {key} must be a table of 1..{MAX_SEGMENTER_LABELS} labels")
    id2label = config.get("id2label") or {}
    if not all(str(k).isdigit() and int(k) < MAX_SEGMENTER_LABELS for k in id2label):
        raise ValueError(f"{config_path}: id2label keys must be label ids in 0..{MAX_SEGMENTER_LABELS - 1}")
    if labels is not None and id2label and len(id2label) != labels:
        raise ValueError(f"{config_path}: num_labels {labels} disagrees with id2label's {len(id2label)} labels")
    processor_path = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(processor_path):
        processor = read_json_object(processor_path, "the preprocessor config")
        _check_sizes({k: processor.get(k) for k in ("size", "crop_size")}, processor_path)


def check_processor_sizes(processor, where: str) -> None:
    """The sizes a loaded image processor resizes to (also for Hub ids, whose files were not read first)."""
    _check_sizes({k: getattr(processor, k, None) for k in ("size", "crop_size")}, f"the image processor of {where!r}")


class Segmenter:
    """A ``transformers`` semantic-segmentation model that outputs Cityscapes train ids.

    Loads ``AutoModelForSemanticSegmentation`` and its image processor from a local folder or a
    Hub id.  Models trained on the 19 train classes (or on some of them, e.g. CamVid's 11, named
    as Cityscapes train classes) are used as they are; models whose ``id2label`` holds the 34/35
    official Cityscapes labels are mapped through the official table (classes outside the 19
    become 255). ``known_classes`` lists the train ids the model can predict.
    """

    def __init__(self, model, processor):
        self.model = model.eval()
        self.processor = processor
        self.lut = self._label_lut(model.config.id2label)
        self.known_classes = sorted({int(v) for v in self.lut} - {255})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "Segmenter":
        """Load a model and its processor; a folder that would not give a trained model is a ``ValueError``.

        A local folder's config and preprocessor config are checked before anything is built (see
        :func:`check_segmenter_folder`), and the loaded weights must cover the model exactly and be finite:
        transformers only warns about a missing classifier and initialises it at random, which would make
        the transmitter send a map from random weights.
        """
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        where = str(name_or_path)
        if os.path.isdir(name_or_path):
            check_segmenter_folder(name_or_path)
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path, **kwargs)
            model, info = AutoModelForSemanticSegmentation.from_pretrained(
                name_or_path, output_loading_info=True, **kwargs
            )
        except Exception as err:  # noqa: BLE001  (transformers reports folder problems as many error types)
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"cannot load a semantic-segmentation model from {where!r}: {detail}") from None
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            keys = [key if isinstance(key, str) else key[0] for key in info.get(kind) or []]
            if keys:
                raise ValueError(
                    f"the segmentation model in {where!r} has {len(keys)} {kind.replace('_', ' ')} "
                    f"({', '.join(sorted(keys)[:4])}{', ...' if len(keys) > 4 else ''}): its weights do not cover "
                    "the model, so its predictions would come from random weights"
                )
        check_processor_sizes(processor, where)
        import torch

        if "dtype" not in kwargs and "torch_dtype" not in kwargs and any(
                p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
            model = model.float()  # weights kept in half precision for size; CPUs lack fast half convolutions

        bad = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
               if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if bad:
            raise ValueError(f"the segmentation model in {where!r} has NaN or infinite weights ({', '.join(bad[:4])})")
        return cls(model, processor)

    @staticmethod
    def _label_lut(id2label: dict) -> np.ndarray:
        from ..labels import ID2LABEL, LABELS_BY_NAME, NUM_CLASSES

        names = {int(k): str(v).strip().lower() for k, v in id2label.items()}
        if not names or min(names) < 0:
            raise ValueError("the segmentation model's id2label is empty or has negative ids")
        train_names = {name: train_id for train_id, name in ID2LABEL.items()}
        lut = np.full(max(names) + 1, 255, dtype=np.uint8)
        values = list(names.values())
        if values and all(name in train_names for name in values) and len(set(values)) == len(values):
            for index, name in names.items():
                lut[index] = train_names[name]
            return lut
        official = {name.lower(): label for name, label in LABELS_BY_NAME.items()}
        known = [name for name in names.values() if name in official]
        if len(known) < NUM_CLASSES:
            raise ValueError(
                "the segmentation model's id2label is neither Cityscapes train classes (all 19 or some) nor the "
                f"official Cityscapes label table (labels: {sorted(set(names.values()))[:8]}...)"
            )
        for index, name in names.items():
            label = official.get(name)
            if label is not None and 0 <= label.train_id < NUM_CLASSES:
                lut[index] = label.train_id
        return lut

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Predict a uint8 train-id map at the image's own resolution."""
        import torch

        height, width = image.shape[:2]
        if max(height, width) > MAX_SEGMENTER_ASPECT * max(1, min(height, width)):
            raise ValueError(f"the segmenter reads photographs: one side of a {height}x{width} image is more than "
                             f"{MAX_SEGMENTER_ASPECT:g} times the other; pass its label map instead")
        inputs = self.processor(images=Image.fromarray(image), return_tensors="pt")
        parameter = next(self.model.parameters())
        inputs = {k: v.to(device=parameter.device) for k, v in inputs.items()}
        with torch.no_grad():
            logits = self.model(**inputs).logits
        logits = torch.nn.functional.interpolate(
            logits.float(), size=(height, width), mode="bilinear", align_corners=False
        )
        labels = logits.argmax(dim=1)[0].cpu().numpy()
        return self.lut[labels]


@dataclass(frozen=True)
class RateFit:
    """What :func:`encode_to_rate` chose: the stream, its rate, and the coarse settings that gave it."""

    stream: bytes
    bpp: float
    target_bpp: float
    coarse_quality: int
    downsample: int


def _check_downsample(downsample) -> int:
    if not isinstance(downsample, (int, np.integer)) or isinstance(downsample, bool) or downsample < 1:
        raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
    return int(downsample)


def _prepare(image, segmentation_map, segmenter, instance_map):
    rgb = _to_rgb_array(image)
    height, width = rgb.shape[:2]
    if (segmentation_map is None) == (segmenter is None):
        raise ValueError("pass exactly one of segmentation_map (ground truth) or segmenter (a model to predict it)")
    if segmentation_map is None:
        if not isinstance(segmenter, Segmenter):
            segmenter = Segmenter.from_pretrained(segmenter)
        labels = segmenter(rgb)
    else:
        labels = _to_label_array(segmentation_map)
    if labels.shape != (height, width):
        raise ValueError(f"segmentation map is {labels.shape[0]}x{labels.shape[1]} but the image is {height}x{width}")
    instances = None if instance_map is None else check_instance_map(instance_map, (height, width))
    return rgb, labels, instances


def encode_to_rate(
    image,
    segmentation_map=None,
    *,
    target_bpp: float,
    segmenter: str | os.PathLike | Segmenter | None = None,
    coarse_codec: str | None = None,
    downsample: int | Sequence[int] = 4,
    map_coder: str = DEFAULT_MAP_CODER,
    chroma: str | None = None,
    instance_map=None,
) -> RateFit:
    """Code an image at the highest rate at or below ``target_bpp`` (bits per original pixel).

    The map is lossless, so only the coarse image moves: its quality is searched over the codec's
    whole range (bisection, then the neighbours of the answer, since rate is not always monotone
    in quality), for each ``downsample`` factor given; the stream closest to the target from below
    wins.  Raises ValueError when the target is below what the map alone costs, or below the
    smallest coarse image's stream.
    """
    valid = isinstance(target_bpp, (int, float)) and not isinstance(target_bpp, bool)
    if not valid or not math.isfinite(target_bpp) or target_bpp <= 0:
        raise ValueError(f"target_bpp must be a positive number of bits per pixel, got {target_bpp!r}")
    factors = [downsample] if isinstance(downsample, (int, np.integer)) else list(downsample)
    if not factors:
        raise ValueError("downsample must be a positive integer or a non-empty list of them")
    factors = sorted({_check_downsample(f) for f in factors})
    rgb, labels, instances = _prepare(image, segmentation_map, segmenter, instance_map)
    height, width = rgb.shape[:2]
    pixels = height * width
    coder = get_map_coder(map_coder)
    map_payload = coder.encode(labels)
    instance_payload = None if instances is None else encode_instance_edges(instances, labels, coder)
    codec = select_coarse_codec(coarse_codec, None, chroma=chroma)  # None: the default codec, or a fallback
    coarse_codec = codec.name

    def stream_for(factor: int, quality: int) -> bytes:
        coarse = get_coarse_codec(coarse_codec, quality, chroma=chroma).encode(area_downsample(rgb, factor))
        return pack_stream(
            height=height, width=width, downsample=factor, map_coder=coder.name, coarse_codec=codec.name,
            map_payload=map_payload, coarse_payload=coarse, instance_payload=instance_payload,
        )  # fmt: skip

    map_only = pack_stream(
        height=height, width=width, downsample=factors[0], map_coder=coder.name, coarse_codec=codec.name,
        map_payload=map_payload, coarse_payload=b"", instance_payload=instance_payload,
    )  # fmt: skip
    map_bpp = 8 * len(map_only) / pixels
    if map_bpp >= target_bpp:
        raise ValueError(
            f"target_bpp {target_bpp:g} is below the map's own cost: the lossless map (and header) alone take "
            f"{map_bpp:.4f} bpp"
        )
    qualities = quality_candidates(codec)  # from the smallest payload to the largest
    results = []  # per factor: (stream, quality, factor, reached)
    for factor in factors:
        found = search_rate(lambda index, factor=factor: stream_for(factor, qualities[index]), len(qualities),
                            lambda size: 8 * size / pixels <= target_bpp, neighbours=2)
        results.append((found.stream, qualities[found.index], factor, found.fits))
    reached = [result for result in results if result[3]]
    if not reached:
        stream, quality, factor, _ = min(results, key=lambda result: len(result[0]))
        raise ValueError(
            f"target_bpp {target_bpp:g} cannot be reached: the smallest coarse image ({coarse_codec} at quality "
            f"{quality}, downsample {factor}) brings the stream to {8 * len(stream) / pixels:.4f} bpp "
            f"(the map takes {map_bpp:.4f})"
        )
    best = max(reached, key=lambda result: len(result[0]))[:3]
    stream, quality, factor = best
    return RateFit(stream=stream, bpp=8 * len(stream) / pixels, target_bpp=float(target_bpp),
                   coarse_quality=quality, downsample=factor)  # fmt: skip


def encode(
    image,
    segmentation_map=None,
    *,
    segmenter: str | os.PathLike | Segmenter | None = None,
    coarse_codec: str | None = None,
    coarse_quality: int | float | None = None,
    downsample: int | Sequence[int] = 4,
    map_coder: str = DEFAULT_MAP_CODER,
    chroma: str | None = None,
    target_bpp: float | None = None,
    instance_map=None,
) -> bytes:
    """Code an image into a SPIC stream.

    Args:
        image: PIL image or uint8 HxWx3 array.
        segmentation_map: train-id map (HxW, 255 = ignore) of the same size; or pass ``segmenter``.
        segmenter: a :class:`Segmenter` or a path / Hub id of a ``transformers`` segmentation model.
        coarse_codec: lossy codec for the coarse image (see ``COARSE_CODECS``); None: the default, HEVC at
            QP 35, or (unavailable) the first available of ``COARSE_FALLBACKS``, with a logged warning.
        coarse_quality: that codec's quality (its meaning is in ``get_coarse_codec(name).quality_help``).
        downsample: the coarse image is the area downsample of the image by this factor; with
            ``target_bpp``, a list of factors to choose from.
        map_coder: lossless coder for the map (see ``MAP_CODERS``).
        chroma: ``hevc`` only: ``"444"`` (default, the paper's) or ``"420"`` (BPG's default).
        target_bpp: choose the coarse quality (and factor) giving the highest rate at or below this
            many bits per pixel instead of ``coarse_quality``; :func:`encode_to_rate` also says
            what it chose.
        instance_map: instance ids (HxW integers) for models with an instance-edge channel; the
            stream then carries the instance edges (format version 2).
    """
    if target_bpp is not None:
        if coarse_quality is not None:
            raise ValueError("pass either coarse_quality or target_bpp, not both")
        return encode_to_rate(
            image, segmentation_map, target_bpp=target_bpp, segmenter=segmenter, coarse_codec=coarse_codec,
            downsample=downsample, map_coder=map_coder, chroma=chroma, instance_map=instance_map,
        ).stream  # fmt: skip
    factor = _check_downsample(downsample)
    rgb, labels, instances = _prepare(image, segmentation_map, segmenter, instance_map)
    height, width = rgb.shape[:2]
    coder = get_map_coder(map_coder)
    codec = select_coarse_codec(coarse_codec, coarse_quality, chroma=chroma)
    coarse = area_downsample(rgb, factor)
    return pack_stream(
        height=height,
        width=width,
        downsample=factor,
        map_coder=coder.name,
        coarse_codec=codec.name,
        map_payload=coder.encode(labels),
        coarse_payload=codec.encode(coarse),
        instance_payload=None if instances is None else encode_instance_edges(instances, labels, coder),
    )
