"""The Cityscapes label table: ids, train ids, names, colours and the conversions between them.

SPIC transmits the semantic map in the 19 Cityscapes *train ids* (255 = ignore); the 34 official *label
ids* are only read from disk and converted. Everything in the package uses this table, so it imports
nothing of the package.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

NUM_CLASSES = 19
IGNORE_INDEX = 255

class CityscapesLabel(NamedTuple):
    """One row of the official Cityscapes label table."""

    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# The official Cityscapes table (cityscapesScripts `labels.py`): 34 labels plus "license plate".
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", 0, False, True, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", 0, False, True, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", 1, False, False, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", 1, False, False, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", 1, False, True, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", 1, False, True, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", 2, False, False, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", 2, False, False, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", 2, False, False, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", 2, False, True, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", 2, False, True, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", 2, False, True, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", 3, False, False, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", 3, False, True, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", 3, False, False, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", 3, False, False, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", 4, False, False, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", 4, False, False, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", 5, False, False, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", 6, True, False, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", 6, True, False, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", 7, True, False, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", 7, True, False, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", 7, True, False, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", 7, True, True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", 7, True, True, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", 7, True, False, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", 7, True, False, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", 7, True, False, (119, 11, 32)),
    CityscapesLabel("license plate", -1, -1, "vehicle", 7, False, True, (0, 0, 142)),
)

LABELS_BY_NAME: dict[str, CityscapesLabel] = {label.name: label for label in CITYSCAPES_LABELS}
LABELS_BY_ID: dict[int, CityscapesLabel] = {label.id: label for label in CITYSCAPES_LABELS}
TRAIN_LABELS: tuple[CityscapesLabel, ...] = tuple(
    sorted(
        (label for label in CITYSCAPES_LABELS if 0 <= label.train_id < NUM_CLASSES), key=lambda label: label.train_id
    )
)
assert [label.train_id for label in TRAIN_LABELS] == list(range(NUM_CLASSES))

# train id -> class name, as used by `id2label.json` and model cards.
ID2LABEL: dict[int, str] = {label.train_id: label.name for label in TRAIN_LABELS}
LABEL2ID: dict[str, int] = {name: train_id for train_id, name in ID2LABEL.items()}
# [19, 3] uint8 palette of the train classes.
TRAIN_ID_COLORS: np.ndarray = np.array([label.color for label in TRAIN_LABELS], dtype=np.uint8)
# train id -> official label id (the inverse of the 34 -> 19 mapping on the 19 classes).
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array([label.id for label in TRAIN_LABELS], dtype=np.uint8)
# Label ids whose pixels carry instance numbers (id * 1000 + k) in `*_instanceIds.png`.
INSTANCE_LABEL_IDS: tuple[int, ...] = tuple(label.id for label in CITYSCAPES_LABELS if label.has_instances)


def _build_label_id_lut() -> np.ndarray:
    # 256 entries so a uint8 label image indexes it directly; -1 means "not a Cityscapes label id".
    lut = np.full(256, -1, dtype=np.int16)
    for label in CITYSCAPES_LABELS:
        train_id = label.train_id if 0 <= label.train_id < NUM_CLASSES else IGNORE_INDEX
        # "license plate" has id -1, which a uint8 label image stores as 255.
        lut[label.id % 256] = train_id
    return lut


LABEL_ID_TO_TRAIN_ID_LUT: np.ndarray = _build_label_id_lut()


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map official label ids (0..33, 255 for "license plate") to train ids (0..18, 255 = ignore).

    A vectorised table lookup; unknown label ids raise instead of silently becoming "ignore".
    """
    label_ids = np.asarray(label_ids)
    if label_ids.dtype.kind not in "iu":
        raise ValueError(f"label ids must be an integer array, got dtype {label_ids.dtype}")
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
        bad = np.unique(label_ids[(label_ids < 0) | (label_ids > 255)])
        raise ValueError(f"label ids out of range 0..255: {bad[:20].tolist()}")
    train_ids = LABEL_ID_TO_TRAIN_ID_LUT[label_ids.astype(np.uint8)]
    if (train_ids < 0).any():
        bad = np.unique(label_ids[train_ids < 0])
        raise ValueError(f"values that are not Cityscapes label ids: {bad[:20].tolist()}")
    return train_ids.astype(np.uint8)


def train_ids_to_label_ids(train_ids: np.ndarray, ignore_label_id: int = 0) -> np.ndarray:
    """Map train ids back to official label ids; ignore pixels get `ignore_label_id` ("unlabeled")."""
    train_ids = validate_train_ids(train_ids)
    out = np.full(train_ids.shape, ignore_label_id, dtype=np.uint8)
    valid = train_ids != IGNORE_INDEX
    out[valid] = TRAIN_ID_TO_LABEL_ID[train_ids[valid]]
    return out


