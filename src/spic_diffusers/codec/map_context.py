"""A pixel-wise context-mixing coder for label maps: every pixel sees its full causal neighbourhood.

:class:`ContextMapCoder` (``context``) codes whole rows at once, so a pixel never sees its left
neighbour.  On real annotations (CamVid mapped to Cityscapes train ids) that costs about a quarter
of the bytes: hand-drawn boundaries are ragged, and the left neighbour is the best single predictor
of a pixel.  :class:`PixelContextMapCoder` (``context2``) codes pixel by pixel in raster order with
the eight causal neighbours

    TLL TL  T  TR            (row - 2:  TT TTR)
    LL  L   X

and keeps numpy's vectorisation by decoding along wavefronts ``t = x + 2 y``: every neighbour of a
pixel on wavefront ``t`` lies on an earlier one.  The map is cut into vertical strips of at most
:data:`STRIP_WIDTH` columns that run in lock step, so a wavefront holds about ``width / 2`` pixels
and a map takes ``STRIP_WIDTH + 2 * height`` steps; a strip's first columns see no left neighbour.

A pixel whose eight neighbours hold one label (most pixels) codes one binary choice, "same" or
"new", counted per label.  Any other pixel codes which neighbour it equals (the first, in the order
above) or "new", predicted by three adaptive count models mixed geometrically, with mixing weights
learnt online per number of distinct labels around the pixel:

* the equality pattern of all eight neighbours (which of them equal which: 8! patterns);
* the equality pattern of L, T, TL, TR with the labels of L and T, and whether LL and TT continue
  them (class pairs keep their own statistics: a tree against the sky is ragged, a car against the
  road is not);
* the same pattern with the labels of L, T and TR (class transitions).

Label contexts are hashed into fixed tables, so memory does not grow with the number of labels.
Log-probabilities and the mixture's exponentials come from fixed-point tables, not from np.log /
np.exp, so an encoder and a decoder on different CPUs compute bit-identical probabilities.
Symbols a pattern makes impossible (a repeated neighbour, a missing one, "new" when every label
already occurs around the pixel) get probability zero.  A new label is coded with counts under the
label of L, excluding the neighbours' labels.  The range coder is ``constriction``'s.

Where the bytes go (CamVid maps at 256x512): about two thirds on pixels with several labels around
them, about a quarter on the first pixel of a region that appears inside a flat neighbourhood (one
in 500 flat pixels, about 9 bits each, plus its label).  Measured against this model on CamVid
train and validation maps, then on the 24 test maps of ``benchmarks/bench_codecs.py``, and kept
out because none saved 10 % at a similar speed:

* the decoded HEVC coarse image as colour contexts (``context3``): 1 % smaller, 16 % slower;
* a fourth mixture input over a wider equality pattern (six more causal positions), flat contexts
  that see two rows up and three columns right, count halving, other learning rates: 0-1 % each;
* one strip instead of 64-column strips: 3.5 % smaller, 1.6x the time;
* wavefronts ``x + 4 y`` (a pixel sees two and three right of the one above: 40 % of the new
  regions start there) in 64-row bands, with label-value contexts started from a prior learnt on
  CamVid train maps (a 64 KB table): 12 % smaller on validation maps at 256x512, but on test maps
  9.4 % smaller at 256x512, 6.3 % at 360x480 and 2.5 % larger on the 1024x2048 upscales, at
  1.1-1.3x the time, and a prior learnt on one dataset is a risk on another.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .bitstream import BitstreamError
from .semantic import MapCoder, _check_map, read_label_table, write_label_table

STRIP_WIDTH = 64
_SKEW = 2
_NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-2, 1), (-1, -2))
_K = len(_NEIGHBOURS)
_RADIX = np.array([math.factorial(i) for i in range(_K)], dtype=np.int64)
_PATTERNS = math.factorial(_K)
_SMALL_PATTERNS = math.factorial(4)
_PRIOR = 0.02
_FLAT_PRIOR = (0.5, 0.02)  # (same as every neighbour, new label)
_SELECTORS = _K + 1  # mixing weights per number of distinct labels around the pixel
_INITIAL_WEIGHT = 0.35
_LEARNING_RATE = 0.002
_HASHED_ROWS = 1 << 16  # rows of the label-context tables, whatever the number of labels
_HASH_MULTIPLIER = 0x9E3779B1
_NEW_PRIOR = 0.1
_GAP = 4  # columns of "outside" left of every strip (and right of the last)
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
        self.steps = self.strip_width + _SKEW * (height - 1)
        self.size = (height + _TOP) * self.row_length
        self.offsets = np.array([dy * self.row_length + dx for dy, dx in _NEIGHBOURS], dtype=np.int64)
        self._strip_starts = np.arange(self.strips, dtype=np.int64) * (self.strip_width + _GAP) + _GAP

    def wavefront(self, t: int) -> np.ndarray:
        """Buffer positions of the pixels with ``x_in_strip + _SKEW * y == t``."""
        y_low = max(0, -(-(t - self.strip_width + 1) // _SKEW))
        y_high = min(self.height - 1, t // _SKEW)
        ys = np.arange(y_low, y_high + 1, dtype=np.int64)
        rows = (ys + _TOP) * self.row_length + (t - _SKEW * ys)
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


# Probabilities go through fixed-point tables instead of np.log / np.exp, whose last bits differ
# between CPUs (numpy dispatches SIMD versions): encoder and decoder must compute identical numbers.
_LOG_UNIT = 64  # log-probabilities in 1/64 nat
_LOG_STEPS = 1 << 14
_LOG_TABLE = np.round(np.log(np.arange(1, _LOG_STEPS + 1) / _LOG_STEPS) * _LOG_UNIT)
_EXP_TABLE = np.maximum(1.0, np.round(2.0**24 * np.exp(-np.arange(40 * _LOG_UNIT) / _LOG_UNIT)))


def _log(p: np.ndarray) -> np.ndarray:
    """log(p) in 1/64 nat, for 0 < p <= 1, from p quantised to 1/16384 (integer-valued floats)."""
    # np.minimum / np.maximum, not np.clip: the same integers without np.clip's per-call overhead (a hot path)
    # p > 0, so truncation (astype) is the floor
    index = np.minimum(np.maximum((p * _LOG_STEPS).astype(np.int64), 1), _LOG_STEPS) - 1
    return _LOG_TABLE.take(index)


def _exp(d: np.ndarray) -> np.ndarray:
    """Unnormalised exp(-d) for d >= 0 in 1/64 nat, as integer-valued floats (at least 1)."""
    index = np.minimum(d, len(_EXP_TABLE) - 1).astype(np.int64)  # d >= 0: truncation is the floor
    return _EXP_TABLE.take(index)


def _hash(context: np.ndarray) -> np.ndarray:
    """Context number -> row of a table of ``_HASHED_ROWS`` (few contexts occur in one map, so few collide)."""
    return ((context * _HASH_MULTIPLIER) >> 20) & (_HASHED_ROWS - 1)


class _PixelModel:
    """The adaptive statistics, updated identically by encoder and decoder after every wavefront.

    Pixels whose eight neighbours all hold one label ("flat", most of any map) take a fast path:
    one binary choice, "same as L" or "new", counted per label of L.  The others get the full
    model: two count tables mixed geometrically with weights learnt online per selector.
    """

    def __init__(self, num_labels: int):
        self.n = num_labels
        self.flat = np.empty((num_labels + 1, 2))
        self.flat[:] = _FLAT_PRIOR
        self.patterns = np.full((_PATTERNS, _K + 1), _PRIOR)
        self.pairs = np.full((_HASHED_ROWS, _K + 1), _PRIOR)
        self.new = np.full((num_labels + 1, num_labels), _NEW_PRIOR)
        self.triples = np.full((_HASHED_ROWS, _K + 1), _PRIOR)
        self.weights = np.full((_SELECTORS * 2, 3), _INITIAL_WEIGHT)
        self._columns = np.arange(_K)

    def flat_probabilities(self, left: np.ndarray) -> np.ndarray:
        return self.flat.take(left, axis=0)

    def update_flat(self, left: np.ndarray, is_new: np.ndarray) -> None:
        np.add.at(self.flat, (left, is_new), 1.0)

    def predict(self, neighbours: np.ndarray):
        """Symbol probabilities (``k x (K + 1)``) and what :meth:`update` needs."""
        n = self.n
        first = (neighbours[:, :, None] == neighbours[:, None, :]).argmax(axis=2)
        big = first @ _RADIX
        small = first[:, :4] @ _RADIX[:4]
        far = (neighbours[:, 4] != neighbours[:, 0]) + 2 * (neighbours[:, 5] != neighbours[:, 1])
        pair = ((small * (n + 1) + neighbours[:, 0]) * (n + 1) + neighbours[:, 1]) * 4 + far
        triple = (pair // 4 * (n + 1) + neighbours[:, 3]) * 2 + 1
        pair, triple = _hash(pair), _hash(triple)
        # the three tables' rows side by side (k x 3 x (K + 1)): one normalisation and one log for all three
        counts = np.stack([self.patterns.take(big, axis=0), self.pairs.take(pair, axis=0),
                           self.triples.take(triple, axis=0)], axis=1)
        totals = counts.sum(axis=2, keepdims=True)
        logs = _log(counts / totals)
        a_total = totals[:, 0]
        distinct = (first == self._columns) & (neighbours != n)
        selector = np.minimum(distinct.sum(axis=1), _SELECTORS - 1) * 2 + (a_total[:, 0] > 8)
        weights = self.weights.take(selector, axis=0)
        # Written out term by term: only IEEE-exact operations, so every machine gets the same numbers.
        mixed = weights[:, 0:1] * logs[:, 0] + weights[:, 1:2] * logs[:, 1] + weights[:, 2:3] * logs[:, 2]
        possible = np.ones(mixed.shape, dtype=bool)
        possible[:, :_K] = distinct
        possible[distinct.sum(axis=1) >= n, _K] = False
        mixed[~possible] = -1e30
        probs = _exp(mixed.max(axis=1, keepdims=True) - mixed)
        probs[~possible] = 0.0
        return probs, (big, pair, triple, logs, selector)

    def new_probabilities(self, neighbours: np.ndarray) -> np.ndarray:
        probs = self.new.take(neighbours[:, 0], axis=0)
        rows = np.repeat(np.arange(len(neighbours)), _K)
        labels = neighbours.ravel()
        inside = labels < self.n
        probs[rows[inside], labels[inside]] = 0.0
        return probs

    def update(self, state, probs, symbols) -> None:
        big, pair, triple, logs, selector = state
        np.add.at(self.patterns, (big, symbols), 1.0)
        np.add.at(self.pairs, (pair, symbols), 1.0)
        np.add.at(self.triples, (triple, symbols), 1.0)
        shares = probs / probs.sum(axis=1, keepdims=True)
        expected = (logs * shares[:, None, :]).sum(axis=2)
        gradient = logs[np.arange(len(symbols)), :, symbols] - expected
        np.add.at(self.weights, selector, (_LEARNING_RATE / _LOG_UNIT) * gradient)

    def update_new(self, left: np.ndarray, labels: np.ndarray) -> None:
        np.add.at(self.new, (left, labels), 1.0)


class _Encoding:
    """The encoder's side of :func:`_code_pixels`: symbols come from the map."""

    def __init__(self, stream, family, truth: np.ndarray):
        self.encoder = stream.queue.RangeEncoder()
        self.family = family
        self.truth = truth

    def labels(self, positions: np.ndarray) -> np.ndarray:
        return self.truth.take(positions)

    def code(self, symbols: np.ndarray, probs: np.ndarray) -> np.ndarray:
        self.encoder.encode(symbols.astype(np.int32), self.family, probs)
        return symbols


