"""The map coder that sees the coarse image: ``context3``, ``context2``'s model plus colour contexts.

The receiver decodes the coarse image first, so the map coder may condition on it.  Only a coarse
payload whose decoding is bit-exact by specification can be used: an HEVC intra picture's decoded
Y'CbCr samples are normative (ITU-T H.265 clause 8), its conversion to RGB is not.  The coder
therefore reads the decoded planes (see :meth:`HEVCCodec.decode_planes`), never the RGB image,
and every feature below is integer arithmetic on them: the colour cell of each pixel of the map
(:class:`CoarseGuide`: the bilinear upsample of Y', Cb, Cr at the pixel, quantised to 16 x 8 x 8).

The model is ``context2``'s (see :mod:`.map_context`) with a per-class colour model learnt while
coding: counts of each label per colour cell over the pixels coded so far.  A pixel whose eight
neighbours hold one label (most pixels, and where an object with no hint in the neighbourhood
begins) codes "same" or "new" in the context of that label and of how well its colour fits it.
Measured on CamVid train maps at 256x512 with HEVC QP 35 coarse images, the colour model buys
little elsewhere: as a fourth mixture input or a class-pair context for boundary pixels, or as a
factor on the probabilities of a new label, it saved nothing or cost bytes (a 4x-downsampled
coarse image cannot say on which side of a boundary a pixel lies), and an edge level of the
coarse image in the flat context cost a few bytes.

A payload starts with its mode: 0, coded without the coarse image (any coarse codec, or none);
1, coded with an HEVC coarse image's planes.  A mode-1 payload cannot be decoded without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitstream import BitstreamError
from .coarse import HEVCCodec, coarse_size
from .map_context import _FLAT_PRIOR, PixelContextMapCoder, _Layout, _PixelModel
from .semantic import _check_map

MODE_PLAIN = 0
MODE_HEVC = 1
_FRACTION_BITS = 4  # bilinear weights in 1/16
_Y_LEVELS_SHIFT = 4  # 16 luma levels
_C_LEVELS_SHIFT = 5  # 8 levels per chroma plane
CELLS = (256 >> _Y_LEVELS_SHIFT) * (256 >> _C_LEVELS_SHIFT) ** 2
# How well a pixel's colour fits the label around it: the share of that label among the pixels of its cell so far.
_FIT_THRESHOLDS = np.array([0.2, 0.5, 0.85])
_FIT_LEVELS = len(_FIT_THRESHOLDS) + 1
_COLOUR_PRIOR = 0.25
_COLOUR_BATCH = 8  # wavefronts between updates of the colour model (the decoder knows them by then)


def _upsample(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsample (pixel centres aligned, edges clamped) in integers: values x 256."""

    def taps(size: int, out: int):
        numerator = (2 * np.arange(out, dtype=np.int64) + 1) * size - out  # 2 * out * source coordinate
        low = numerator // (2 * out)
        weight = ((numerator - low * 2 * out) << _FRACTION_BITS) // (2 * out)
        return np.clip(low, 0, size - 1), np.clip(low + 1, 0, size - 1), weight

    y0, y1, wy = taps(plane.shape[0], height)
    x0, x1, wx = taps(plane.shape[1], width)
    p = plane.astype(np.int64)
    one = 1 << _FRACTION_BITS
    rows = p[y0] * (one - wy)[:, None] + p[y1] * wy[:, None]
    return rows[:, x0] * (one - wx)[None, :] + rows[:, x1] * wx[None, :]


@dataclass(frozen=True)
class CoarseGuide:
    """The colour cell of every pixel of the map (HxW int64 in ``0..CELLS-1``), from the coarse planes."""

    cell: np.ndarray

    @classmethod
    def from_planes(cls, planes, height: int, width: int) -> "CoarseGuide":
        """``planes``: the decoded Y', Cb, Cr (uint8, each at its own size) of the coarse image."""
        if len(planes) != 3 or any(np.asarray(p).ndim != 2 or np.asarray(p).dtype != np.uint8 for p in planes):
            raise ValueError("a coarse guide needs three uint8 planes (Y', Cb, Cr)")
        y, cb, cr = (_upsample(np.asarray(p), height, width) >> (2 * _FRACTION_BITS) for p in planes)
        chroma_levels = 8 - _C_LEVELS_SHIFT
        cell = (((y >> _Y_LEVELS_SHIFT) << chroma_levels | cb >> _C_LEVELS_SHIFT) << chroma_levels) | (
            cr >> _C_LEVELS_SHIFT
        )
        return cls(cell=cell)