def validate_train_ids(
    train_ids: np.ndarray, num_classes: int = NUM_CLASSES, name: str = "train-id map"
) -> np.ndarray:
    """Return `train_ids` as uint8 after checking every value is in 0..num_classes-1 or 255."""
    train_ids = np.asarray(train_ids)
    if train_ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {train_ids.dtype}")
    bad_mask = (train_ids >= num_classes) & (train_ids != IGNORE_INDEX)
    if train_ids.dtype.kind == "i":
        bad_mask |= train_ids < 0
    if bad_mask.any():
        bad = np.unique(train_ids[bad_mask])
        raise ValueError(
            f"{name} has values outside 0..{num_classes - 1} that are not the ignore value "
            f"{IGNORE_INDEX}: {bad[:20].tolist()}"
        )
    return train_ids.astype(np.uint8)


def train_ids_to_color(train_ids: np.ndarray, ignore_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Colour a train-id map [H, W] with the official palette -> uint8 [H, W, 3]."""
    train_ids = validate_train_ids(train_ids)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:NUM_CLASSES] = TRAIN_ID_COLORS
    palette[IGNORE_INDEX] = ignore_color
    return palette[train_ids]


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def color_to_train_ids(color: np.ndarray) -> np.ndarray:
    """Invert the official palette: uint8 [H, W, 3] (or RGBA) -> train ids [H, W].

    Colours of the 19 train classes win over void labels sharing them (pole/polegroup,
    car/license plate); the colours of the other official labels map to 255. Any other colour
    raises, because a palette image with foreign colours is not a Cityscapes colour map.
    """
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[-1] not in (3, 4):
        raise ValueError(f"colour map must have shape [H, W, 3] or [H, W, 4], got {color.shape}")
    packed = _pack_rgb(color[..., :3])
    table: dict[int, int] = {}
    for label in CITYSCAPES_LABELS:
        table.setdefault(int(_pack_rgb(np.array(label.color))), IGNORE_INDEX)
    for label in TRAIN_LABELS:
        table[int(_pack_rgb(np.array(label.color)))] = label.train_id
    values, inverse = np.unique(packed, return_inverse=True)
    unknown = [int(v) for v in values if int(v) not in table]
    if unknown:
        shown = [((v >> 16) & 255, (v >> 8) & 255, v & 255) for v in unknown[:10]]
        raise ValueError(f"colours that are not in the Cityscapes palette: {shown}")
    mapped = np.array([table[int(v)] for v in values], dtype=np.uint8)
    return mapped[inverse.reshape(packed.shape)]


def id2label_json() -> str:
    """The `id2label.json` published next to the dataset (train id -> name)."""
    return json.dumps({str(k): v for k, v in ID2LABEL.items()}, indent=2) + "\n"


# ------------------------------------------------------------------------------------------ CamVid

# SegNet's CamVid annotation values 0..11, in order.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist", "Unlabelled",
)  # fmt: skip

# CamVid class -> Cityscapes train-id name (None: ignore, 255).
CAMVID_TO_CITYSCAPES: dict[str, str | None] = {
    "Sky": "sky",
    "Building": "building",
    "Pole": "pole",
    "Road": "road",
    "Pavement": "sidewalk",
    "Tree": "vegetation",
    "SignSymbol": "traffic sign",
    "Fence": "fence",
    "Car": "car",
    "Pedestrian": "person",
    "Bicyclist": "rider",
    "Unlabelled": None,
}

CAMVID_TO_TRAIN_ID: dict[str, int] = {
    name: (IGNORE_INDEX if target is None else LABEL2ID[target]) for name, target in CAMVID_TO_CITYSCAPES.items()
}

# The train ids CamVid labels, sorted: the classes a CamVid-trained model knows and mIoU is taken over.
CAMVID_TRAIN_IDS: tuple[int, ...] = tuple(sorted(v for v in CAMVID_TO_TRAIN_ID.values() if v != IGNORE_INDEX))

_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _value, _name in enumerate(CAMVID_CLASSES):
    _LUT[_value] = CAMVID_TO_TRAIN_ID[_name]


def camvid_to_train_ids(annotation: np.ndarray, name: str = "annotation") -> np.ndarray:
    """Map a CamVid annotation (values 0..11) to Cityscapes train ids (uint8, 255 = ignore)."""
    annotation = np.asarray(annotation)
    if annotation.ndim != 2:
        raise ValueError(f"{name}: a CamVid annotation must be single-channel, got shape {annotation.shape}")
    if annotation.size and (annotation.min() < 0 or annotation.max() >= len(CAMVID_CLASSES)):
        bad = sorted(int(v) for v in np.unique(annotation) if not 0 <= v < len(CAMVID_CLASSES))
        raise ValueError(f"{name}: CamVid annotation values must be 0..{len(CAMVID_CLASSES) - 1}, found {bad[:10]}")
    return _LUT[annotation.astype(np.int64)]


def looks_like_camvid_annotation(labels: np.ndarray) -> bool:
    """Whether a map read as train ids is more likely a raw CamVid annotation (values 0..11).

    Read as train ids, CamVid's Sky (0) becomes road: a map whose values all lie in 0..11, with no 255, and
    whose "road" covers a fifth or more of the top fifth of the frame, and more of it than of the bottom fifth,
    is sky above the street, not road.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] < 5 or not labels.size or labels.max() >= len(CAMVID_CLASSES):
        return False
    fifth = labels.shape[0] // 5
    top, bottom = (labels[:fifth] == 0).mean(), (labels[-fifth:] == 0).mean()
    return bool(top >= 0.2 and top > bottom)
