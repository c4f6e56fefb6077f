"""Procedural street scenes with exact Cityscapes maps, for tests, benchmarks, demos and smoke training.

Every scene is drawn from its own seeded `numpy.random.Generator` (never the global RNG), so a
(height, width, seed) triple always gives the same image, train-id map and instance map. Objects
are painted far to near in a one-point perspective (road, sidewalks, facades with windows,
trees, poles with signs and lights, vehicles, people, riders), so occlusions are consistent
between the picture and its maps.

The module is longer than most (about 700 lines) because the painter is one far-to-near sequence whose
steps share the scene's perspective geometry and its three canvases; cut into modules, that order would
have to be followed across files. The dataset writers at the end are thin wrappers over it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .cityscapes import (
    COLOR_SUFFIX,
    IMAGE_SUFFIX,
    INSTANCE_IDS_SUFFIX,
    LABEL_IDS_SUFFIX,
    LABELS_BY_NAME,
    SPLIT_NAMES,
    TRAIN_IDS_SUFFIX,
    dataset_features,
    encode_png,
    label_ids_to_train_ids,
    parse_coarse_spec,
    require_make_coarse,
)

# Official label ids of the classes the generator paints.
_ID = {name: label.id for name, label in LABELS_BY_NAME.items()}
_HAS_INSTANCES = np.zeros(256, dtype=bool)
for _label in LABELS_BY_NAME.values():
    if _label.has_instances:
        _HAS_INSTANCES[_label.id] = True

# Per-label texture strength (std of the pixel noise, in 0..255 units).
_TEXTURE = np.full(256, 5.0, dtype=np.float32)
for _name, _sigma in {
    "vegetation": 16.0,
    "terrain": 10.0,
    "building": 7.0,
    "road": 6.0,
    "sidewalk": 6.0,
    "sky": 2.0,
    "wall": 6.0,
}.items():
    _TEXTURE[_ID[_name]] = _sigma

CITY_NAMES = {
    "train": ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn", "leverkusen", "mainz", "munich"),
}

_CAR_COLORS = np.array(
    [
        (200, 200, 205),
        (30, 30, 35),
        (150, 150, 155),
        (160, 25, 30),
        (30, 55, 130),
        (70, 75, 80),
        (235, 235, 235),
        (120, 20, 20),
        (40, 90, 60),
        (180, 160, 120),
    ],
    dtype=np.float32,
)
_CLOTHES = np.array(
    [(30, 30, 40), (140, 30, 40), (40, 60, 120), (200, 200, 200), (90, 90, 60), (60, 40, 30), (180, 120, 40)],
    dtype=np.float32,
)
_SKIN = np.array([(230, 190, 160), (200, 150, 120), (140, 95, 70), (90, 60, 45)], dtype=np.float32)


@dataclass(frozen=True)
class SyntheticScene:
    """One generated frame.

    Attributes:
        image: uint8 [H, W, 3].
        semantic_map: uint8 [H, W] Cityscapes train ids (255 = ignore, e.g. the ego vehicle).
        instance_map: int32 [H, W] in the Cityscapes convention: ``label_id * 1000 + k`` on
            instance classes (person, rider, car, truck, bus, train, motorcycle, bicycle), the
            plain label id elsewhere.
    """

    image: np.ndarray
    semantic_map: np.ndarray
    instance_map: np.ndarray

    @property
    def label_ids(self) -> np.ndarray:
        """uint8 [H, W] official label ids (what ``*_gtFine_labelIds.png`` holds)."""
        ids = np.where(self.instance_map >= 1000, self.instance_map // 1000, self.instance_map)
        return ids.astype(np.uint8)


class _Canvas:
    """Label ids, instance ids and colour painted together so they never disagree."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.label = np.zeros((height, width), dtype=np.uint8)
        self.inst = np.zeros((height, width), dtype=np.int32)
        self.rgb = np.zeros((height, width, 3), dtype=np.float32)
        self.counters: dict[int, int] = {}

    def new_instance(self, label_id: int) -> int:
        k = self.counters.get(label_id, 0)
        self.counters[label_id] = k + 1
        return label_id * 1000 + k

    def box(self, y0: float, y1: float, x0: float, x1: float):
        """Clipped integer bounding box and local coordinate grids (pixel centres), or None."""
        iy0, iy1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), self.h)
        ix0, ix1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), self.w)
        if iy0 >= iy1 or ix0 >= ix1:
            return None
        yy = np.arange(iy0, iy1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(ix0, ix1, dtype=np.float32)[None, :] + 0.5
        return (slice(iy0, iy1), slice(ix0, ix1)), yy, xx

    def paint(self, region, mask: np.ndarray | None, label_id: int, color, instance: int | None = None) -> None:
        sl = region
        if mask is None:
            mask = np.ones((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), dtype=bool)
        if not mask.any():
            return
        self.label[sl][mask] = label_id
        self.inst[sl][mask] = instance if instance is not None else label_id
        color = np.asarray(color, dtype=np.float32)
        if color.ndim == 1:
            self.rgb[sl][mask] = color
        else:
            self.rgb[sl][mask] = color[mask]

    def recolor(self, region, mask: np.ndarray, color) -> None:
        """Change colour only (details such as windows and wheels that keep their object's label)."""
        if mask.any():
            self.rgb[region][mask] = np.asarray(color, dtype=np.float32)

    def rect(self, y0, y1, x0, x1, label_id, color, instance=None) -> None:
        found = self.box(y0, y1, x0, x1)
        if found is not None:
            self.paint(found[0], None, label_id, color, instance)

    def ellipse(self, cy, cx, ry, rx, label_id, color, instance=None) -> None:
        ry, rx = max(ry, 0.5), max(rx, 0.5)
        found = self.box(cy - ry, cy + ry, cx - rx, cx + rx)
        if found is not None:
            region, yy, xx = found
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            self.paint(region, mask, label_id, color, instance)


def _jitter(rng: np.random.Generator, color, amount: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(color, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def make_scene(height: int = 256, width: int = 512, seed: int = 0) -> SyntheticScene:
    """Generate one street scene of any size (e.g. 32x64, 256x512) from `seed`."""
    if int(height) < 8 or int(width) < 8:
        raise ValueError(f"scenes need at least 8x8 pixels, got {height}x{width}")
    height, width = int(height), int(width)
    rng = np.random.default_rng(seed)
    c = _Canvas(height, width)
    H, W = float(height), float(width)

    horizon = H * rng.uniform(0.36, 0.5)
    vanish_x = W * rng.uniform(0.4, 0.6)
    depth = H - horizon  # rows below the horizon
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    dy = ys - horizon
    dx = xs - vanish_x
    adx = np.abs(dx)

    # Half-widths per row below the horizon are k * dy (one-point perspective).
    k_road = W * rng.uniform(0.26, 0.4) / depth
    k_side = k_road + W * rng.uniform(0.1, 0.22) / depth
    k_terrain = k_side + (W * rng.uniform(0.05, 0.15) / depth if rng.random() < 0.6 else 0.0)

    # Sky: a vertical gradient, lighter towards the horizon.
    t = np.clip(ys / max(horizon, 1.0), 0, 1)
    top = _jitter(rng, (60, 110, 190), 15)
    low = _jitter(rng, (175, 200, 225), 15)
    c.label[:] = _ID["sky"]
    c.inst[:] = _ID["sky"]
    c.rgb[:] = (top[None, None] * (1 - t[..., None]) + low[None, None] * t[..., None]).astype(np.float32)

    # Ground: road, sidewalks, optional terrain strips; facades cover what lies beyond.
    below = dy > 0
    road = below & (adx < k_road * dy)
    sidewalk = below & ~road & (adx < k_side * dy)
    terrain = below & ~road & ~sidewalk & (adx < k_terrain * dy)
    outer = below & ~road & ~sidewalk & ~terrain
    road_color = _jitter(rng, (105, 100, 108), 12)
    c.paint((slice(None), slice(None)), road, _ID["road"], road_color)
    # Lane markings (dashed, spaced in inverse depth so they shrink towards the horizon).
    inv = np.where(dy > 0, depth / np.maximum(dy, 1e-3), 0.0)
    dashes = road & (adx < 0.012 * k_road * dy + 0.3) & (np.floor(inv * 2.0) % 2 == 0)
    c.recolor((slice(None), slice(None)), dashes, (225, 225, 215))
    c.paint((slice(None), slice(None)), sidewalk, _ID["sidewalk"], _jitter(rng, (175, 165, 170), 15))
    tiles = sidewalk & (np.floor(inv * 6.0) % 2 == 0)
    c.recolor((slice(None), slice(None)), tiles, _jitter(rng, (160, 150, 155), 8))
    c.paint((slice(None), slice(None)), terrain, _ID["terrain"], _jitter(rng, (110, 150, 70), 15))

    # Facades: building segments on both sides; top edge falls towards the vanishing point.
    k_out = k_terrain
    ground_line = horizon + adx / k_out  # the facade's bottom edge at each column
    facade_rows = outer | (dy <= 0)
    for side in (-1, 1):
        edge = 0.0 if side < 0 else W
        span = abs(edge - vanish_x)
        x = vanish_x + side * span * rng.uniform(0.02, 0.08)
        while (x - edge) * side < 0:
            seg = span * rng.uniform(0.12, 0.35)
            x0, x1 = sorted((x, x + side * seg))
            x = x + side * seg
            if rng.random() < 0.12:
                continue  # a gap: sky or trees show through
            height_factor = rng.uniform(0.3, 1.1)
            found = c.box(0, H, x0, x1)
            if found is None:
                continue
            region, yy, xx = found
            distance = np.abs(xx - vanish_x) / (W / 2)
            roof = horizon - height_factor * H * (0.08 + 0.9 * distance)
            mask = (yy >= roof) & facade_rows[region] & (yy < ground_line[region] + 0.5)
            base = _jitter(rng, rng.choice([(150, 130, 110), (120, 115, 110), (175, 160, 140), (95, 85, 80)]), 18)
            c.paint(region, mask, _ID["building"], base)
            # Windows: a grid whose pitch shrinks with distance to the vanishing point.
            pitch = np.maximum(2.0, H * 0.06 * (0.3 + distance))
            win = mask & (((xx - x0) % pitch) < pitch * 0.5) & (((yy - roof) % pitch) > pitch * 0.45)
            win &= yy < ground_line[region] - pitch
            c.recolor(region, win, _jitter(rng, (55, 65, 80), 15))

    # Distant buildings at the end of the street.
    for _ in range(int(rng.integers(1, 4))):
        cx = vanish_x + W * rng.uniform(-0.12, 0.12)
        half = W * rng.uniform(0.02, 0.07)
        c.rect(
            horizon - H * rng.uniform(0.03, 0.12),
            horizon + 1,
            cx - half,
            cx + half,
            _ID["building"],
            _jitter(rng, (140, 140, 150), 15),
        )

    # Walls and fences along the facades' base on one side.
    for name, color, p in (("wall", (120, 118, 130), 0.5), ("fence", (150, 130, 110), 0.55)):
        if rng.random() >= p:
            continue
        side = -1 if rng.random() < 0.5 else 1
        found = c.box(horizon - H * 0.2, H, 0, W)
        if found is None:
            continue
        region, yy, xx = found
        sdx = (xx - vanish_x) * side
        g = horizon + np.abs(xx - vanish_x) / k_out
        band = H * rng.uniform(0.05, 0.1) * np.abs(xx - vanish_x) / (W / 2)
        mask = (sdx > W * rng.uniform(0.05, 0.2)) & (yy < g) & (yy >= g - band)
        if name == "fence":
            pitch = max(2.0, H * 0.02)
            bars = ((xx % pitch) < pitch * 0.4) | ((yy - (g - band)) < np.maximum(1.0, band * 0.15))
            c.paint(region, mask & bars, _ID[name], _jitter(rng, color, 15))
        else:
            c.paint(region, mask, _ID[name], _jitter(rng, color, 12))

    # Depth samples: d in (0, 1] is the fraction of the ground depth (1 = bottom row).
    def row_of(d: float) -> float:
        return horizon + d * depth

    objects: list[tuple[float, str, dict]] = []

    # Trees on the outer sidewalk edge.
    for _ in range(int(rng.integers(1, 5))):
        objects.append((rng.uniform(0.08, 0.9), "tree", {"side": rng.choice([-1, 1])}))
    # Poles with a sign or a traffic light.
    for _ in range(int(rng.integers(1, 4))):
        objects.append(
            (
                rng.uniform(0.15, 0.95),
                "pole",
                {"side": rng.choice([-1, 1]), "kind": rng.choice(["sign", "light", "both"])},
            )
        )
    # Vehicles on the road.
    for _ in range(int(rng.integers(1, 6))):
        kind = rng.choice(["car", "car", "car", "truck", "bus"], p=[0.25, 0.25, 0.25, 0.15, 0.1])
        objects.append((rng.uniform(0.08, 0.95), str(kind), {"lane": rng.uniform(-0.75, 0.75)}))
    if rng.random() < 0.2:
        objects.append((rng.uniform(0.05, 0.3), "train", {"lane": rng.uniform(-0.3, 0.3)}))
    # People on the sidewalks, riders on the road edge.
    for _ in range(int(rng.integers(0, 5))):
        objects.append((rng.uniform(0.1, 0.95), "person", {"side": rng.choice([-1, 1])}))
    for _ in range(int(rng.integers(0, 3))):
        objects.append(
            (rng.uniform(0.15, 0.95), "cycle", {"side": rng.choice([-1, 1]), "motor": bool(rng.random() < 0.5)})
        )
    objects.sort(key=lambda item: item[0])

    for d, kind, params in objects:
        y_base = row_of(d)
        s = d * depth  # local scale: one "road half-width unit" is k_road * s pixels
        if kind == "tree":
            x = vanish_x + params["side"] * (k_side + 0.15 * (k_terrain - k_side + 1e-6)) * s
            trunk_h = s * k_road * rng.uniform(0.6, 1.0)
            trunk_w = max(1.0, s * k_road * 0.06)
            c.rect(
                y_base - trunk_h,
                y_base,
                x - trunk_w / 2,
                x + trunk_w / 2,
                _ID["vegetation"],
                _jitter(rng, (80, 60, 40), 10),
            )
            crown_r = s * k_road * rng.uniform(0.35, 0.6)
            for _ in range(3):
                c.ellipse(
                    y_base - trunk_h - crown_r * rng.uniform(0.2, 0.8),
                    x + crown_r * rng.uniform(-0.5, 0.5),
                    crown_r * rng.uniform(0.6, 1.0),
                    crown_r * rng.uniform(0.7, 1.1),
                    _ID["vegetation"],
                    _jitter(rng, (70, 110, 45), 15),
                )
        elif kind == "pole":
            x = vanish_x + params["side"] * (k_road + 0.8 * (k_side - k_road)) * s
            pole_h = s * k_road * rng.uniform(1.6, 2.4)
            pole_w = max(1.0, s * k_road * 0.035)
            c.rect(
                y_base - pole_h, y_base, x - pole_w / 2, x + pole_w / 2, _ID["pole"], _jitter(rng, (110, 110, 115), 10)
            )
            top = y_base - pole_h
            size = max(1.5, s * k_road * 0.16)
            if params["kind"] in ("sign", "both"):
                sign_color = rng.choice([(200, 30, 30), (30, 70, 170), (230, 200, 40), (240, 240, 240)])
                c.rect(top, top + size, x - size / 2, x + size / 2, _ID["traffic sign"], _jitter(rng, sign_color, 10))
            if params["kind"] in ("light", "both"):
                ly = top + (size * 1.2 if params["kind"] == "both" else 0.0)
                lx = x - params["side"] * size * 0.8
                c.rect(
                    ly,
                    ly + size * 2.2,
                    lx - size * 0.4,
                    lx + size * 0.4,
                    _ID["traffic light"],
                    _jitter(rng, (35, 35, 35), 8),
                )
                lamp = rng.integers(0, 3)
                lamp_color = [(230, 40, 30), (240, 180, 30), (40, 220, 90)][int(lamp)]
                found = c.box(
                    ly + size * (0.2 + 0.7 * lamp), ly + size * (0.7 + 0.7 * lamp), lx - size * 0.3, lx + size * 0.3
                )
                if found is not None:
                    region = found[0]
                    c.recolor(region, c.label[region] == _ID["traffic light"], lamp_color)
        elif kind in ("car", "truck", "bus", "train"):
            x = vanish_x + params["lane"] * k_road * s
            unit = k_road * s  # road half-width at this depth
            label_id = _ID[kind]
            instance = c.new_instance(label_id)
            color = _CAR_COLORS[rng.integers(len(_CAR_COLORS))]
            if kind == "car":
                w, h = unit * rng.uniform(0.55, 0.7), unit * rng.uniform(0.4, 0.5)
                body_top = y_base - h * 0.55
                c.rect(body_top, y_base - h * 0.08, x - w / 2, x + w / 2, label_id, _jitter(rng, color, 8), instance)
                found = c.box(y_base - h, body_top + 1, x - w / 2, x + w / 2)
                if found is not None:
                    region, yy, xx = found
                    frac = np.clip((yy - (y_base - h)) / max(h * 0.45, 1e-3), 0, 1)
                    half_top = w * (0.32 + 0.12 * frac)
                    cabin = np.abs(xx - x) <= half_top
                    c.paint(region, cabin, label_id, _jitter(rng, color, 8), instance)
                    glass = cabin & (np.abs(xx - x) <= half_top - max(0.5, w * 0.05)) & (yy > y_base - h * 0.92)
                    c.recolor(region, glass, (50, 60, 75))
                for wx in (x - w * 0.32, x + w * 0.32):
                    found = c.box(y_base - h * 0.2, y_base, wx - w * 0.1, wx + w * 0.1)
                    if found is not None:
                        region, yy, xx = found
                        c.paint(region, None, label_id, (25, 25, 25), instance)
                found = c.box(y_base - h * 0.42, y_base - h * 0.32, x - w / 2, x + w / 2)
                if found is not None:
                    region, yy, xx = found
                    lights = np.abs(np.abs(xx - x) - w * 0.4) < w * 0.07
                    c.recolor(region, lights & (c.inst[region] == instance), (200, 30, 30))
            else:
                if kind == "truck":
                    w, h = unit * rng.uniform(0.75, 0.9), unit * rng.uniform(0.9, 1.1)
                    color = np.array(
                        [(220, 220, 215), (60, 90, 140), (170, 60, 40)][int(rng.integers(3))], dtype=np.float32
                    )
                elif kind == "bus":
                    w, h = unit * rng.uniform(0.8, 0.9), unit * rng.uniform(0.95, 1.1)
                    color = np.array(
                        [(230, 200, 40), (200, 40, 40), (240, 240, 240), (40, 120, 190)][int(rng.integers(4))],
                        dtype=np.float32,
                    )
                else:  # a tram crossing at the end of the street: long and low
                    w, h = unit * rng.uniform(2.5, 4.0), unit * rng.uniform(0.9, 1.1)
                    color = np.array(
                        [(210, 40, 40), (240, 240, 230), (40, 80, 160)][int(rng.integers(3))], dtype=np.float32
                    )
                c.rect(y_base - h, y_base - h * 0.08, x - w / 2, x + w / 2, label_id, _jitter(rng, color, 8), instance)
                found = c.box(
                    y_base - h * 0.9, y_base - h * (0.45 if kind != "truck" else 0.7), x - w * 0.45, x + w * 0.45
                )
                if found is not None:
                    region, yy, xx = found
                    pitch = max(2.0, w * (0.18 if kind != "truck" else 0.9))
                    panes = (((xx - x + w) % pitch) < pitch * 0.8) & (c.inst[region] == instance)
                    c.recolor(region, panes, (45, 55, 70))
                for wx in (x - w * 0.35, x + w * 0.35):
                    c.rect(y_base - h * 0.15, y_base, wx - w * 0.08, wx + w * 0.08, label_id, (25, 25, 25), instance)
        elif kind == "person":
            x = vanish_x + params["side"] * (k_road + rng.uniform(0.2, 0.8) * (k_side - k_road)) * s
            h = k_road * s * rng.uniform(0.6, 0.8)
            w = h * 0.28
            instance = c.new_instance(_ID["person"])
            legs = _CLOTHES[rng.integers(len(_CLOTHES))]
            coat = _CLOTHES[rng.integers(len(_CLOTHES))]
            skin = _SKIN[rng.integers(len(_SKIN))]
            gap = max(0.0, w * 0.12)
            c.rect(
                y_base - h * 0.48, y_base, x - w * 0.45, x - gap / 2, _ID["person"], _jitter(rng, legs, 6), instance
            )
            c.rect(
                y_base - h * 0.48, y_base, x + gap / 2, x + w * 0.45, _ID["person"], _jitter(rng, legs, 6), instance
            )
            c.rect(
                y_base - h * 0.84,
                y_base - h * 0.45,
                x - w / 2,
                x + w / 2,
                _ID["person"],
                _jitter(rng, coat, 8),
                instance,
            )
            c.ellipse(y_base - h * 0.92, x, h * 0.08, h * 0.065, _ID["person"], _jitter(rng, skin, 6), instance)
        elif kind == "cycle":
            x = vanish_x + params["side"] * k_road * s * rng.uniform(0.6, 0.85)
            unit = k_road * s
            label_id = _ID["motorcycle" if params["motor"] else "bicycle"]
            vehicle = c.new_instance(label_id)
            rider = c.new_instance(_ID["rider"])
            w, wheel = unit * 0.16, unit * 0.12  # seen from behind: narrow
            # Rider first so the vehicle's frame paints over the legs.
            body_h = unit * 0.45
            coat = _CLOTHES[rng.integers(len(_CLOTHES))]
            c.rect(
                y_base - wheel - body_h * 0.9,
                y_base - wheel * 0.8,
                x - w * 0.6,
                x + w * 0.6,
                _ID["rider"],
                _jitter(rng, coat, 8),
                rider,
            )
            c.ellipse(
                y_base - wheel - body_h,
                x,
                unit * 0.05,
                unit * 0.045,
                _ID["rider"],
                _jitter(rng, (60, 60, 70) if params["motor"] else _SKIN[rng.integers(len(_SKIN))], 6),
                rider,
            )
            frame_color = (40, 40, 45) if params["motor"] else _jitter(rng, (150, 30, 40), 30)
            c.rect(
                y_base - wheel * 2.0,
                y_base,
                x - w * (0.35 if params["motor"] else 0.12),
                x + w * (0.35 if params["motor"] else 0.12),
                label_id,
                frame_color,
                vehicle,
            )
            c.rect(
                y_base - wheel * 2.2, y_base - wheel * 1.9, x - w * 0.9, x + w * 0.9, label_id, (30, 30, 30), vehicle
            )

    # Ego vehicle: the car's hood at the bottom (ignored in training, as in Cityscapes).
    if rng.random() < 0.5:
        hood_h = H * rng.uniform(0.05, 0.12)
        found = c.box(H - hood_h, H, 0, W)
        if found is not None:
            region, yy, xx = found
            curve = H - hood_h * (1.0 - ((xx - W / 2) / (W * 0.75)) ** 2)
            c.paint(region, yy >= curve, _ID["ego vehicle"], _jitter(rng, (40, 40, 45), 10))

    # Shading: broad illumination changes plus per-class texture noise.
    grid = rng.uniform(0.85, 1.1, size=(3, 5)).astype(np.float32)
    light = np.asarray(Image.fromarray(grid).resize((width, height), resample=Image.BILINEAR))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32)
    noise *= _TEXTURE[c.label][..., None]
    shade_rows = 1.0 - 0.15 * np.clip((ys - horizon) / max(depth, 1.0), 0, 1) * (c.label == _ID["road"])
    rgb = c.rgb * (light[..., None] * shade_rows[..., None]) + noise
    image = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    semantic = label_ids_to_train_ids(c.label)
    return SyntheticScene(image=image, semantic_map=semantic, instance_map=c.inst.copy())


# --------------------------------------------------------------------------------------------
# Ready-made datasets and fake Cityscapes folders
# --------------------------------------------------------------------------------------------


def scene_seed(seed: int, split: str, index: int) -> int:
    """The seed of scene `index` of `split` (independent streams for every split and index)."""
    split_key = sum((i + 1) * ord(ch) for i, ch in enumerate(split))
    return int(np.random.SeedSequence([int(seed), split_key, int(index)]).generate_state(1)[0])


def frame_id(city: str, sequence: int, frame: int = 19) -> str:
    """A Cityscapes-style frame id such as ``aachen_000000_000019``."""
    return f"{city}_{sequence:06d}_{frame:06d}"


def _frames(split: str, count: int, cities: Sequence[str] | None) -> list[tuple[str, str]]:
    names = tuple(cities) if cities else CITY_NAMES.get(split, CITY_NAMES["train"])
    return [(names[i % len(names)], frame_id(names[i % len(names)], i // len(names))) for i in range(count)]


def _synthetic_row(job: tuple) -> dict:
    """One dataset row (PNG-encoded columns) of the scene with the given seed."""
    (height, width, with_instances, coarse, coarse_downsample), scene_seed_value, city, fid = job
    scene = make_scene(height, width, scene_seed_value)
    row = {"image": encode_png(scene.image), "semantic_map": encode_png(scene.semantic_map), "city": city, "id": fid}
    if with_instances:
        row["instance_map"] = encode_png(scene.instance_map)
    if coarse == "downsample":
        from ..image_processing import resize_image

        row["coarse"] = encode_png(resize_image(scene.image, (height // coarse_downsample, width // coarse_downsample)))
    elif coarse is not None:
        codec, quality = parse_coarse_spec(coarse)
        low = require_make_coarse()(scene.image, coarse_downsample, codec, quality)
        row["coarse"] = encode_png(np.asarray(low, dtype=np.uint8))
    return row


def _map_ordered(fn, jobs: list, num_proc: int) -> list:
    """``[fn(job) for job in jobs]``, over a process pool when ``num_proc > 1`` (workers' errors re-raised)."""
    if num_proc <= 1 or len(jobs) < 2:
        return [fn(job) for job in jobs]
    import multiprocessing

    with multiprocessing.get_context().Pool(min(num_proc, len(jobs))) as pool:
        return pool.map(fn, jobs, chunksize=max(1, len(jobs) // (4 * num_proc)))


def make_synthetic_dataset(
    num_scenes: int | dict[str, int],
    height: int = 64,
    width: int = 128,
    seed: int = 0,
    splits: Sequence[str] | dict[str, int] = ("train", "validation"),
    *,
    with_instances: bool = True,
    coarse: str | None = None,
    coarse_downsample: int = 4,
    cities: Sequence[str] | None = None,
    num_proc: int | None = None,
):
    """A small `DatasetDict` of synthetic scenes in exactly the converter's format.

    Args:
        num_scenes: scenes per split, or a ``{"train": 8, "validation": 2}`` dict (then `splits` is unused).
        splits: split names (``train``, ``validation``, ``test``).
        coarse: ``None`` (no ``coarse`` column), ``"downsample"`` (the image downsampled by
            `coarse_downsample`, no lossy codec) or ``"CODEC:QUALITY"`` (via
            `spic_diffusers.codec.make_coarse`).
        num_proc: worker processes that render the scenes (and code their coarse images); the rows do not
            depend on it, since every scene has its own seed.
    """
    import datasets

    if isinstance(num_scenes, dict):
        counts = dict(num_scenes)
    elif isinstance(splits, dict):
        counts = dict(splits)
    else:
        counts = {name: int(num_scenes) for name in splits}
    valid_splits = set(SPLIT_NAMES.values())
    for name, count in counts.items():
        if name not in valid_splits:
            raise ValueError(f"unknown split {name!r}; use one of {sorted(valid_splits)}")
        if count < 0:
            raise ValueError(f"number of scenes must be >= 0, got {count} for {name!r}")
    if coarse is not None and coarse != "downsample":
        parse_coarse_spec(coarse)
        require_make_coarse()  # fail here, not in a worker
    if coarse is not None and (height % coarse_downsample or width % coarse_downsample):
        raise ValueError(f"{height}x{width} must be divisible by coarse_downsample {coarse_downsample}")
    if num_proc is not None and num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc}")

    features = dataset_features(with_instances=with_instances, with_coarse=coarse is not None)
    cityscapes_split = {v: k for k, v in SPLIT_NAMES.items()}
    spec = (height, width, with_instances, coarse, coarse_downsample)
    result = {}
    for name, count in counts.items():
        jobs = [(spec, scene_seed(seed, name, index), city, fid)
                for index, (city, fid) in enumerate(_frames(cityscapes_split[name], count, cities))]
        rows = _map_ordered(_synthetic_row, jobs, num_proc or 1)
        columns = {key: [row[key] for row in rows] for key in features}
        result[name] = datasets.Dataset.from_dict(columns, features=features, split=datasets.NamedSplit(name))
    return datasets.DatasetDict(result)


def write_fake_cityscapes(
    output_dir: str | os.PathLike,
    *,
    cities: int = 2,
    per_city: int = 3,
    splits: Iterable[str] = ("train", "val"),
    height: int = 64,
    width: int = 128,
    seed: int = 0,
    with_train_ids: bool = False,
    with_color: bool = True,
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Write a fake Cityscapes tree with the real file naming; returns ``{split: {frame id: seed}}``.

    ``gtFine/*_labelIds.png`` hold official label ids (not train ids), ``*_instanceIds.png`` are
    16-bit, ``*_labelTrainIds.png`` are written with `with_train_ids` and ``*_color.png`` (RGBA,
    official palette) with `with_color`. Scene `seed`s let tests regenerate any frame's truth.
    """
    from .cityscapes import CITYSCAPES_LABELS

    root = Path(output_dir)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True (--overwrite) to write into it")
    splits = [s.strip() for s in splits if s.strip()]
    for split in splits:
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown Cityscapes split {split!r}; use one of {sorted(SPLIT_NAMES)}")
    if cities < 1 or per_city < 1:
        raise ValueError("cities and per_city must be >= 1")
    palette = np.zeros((256, 4), dtype=np.uint8)
    for label in reversed(CITYSCAPES_LABELS):
        palette[label.id % 256, :3] = label.color
        palette[label.id % 256, 3] = 255

    written: dict[str, dict[str, int]] = {}
    for split in splits:
        names = CITY_NAMES[split]
        written[split] = {}
        for ci in range(cities):
            city = names[ci % len(names)] if ci < len(names) else f"{names[ci % len(names)]}{ci // len(names)}"
            image_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            for k in range(per_city):
                fid = frame_id(city, k)
                scene_index = ci * per_city + k
                s = scene_seed(seed, split, scene_index)
                scene = make_scene(height, width, s)
                written[split][fid] = s
                Image.fromarray(scene.image).save(image_dir / f"{fid}{IMAGE_SUFFIX}")
                label_ids = scene.label_ids
                Image.fromarray(label_ids).save(gt_dir / f"{fid}{LABEL_IDS_SUFFIX}")
                Image.fromarray(scene.instance_map.astype(np.uint16)).save(gt_dir / f"{fid}{INSTANCE_IDS_SUFFIX}")
                if with_train_ids:
                    Image.fromarray(scene.semantic_map).save(gt_dir / f"{fid}{TRAIN_IDS_SUFFIX}")
                if with_color:
                    Image.fromarray(palette[label_ids]).save(gt_dir / f"{fid}{COLOR_SUFFIX}")
    return written


def make_street_map(height: int, width: int, seed: int) -> np.ndarray:
    """A map-only street layout (train ids, 255 = ignore): sky, rooflines, trees, a perspective road with
    sidewalks, cars, poles, people and the ego-vehicle hood.

    Geometry differs from `make_scene`, so map coders are measured and tested on two families of layouts.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    yy = (yy + 0.5) / height
    xx = (xx + 0.5) / width
    out = np.full((height, width), 10, dtype=np.uint8)
    horizon, vx = rng.uniform(0.35, 0.5), rng.uniform(0.35, 0.65)
    edges = np.sort(rng.uniform(0, 1, rng.integers(4, 10)))
    out[yy > rng.uniform(0.05, horizon - 0.05, len(edges) + 1)[np.searchsorted(edges, xx)]] = 2
    for _ in range(rng.integers(2, 5)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0.2, horizon), rng.uniform(0.04, 0.12)
        out[((xx - cx) / r) ** 2 + ((yy - cy) / (r * 1.6)) ** 2 < 1] = 8
    t = np.clip((yy - horizon) / (1 - horizon), 0, 1)
    below = yy > horizon
    out[below & (np.abs(xx - vx) < t * 0.8)] = 1
    out[below & (np.abs(xx - vx) < t * 0.55)] = 0
    for _ in range(rng.integers(2, 8)):
        px, top = rng.uniform(0, 1), rng.uniform(0.1, 0.3)
        out[(np.abs(xx - px) < rng.uniform(0.003, 0.01)) & (yy > top) & (yy < horizon + 0.1)] = 5
        out[(np.abs(xx - px) < 0.02) & (np.abs(yy - top) < 0.02)] = 7
    for _ in range(rng.integers(2, 7)):
        cy = rng.uniform(horizon + 0.05, 0.95)
        s = (cy - horizon) / (1 - horizon)
        cx, w, h = vx + rng.uniform(-0.6, 0.6) * s, 0.25 * s + 0.02, 0.15 * s + 0.015
        body = (np.abs(xx - cx) < w / 2) & (yy < cy) & (yy > cy - h * 0.6)
        cabin = ((xx - cx) / (w * 0.35)) ** 2 + ((yy - (cy - h * 0.6)) / (h * 0.4)) ** 2 < 1
        out[body | cabin] = 13
    for _ in range(rng.integers(0, 6)):
        cx, cy = rng.uniform(0, 1), rng.uniform(horizon, 0.9)
        out[(np.abs(xx - cx) < 0.01) & (yy < cy) & (yy > cy - 0.1)] = 11
    out[((xx - 0.5) / 0.7) ** 2 + ((yy - 1.08) / 0.15) ** 2 < 1] = 255
    return out