class _Decoding:
    """The decoder's side: symbols come from the range decoder, which must not run dry."""

    def __init__(self, stream, family, words: np.ndarray):
        self.decoder = stream.queue.RangeDecoder(words)
        self.family = family
        self.bits_after_end = 0.0

    def labels(self, positions: np.ndarray) -> None:
        return None

    def code(self, symbols: None, probs: np.ndarray) -> np.ndarray:
        decoded = self.decoder.decode(self.family, probs).astype(np.int64)
        if self.decoder.maybe_exhausted():
            chosen = probs[np.arange(len(decoded)), decoded] / probs.sum(axis=1)
            self.bits_after_end -= np.log2(np.maximum(chosen, 1e-300)).sum()
            if self.bits_after_end > _EXHAUSTION_SLACK_BITS:
                raise BitstreamError("context2 map payload ends before the map is complete")
        return decoded


def _code_pixels(side, layout: _Layout, n: int) -> np.ndarray:
    """Run the model over every wavefront, coding or decoding through ``side``; returns the buffer."""
    buffer = np.full(layout.size, n, dtype=np.int64)
    model = _PixelModel(n)
    for t in range(layout.steps):
        positions = layout.wavefront(t)
        if not positions.size:  # a one-column strip has pixels on every other wavefront only
            continue
        neighbours = buffer.take(positions[:, None] + layout.offsets)
        truth = side.labels(positions)
        left = neighbours[:, 0]
        flat = (neighbours == left[:, None]).all(axis=1) & (left < n)
        labels = np.empty(len(positions), dtype=np.int64)
        new_rows = []
        flat_rows = np.flatnonzero(flat)
        if flat_rows.size:
            flat_left = left[flat_rows]
            wanted = None if truth is None else (truth[flat_rows] != flat_left).astype(np.int64)
            is_new = side.code(wanted, model.flat_probabilities(flat_left))
            labels[flat_rows] = flat_left
            model.update_flat(flat_left, is_new)
            new_rows.append(flat_rows[is_new == 1])
        rows = np.flatnonzero(~flat)
        if rows.size:
            near = neighbours[rows]
            probs, state = model.predict(near)
            if truth is None:
                wanted = None
            else:
                hits = near == truth[rows, None]
                wanted = np.where(hits.any(axis=1), hits.argmax(axis=1), _K)
            symbols = side.code(wanted, probs)
            labels[rows] = near[np.arange(len(rows)), np.minimum(symbols, _K - 1)]
            model.update(state, probs, symbols)
            new_rows.append(rows[symbols == _K])
        new_rows = np.concatenate(new_rows) if len(new_rows) > 1 else new_rows[0]
        if new_rows.size:
            around = neighbours[new_rows]
            wanted = None if truth is None else truth[new_rows]
            new_labels = side.code(wanted, model.new_probabilities(around))
            labels[new_rows] = new_labels
            model.update_new(around[:, 0], new_labels)
        if truth is None and labels.max() >= n:
            raise BitstreamError("context2 map payload decodes to a label outside its table")
        buffer[positions] = labels
    return buffer


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
        indices = indices.reshape(height, width)
        n = len(values)
        out = write_label_table(values)
        if n == 1:
            return out
        layout = _Layout(height, width)
        side = _Encoding(self._stream, self._family, layout.to_buffer(indices.astype(np.int64), n))
        _code_pixels(side, layout, n)
        side.encoder.encode(_check_symbols(indices), self._family, np.ones((_CHECK_BYTES, 256)))
        words = side.encoder.get_compressed()
        return out + words.astype("<u4").tobytes().rstrip(b"\x00")

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        data = bytes(data)
        values, coded = read_label_table(data, height, width, "context2")
        n = len(values)
        if n == 1:
            if coded:
                raise BitstreamError("context2 map payload has trailing bytes after a single-label map")
            return np.full((height, width), values[0], dtype=np.uint8)
        if not coded:
            raise BitstreamError(f"context2 map payload declares {n} labels but holds no coded data")
        coded = coded + b"\x00" * (-len(coded) % 4)
        layout = _Layout(height, width)
        try:
            side = _Decoding(self._stream, self._family, np.frombuffer(coded, dtype="<u4").astype(np.uint32))
            indices = layout.from_buffer(_code_pixels(side, layout, n)).astype(np.uint8)
            check = side.decoder.decode(self._family, np.ones((_CHECK_BYTES, 256)))
        except BitstreamError:
            raise
        except Exception as err:  # constriction reports damaged data with its own exceptions
            raise BitstreamError(f"context2 map payload is damaged ({err})") from None
        if not np.array_equal(check, _check_symbols(indices)):
            raise BitstreamError("context2 map payload fails its check: it is truncated or damaged")
        if np.bincount(indices.ravel(), minlength=n).min() == 0:
            raise BitstreamError("context2 map payload declares labels that never occur in the map")
        return values[indices]