class _GuidedModel(_PixelModel):
    """``context2``'s model; a pixel among neighbours of one label also sees how well its colour fits that label."""

    def __init__(self, num_labels: int, layout: _Layout, guide: CoarseGuide):
        super().__init__(num_labels)
        n = num_labels
        self.flat = np.empty(((n + 1) * _FIT_LEVELS, 2))
        self.flat[:] = _FLAT_PRIOR
        self.colour = np.full((CELLS, n + 1), _COLOUR_PRIOR)  # label counts per cell (n: outside, never seen)
        self.colour_totals = self.colour.sum(axis=1)
        self.cells = layout.to_buffer(guide.cell, 0)
        self.pending: list[np.ndarray] = []
        self.steps = 0

    def start(self, positions: np.ndarray) -> None:
        self.here = self.cells.take(positions)

    def finish(self, positions: np.ndarray, labels: np.ndarray) -> None:
        self.pending.append(self.here * (self.n + 1) + labels)
        self.steps += 1
        if self.steps % _COLOUR_BATCH == 0:
            seen = np.bincount(np.concatenate(self.pending), minlength=self.colour.size).reshape(self.colour.shape)
            self.colour += seen
            self.colour_totals += seen.sum(axis=1)
            self.pending = []

    def flat_probabilities(self, left: np.ndarray, rows: np.ndarray) -> np.ndarray:
        cells = self.here[rows]
        share = self.colour[cells, left] / self.colour_totals[cells]
        fit = np.searchsorted(_FIT_THRESHOLDS, share)
        self.flat_context = left * _FIT_LEVELS + fit
        return self.flat.take(self.flat_context, axis=0)

    def update_flat(self, left: np.ndarray, is_new: np.ndarray) -> None:
        np.add.at(self.flat, (self.flat_context, is_new), 1.0)


class GuidedMapCoder(PixelContextMapCoder):
    """``context3``: ``context2`` plus the coarse image's colour contexts (see the module docstring).

    ``encode(map, guide)`` / ``decode(data, height, width, guide)``: with a :class:`CoarseGuide`
    the payload is mode 1, without one mode 0 (the same model with no colour contexts, as
    ``context2``).  Payload: the mode byte, then ``context2``'s payload.
    """

    name = "context3"
    reads_coarse = True

    def encode(self, semantic_map: np.ndarray, guide: CoarseGuide | None = None) -> bytes:
        if guide is None:
            return bytes([MODE_PLAIN]) + self._encode(semantic_map, None)
        semantic_map = _check_map(semantic_map)
        _check_guide(guide, *semantic_map.shape)
        return bytes([MODE_HEVC]) + self._encode(semantic_map, lambda n, layout: _GuidedModel(n, layout, guide))

    def decode(self, data: bytes, height: int, width: int, guide: CoarseGuide | None = None) -> np.ndarray:
        data = bytes(data)
        if not data:
            raise BitstreamError("context3 map payload is empty")
        mode = data[0]
        if mode == MODE_PLAIN:
            return self._decode(data[1:], height, width, None)
        if mode != MODE_HEVC:
            raise BitstreamError(f"context3 map payload has an unknown mode {mode}")
        if guide is None:
            raise BitstreamError("context3 map payload is coded with the coarse image's HEVC planes, which are missing")
        _check_guide(guide, height, width)
        return self._decode(data[1:], height, width, lambda n, layout: _GuidedModel(n, layout, guide))


def _check_guide(guide: CoarseGuide, height: int, width: int) -> None:
    if not isinstance(guide, CoarseGuide) or guide.cell.shape != (height, width):
        raise ValueError(f"the coarse guide must be a CoarseGuide of the map's size {height}x{width}")


def coarse_guide(coarse_codec: str, coarse_payload: bytes, height: int, width: int, downsample: int):
    """The :class:`CoarseGuide` a stream's coarse payload gives its ``height x width`` map, or None when the
    coarse codec's decoding is not bit-exact by specification (only HEVC's is: its planes are normative)."""
    if coarse_codec != "hevc":
        return None
    planes = HEVCCodec().decode_planes(coarse_payload, *coarse_size(height, width, downsample))
    return CoarseGuide.from_planes(planes, height, width)


def encode_map(coder, labels: np.ndarray, coarse_codec: str, coarse_payload: bytes, downsample: int) -> bytes:
    """The map payload of a stream: ``coder``'s, conditioned on the coarse payload where the coder can be."""
    if not getattr(coder, "reads_coarse", False):
        return coder.encode(labels)
    return coder.encode(labels, coarse_guide(coarse_codec, coarse_payload, *labels.shape, downsample))


def decode_map(coder, payload: bytes, height: int, width: int, coarse_codec: str, coarse_payload: bytes,
               downsample: int) -> np.ndarray:  # fmt: skip
    """Inverse of :func:`encode_map`: the coarse payload is decoded (to planes) only if the map payload needs it."""
    if not getattr(coder, "reads_coarse", False):
        return coder.decode(payload, height, width)
    if payload[:1] != bytes([MODE_HEVC]):
        return coder.decode(payload, height, width)
    if coarse_codec != "hevc":
        raise BitstreamError(f"context3 map payload is coded with an HEVC coarse image; the stream's is {coarse_codec}")
    return coder.decode(payload, height, width, coarse_guide(coarse_codec, coarse_payload, height, width, downsample))
