"""A pixel-wise context-mixing coder for label maps: every pixel sees its full causal neighbourhood.

:class:`ContextMapCoder` (``context``) codes whole rows at once, so a pixel never sees its left
neighbour.  On real annotations (CamVid mapped to Cityscapes train ids) that costs about a third of
the bytes: hand-drawn boundaries are ragged, and the left neighbour is the best single predictor of
a pixel.  :class:`PixelContextMapCoder` (``context2``) codes pixel by pixel in raster order with the
eight causal neighbours

    TLL TL  T  TR            (row - 2:  TT TTR)
    LL  L   X

and keeps numpy's vectorisation by decoding along wavefronts ``t = x + 2 y``: every neighbour of a
pixel on wavefront ``t`` lies on an earlier one.  The map is cut into vertical strips of at most
:data:`STRIP_WIDTH` columns that run in lock step, so a wavefront holds about ``width / 2`` pixels
and a map takes ``STRIP_WIDTH + 2 * height`` steps; a strip's first columns see no left neighbour.

A pixel's symbol is which neighbour it equals (the first, in the order above), or "new".  Two
adaptive models predict it and are mixed geometrically:

* the equality pattern of all eight neighbours (which of them are equal to which: 8! patterns);
* the equality pattern of L, T, TL, TR with the labels of L and T, and whether LL and TT continue
  them (so class pairs keep their own statistics: a tree against the sky is ragged, a car against
  the road is not).

Symbols a pattern makes impossible (a repeated neighbour, a missing one, "new" when every label
already occurs around the pixel) get probability zero.  A new label is coded with counts under
the label of L, excluding the neighbours' labels.  The range coder is ``constriction``'s.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .bitstream import BitstreamError
from .semantic import ContextMapCoder, MapCoder, _check_map

STRIP_WIDTH = 64
_NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-2, 1), (-1, -2))
_K = len(_NEIGHBOURS)
_RADIX = np.array([math.factorial(i) for i in range(_K)], dtype=np.int64)
_PATTERNS = math.factorial(_K)
_SMALL_PATTERNS = math.factorial(4)
_PRIOR = 0.02
_NEW_PRIOR = 0.1
_GAP = 2  # columns of "outside" left of every strip (and right of the last)
_TOP = 2  # rows of "outside" above the map
# Bits of information a range decoder can still yield once all its words are read (its state
# holds 64 bits); a payload whose symbols need more than this after its end is truncated.
_EXHAUSTION_SLACK_BITS = 96.0
_CHECK_BYTES = 2  # the map's CRC-32, low bytes, coded last: a truncated or forged payload fails it


def _check_symbols(indices: np.ndarray) -> np.ndarray:
    crc = zlib.crc32(np.ascontiguousarray(indices, dtype=np.uint8).tobytes())
    return np.array([(crc >> (8 * i)) & 0xFF for i in range(_CHECK_BYTES)], dtype=np.int32)


class _Layout:
    """Where each pixel lives in the padded, strip-separated buffer, and which pixels form each wavefront."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.strips = -(-width // STRIP_WIDTH)
        self.strip_width = -(-width // self.strips)  # strips of equal width; the map is padded to strips * width
        self.row_length = self.strips * (self.strip_width + _GAP) + _GAP
        self.steps = self.strip_width + 2 * (height - 1)
        self.size = (height + _TOP) * self.row_length
        self.offsets = np.array([dy * self.row_length + dx for dy, dx in _NEIGHBOURS], dtype=np.int64)
        self._strip_starts = np.arange(self.strips, dtype=np.int64) * (self.strip_width + _GAP) + _GAP

    def wavefront(self, t: int) -> np.ndarray:
        """Buffer positions of the pixels with ``x_in_strip + 2 y == t``."""
        y_low = max(0, -(-(t - self.strip_width + 1) // 2))
        y_high = min(self.height - 1, t // 2)
        ys = np.arange(y_low, y_high + 1, dtype=np.int64)
        rows = (ys + _TOP) * self.row_length + (t - 2 * ys)
        return (rows[:, None] + self._strip_starts[None, :]).ravel()

    def padded_width(self) -> int:
        return self.strips * self.strip_width

    def to_buffer(self, indices: np.ndarray, outside: int) -> np.ndarray:
        buffer = np.full((self.height + _TOP, self.row_length), outside, dtype=np.int64)
        padded = np.pad(indices, ((0, 0), (0, self.padded_width() - self.width)), mode="edge")
        strips = padded.reshape(self.height, self.strips, self.strip_width)
        view = buffer[_TOP:, _GAP:].reshape(self.height, self.strips, self.strip_width + _GAP)
        view[:, :, : self.strip_width] = strips
        return buffer.ravel()

    def from_buffer(self, buffer: np.ndarray) -> np.ndarray:
        view = buffer.reshape(self.height + _TOP, self.row_length)[_TOP:, _GAP:]
        view = view.reshape(self.height, self.strips, self.strip_width + _GAP)[:, :, : self.strip_width]
        return view.reshape(self.height, self.padded_width())[:, : self.width]


class _PixelModel:
    """The adaptive statistics, updated identically by encoder and decoder after every wavefront."""

    def __init__(self, num_labels: int):
        self.n = num_labels
        self.patterns = np.full((_PATTERNS, _K + 1), _PRIOR)
        self.pairs = np.full((_SMALL_PATTERNS * (num_labels + 1) ** 2 * 4, _K + 1), _PRIOR)
        self.new = np.full((num_labels + 1, num_labels), _NEW_PRIOR)
        self._columns = np.arange(_K)

    def predict(self, neighbours: np.ndarray):
        """Symbol probabilities (unnormalised, ``k x (K + 1)``) and the two contexts."""
        n = self.n
        first = (neighbours[:, :, None] == neighbours[:, None, :]).argmax(axis=2)
        big = first @ _RADIX
        small = first[:, :4] @ _RADIX[:4]
        far = (neighbours[:, 4] != neighbours[:, 0]) + 2 * (neighbours[:, 5] != neighbours[:, 1])
        pair = ((small * (n + 1) + neighbours[:, 0]) * (n + 1) + neighbours[:, 1]) * 4 + far
        a = self.patterns.take(big, axis=0)
        b = self.pairs.take(pair, axis=0)
        probs = np.sqrt(a * b / (a.sum(axis=1, keepdims=True) * b.sum(axis=1, keepdims=True)))
        distinct = (first == self._columns) & (neighbours != n)
        probs[:, :_K][~distinct] = 0.0
        probs[distinct.sum(axis=1) >= n, _K] = 0.0
        return probs, big, pair

    def new_probabilities(self, neighbours: np.ndarray) -> np.ndarray:
        probs = self.new.take(neighbours[:, 0], axis=0)
        rows = np.repeat(np.arange(len(neighbours)), _K)
        labels = neighbours.ravel()
        inside = labels < self.n
        probs[rows[inside], labels[inside]] = 0.0
        return probs

    def update(self, big, pair, symbols, neighbours, labels) -> None:
        np.add.at(self.patterns, (big, symbols), 1.0)
        np.add.at(self.pairs, (pair, symbols), 1.0)
        new = symbols == _K
        if new.any():
            np.add.at(self.new, (neighbours[new, 0], labels[new]), 1.0)


class PixelContextMapCoder(MapCoder):
    """Pixel-wise context mixing + range coder over wavefronts (see the module docstring).

    Payload: the same label table as ``context`` (``num_labels - 1``, then the sorted label
    values or a 32-byte bitmap), then the range coder's words with trailing zero bytes dropped;
    the last two coded symbols are a check of the map.  The decoder rejects label tables the map
    size cannot hold, labels that never occur, payloads that run out before the map is complete
    (as soon as more information is asked of them than their end can hold) and failed checks.
    """

    name = "context2"

    def __init__(self):
        import constriction

        self._stream = constriction.stream
        self._family = constriction.stream.model.Categorical(perfect=False)

    def encode(self, semantic_map: np.ndarray) -> bytes:
        semantic_map = _check_map(semantic_map)
        height, width = semantic_map.shape
        values, indices = np.unique(semantic_map, return_inverse=True)
        n = len(values)
        out = bytes([n - 1]) + ContextMapCoder._label_table(values)
        if n == 1:
            return out
        layout = _Layout(height, width)
        truth = layout.to_buffer(indices.reshape(height, width).astype(np.int64), n)
        buffer = np.full(layout.size, n, dtype=np.int64)
        model = _PixelModel(n)
        encoder = self._stream.queue.RangeEncoder()
        family = self._family
        for t in range(layout.steps):
            positions = layout.wavefront(t)
            if not positions.size:  # a one-column strip has pixels on every other wavefront only
                continue
            neighbours = buffer.take(positions[:, None] + layout.offsets)
            labels = truth.take(positions)
            hits = neighbours == labels[:, None]
            symbols = np.where(hits.any(axis=1), hits.argmax(axis=1), _K)
            probs, big, pair = model.predict(neighbours)
            encoder.encode(symbols.astype(np.int32), family, probs)
            new = symbols == _K
            if new.any():
                encoder.encode(labels[new].astype(np.int32), family, model.new_probabilities(neighbours[new]))
            model.update(big, pair, symbols, neighbours, labels)
            buffer[positions] = labels
        encoder.encode(_check_symbols(indices), family, np.ones((_CHECK_BYTES, 256)))
        words = encoder.get_compressed()
        return out + words.astype("<u4").tobytes().rstrip(b"\x00")

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        data = bytes(data)
        if not data:
            raise BitstreamError("context2 map payload is empty")
        n = data[0] + 1
        if n > height * width:
            raise BitstreamError(f"context2 map declares {n} labels, more than its {height * width} pixels can hold")
        table_len = n if n <= 32 else 32
        if len(data) < 1 + table_len:
            raise BitstreamError("context2 map payload truncated inside its label table")
        table = np.frombuffer(data[1 : 1 + table_len], dtype=np.uint8)
        if n <= 32:
            values = table.copy()
            if n > 1 and not np.all(values[1:] > values[:-1]):
                raise BitstreamError("context2 map label table is not strictly increasing")
        else:
            values = np.flatnonzero(np.unpackbits(table)).astype(np.uint8)
            if len(values) != n:
                raise BitstreamError("context2 map label bitmap disagrees with its label count")
        coded = data[1 + table_len :]
        if n == 1:
            if coded:
                raise BitstreamError("context2 map payload has trailing bytes after a single-label map")
            return np.full((height, width), values[0], dtype=np.uint8)
        if not coded:
            raise BitstreamError(f"context2 map payload declares {n} labels but holds no coded data")
        coded = coded + b"\x00" * (-len(coded) % 4)
        try:
            indices = self._decode_pixels(np.frombuffer(coded, dtype="<u4").astype(np.uint32), n, height, width)
        except BitstreamError:
            raise
        except Exception as err:  # constriction reports damaged data with its own exceptions
            raise BitstreamError(f"context2 map payload is damaged ({err})") from None
        if np.bincount(indices.ravel(), minlength=n).min() == 0:
            raise BitstreamError("context2 map payload declares labels that never occur in the map")
        return values[indices]

    def _decode_pixels(self, words: np.ndarray, n: int, height: int, width: int) -> np.ndarray:
        layout = _Layout(height, width)
        buffer = np.full(layout.size, n, dtype=np.int64)
        model = _PixelModel(n)
        decoder = self._stream.queue.RangeDecoder(words)
        family = self._family
        bits_after_end = 0.0
        for t in range(layout.steps):
            positions = layout.wavefront(t)
            if not positions.size:  # a one-column strip has pixels on every other wavefront only
                continue
            neighbours = buffer.take(positions[:, None] + layout.offsets)
            probs, big, pair = model.predict(neighbours)
            symbols = decoder.decode(family, probs).astype(np.int64)
            rows = np.arange(len(positions))
            if decoder.maybe_exhausted():
                chosen = probs[rows, symbols] / probs.sum(axis=1)
                bits_after_end -= np.log2(np.maximum(chosen, 1e-300)).sum()
            new = symbols == _K
            labels = neighbours[rows, np.minimum(symbols, _K - 1)]
            if new.any():
                new_probs = model.new_probabilities(neighbours[new])
                new_labels = decoder.decode(family, new_probs).astype(np.int64)
                labels[new] = new_labels
                if decoder.maybe_exhausted():
                    chosen = new_probs[np.arange(len(new_labels)), new_labels] / new_probs.sum(axis=1)
                    bits_after_end -= np.log2(np.maximum(chosen, 1e-300)).sum()
            if bits_after_end > _EXHAUSTION_SLACK_BITS:
                raise BitstreamError("context2 map payload ends before the map is complete")
            if labels.max() >= n:
                raise BitstreamError("context2 map payload decodes to a label outside its table")
            model.update(big, pair, symbols, neighbours, labels)
            buffer[positions] = labels
        indices = layout.from_buffer(buffer).astype(np.uint8)
        if not np.array_equal(decoder.decode(family, np.ones((_CHECK_BYTES, 256))), _check_symbols(indices)):
            raise BitstreamError("context2 map payload fails its check: it is truncated or damaged")
        return indices
