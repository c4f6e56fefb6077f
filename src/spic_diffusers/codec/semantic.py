"""Lossless coders for semantic label maps (uint8 HxW, any label values, 255 = ignore).

Every coder has the same small interface (:class:`MapCoder`): ``encode(map) -> bytes`` and
``decode(bytes, height, width) -> map``.  Decoders get the size from the container, so payloads
carry no size of their own where the format allows it, and a payload that does not decode to
exactly ``height x width`` raises :class:`BitstreamError`.

The default coder, :class:`ContextMapCoder`, is an adaptive context model feeding a range coder
(``constriction``).  Label maps are piecewise constant, so it codes each row as
(a) where the label changes from the left neighbour, as one binary symbol per pixel, and
(b) the label of each resulting run.  Both use only already decoded rows as context, so a whole
row is decoded with one vectorised call per stage: a 256x512 map codes in a few milliseconds,
where a per-pixel Python loop would take seconds.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import zlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from PIL import Image

from .bitstream import BitstreamError, CodecUnavailableError, open_payload_image
from .payload_headers import check_declared_size, check_jxl_end, check_riff_chunks, check_zlib, flif_size, jxl_size


def _check_map(semantic_map: np.ndarray) -> np.ndarray:
    semantic_map = np.asarray(semantic_map)
    if semantic_map.ndim != 2:
        raise ValueError(f"a semantic map must be 2-D (HxW), got shape {semantic_map.shape}")
    if semantic_map.size == 0:
        raise ValueError("a semantic map must not be empty")
    if semantic_map.dtype != np.uint8:
        if not np.issubdtype(semantic_map.dtype, np.integer):
            raise ValueError(f"a semantic map must hold integer labels, got dtype {semantic_map.dtype}")
        if semantic_map.min() < 0 or semantic_map.max() > 255:
            raise ValueError("semantic map labels must lie in 0..255")
        semantic_map = semantic_map.astype(np.uint8)
    return np.ascontiguousarray(semantic_map)


def _check_decoded(decoded: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    if decoded.shape != (height, width):
        raise BitstreamError(
            f"{name} map payload decodes to shape {decoded.shape}, the header says {(height, width)}"
        )
    return np.ascontiguousarray(decoded, dtype=np.uint8)


class MapCoder(ABC):
    """A lossless coder for label maps."""

    name: str = ""

    @abstractmethod
    def encode(self, semantic_map: np.ndarray) -> bytes:
        """Code a uint8 HxW label map."""

    @abstractmethod
    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        """Decode a payload back to the uint8 ``height x width`` map; BitstreamError if it cannot."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------------------------
# Context-model arithmetic coder
# --------------------------------------------------------------------------------------------

# Initial pseudo-counts (no change, change) of a change context: changes are rare, except
# where an edge of the row above is predicted to continue.
_BIT_PRIOR = (4.0, 0.1)
_BIT_PRIOR_ON_EDGE = (0.3, 0.3)
_MAX_JOINT_LABELS = 32  # above this many distinct labels, run contexts use one label, not two
# Work bound: label probabilities evaluated (runs x (labels + 1), summed over PPM stages), allowed per
# pixel and per payload byte.  Street maps need well under 1 per pixel; noise maps with many labels pay
# for their work with payload bytes.  Maps that need far more work than their payload (hundreds of
# labels repeating in predictable stripes) cost seconds per megapixel: the encoder refuses them (use
# 'png'), and the decoder refuses streams that ask for more, so decoding time is bounded by the sizes.
_MAX_LABEL_WORK_PER_PIXEL = 16
_MAX_LABEL_WORK_PER_BYTE = 1024
# Slack of the payload-exhaustion test: coded information may exceed the payload's bits by this much
# (range-coder state, trailing zero bytes the encoder drops, probability quantisation).
_EXHAUSTION_SLACK_BITS = 256
_MIN_PROBABILITY = 2.0**-22  # below constriction's quantisation floor; clips information per symbol


def _information(probs: np.ndarray, symbols: np.ndarray) -> float:
    """Bits the model spends on ``symbols``: the least a payload coding them can hold."""
    if not len(symbols):
        return 0.0
    chosen = probs[np.arange(len(symbols)), symbols] / probs.sum(axis=1)
    return float(-np.log2(np.maximum(chosen, _MIN_PROBABILITY)).sum())


def _label_work_limit(height: int, width: int, payload_bytes: int) -> int:
    return _MAX_LABEL_WORK_PER_PIXEL * height * width + _MAX_LABEL_WORK_PER_BYTE * payload_bytes + 4096
# Signed distance -11..11 -> bin; exact near an edge, coarser further away.
_DISTANCE_BINS = np.array([9] + [7] * 5 + [5] * 3 + [0, 1, 2, 3, 4] + [6] * 3 + [8] * 5 + [9], dtype=np.int64)
_NUM_DISTANCE_BINS = 10


class _RowModel:
    """Adaptive statistics shared, step for step, by the encoder and the decoder.

    Row ``y`` is described by ``changes[x - 1] = map[y, x] != map[y, x - 1]`` (x >= 1) and the
    label of every run between changes.  Contexts come from rows above only, so a whole row is
    decoded at once:

    * a change bit sees the signed distance to the nearest change in the row above (the top,
      top-left and top-right neighbours' relations to their left neighbours), the distance to
      where the row above's edges are predicted to move (each edge is matched with the nearest
      edge between the same two labels a few rows higher and its slope extrapolated), whether
      that edge's own last move was predicted exactly, and whether the labels above changed
      vertically;
    * a run label is coded PPM-style: first in the context of the labels above the run's middle
      and last pixel, then (after an escape) above its middle pixel only, then (after another
      escape) with global label frequencies.  Each context's histogram starts empty; labels a
      context has already seen are excluded from the later stages.
    """

    lag = 2  # rows between the two edge positions that define an edge's slope

    def __init__(self, num_labels: int, width: int):
        self.n = num_labels
        self.width = width
        bins = _NUM_DISTANCE_BINS
        self.bit_counts = np.empty((bins, bins, 2, 2, 2, 2))  # above, predicted, confident, vertical, first row, bit
        self.bit_counts[:] = _BIT_PRIOR
        self.bit_counts[:, 2] = _BIT_PRIOR_ON_EDGE  # predicted-distance bin 2 is "exactly here"
        self.bit_counts = self.bit_counts.reshape(-1, 2)
        self.joint = num_labels <= _MAX_JOINT_LABELS
        self.stage_counts = [np.zeros((num_labels + 1, num_labels))]
        if self.joint:
            self.stage_counts.insert(0, np.zeros(((num_labels + 1) ** 2, num_labels)))
        self.fallback_counts = np.ones(num_labels)
        # Rows above the first are virtual: label ``n`` ("outside") and no edges.
        self.prev = np.full(width, num_labels, dtype=np.int64)
        self.prev2 = self.prev.copy()
        # Per row above: edge positions, label-pair keys and "moved as predicted" flags, all in
        # (key, position) order, plus the positions in plain order.
        self.edges: list[tuple[np.ndarray, ...]] = []
        self.predicted = _EMPTY
        self._columns = np.arange(max(width - 1, 0))
        # Signed distance -width..width -> bin, so binning needs no clipping.
        self._bins = _DISTANCE_BINS[np.clip(np.arange(-width, width + 1), -11, 11) + 11]
        self._far = np.full(max(width - 1, 0), _NUM_DISTANCE_BINS - 1, dtype=np.int64)

    def _nearest(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per change slot: binned signed distance to the nearest of sorted ``positions``, and its index.

        Bins 0..4 are distances -2..2, then -5..-3, 3..5, -10..-6, 6..10, and 9 for nothing nearer.
        """
        j = self._columns
        if positions.size == 0:
            return self._far, self._far
        right_idx = positions.searchsorted(j)
        left_idx = right_idx - 1
        np.minimum(right_idx, positions.size - 1, out=right_idx)
        np.maximum(left_idx, 0, out=left_idx)
        # ``take`` rather than fancy indexing: the same result, several times faster on short rows.
        right = positions.take(right_idx) - j
        left = positions.take(left_idx) - j
        use_left = np.abs(left) <= np.abs(right)
        dist = np.where(use_left, left, right)
        return self._bins.take(dist + self.width), np.where(use_left, left_idx, right_idx)

    def _predict_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the edges of the row above should be in this row (sorted), and their flags."""
        if not self.edges:
            return _EMPTY, _EMPTY
        pos, key, flag, _ = self.edges[-1]
        if not pos.size:
            return _EMPTY, _EMPTY
        if len(self.edges) < 2:
            order = pos.argsort(kind="stable")
            return pos[order], flag[order]
        lag = min(self.lag, len(self.edges) - 1)
        old_pos, old_key, _, _ = self.edges[-1 - lag]
        predicted = pos
        if old_pos.size:
            stride = 2 * self.width
            old = old_key * stride + old_pos
            idx = old.searchsorted(key * stride + pos)
            hi = np.minimum(idx, old.size - 1)
            lo = np.maximum(idx - 1, 0)
            d_hi = np.where(old_key[hi] == key, pos - old_pos[hi], stride)
            d_lo = np.where(old_key[lo] == key, pos - old_pos[lo], stride)
            best = np.where(np.abs(d_lo) <= np.abs(d_hi), d_lo, d_hi)
            shift = np.where(np.abs(best) <= 3 * lag, (2 * best + lag) // (2 * lag), 0)
            predicted = np.minimum(np.maximum(pos + shift, -1), self.width - 1)
        order = predicted.argsort(kind="stable")
        return predicted[order], flag[order]

    def change_contexts(self) -> np.ndarray:
        above, _ = self._nearest(self.edges[-1][3] if self.edges else _EMPTY)
        self.predicted, flags = self._predict_edges()
        predicted, nearest = self._nearest(self.predicted)
        confident = flags.take(nearest) if flags.size else 0
        vertical = self.prev != self.prev2
        ctx = (above * _NUM_DISTANCE_BINS + predicted) * 2 + confident
        return (ctx * 2 + (vertical[1:] | vertical[:-1])) * 2 + int(not self.edges)

    def change_probabilities(self, ctx: np.ndarray) -> np.ndarray:
        return self.bit_counts.take(ctx, axis=0)

    def label_contexts(self, starts: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
        """One context array per PPM stage, highest order first."""
        mid = self.prev[(starts + ends - 1) >> 1]
        if not self.joint:
            return [mid]
        return [mid * (self.n + 1) + self.prev[ends - 1], mid]

    def stage_probabilities(self, stage: int, ctx: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities over ``n`` labels + escape (last column), and which labels this stage can code."""
        counts = self.stage_counts[stage].take(ctx, axis=0)
        if excluded is not None:
            counts[excluded] = 0.0
        seen = counts > 0
        distinct = seen.sum(axis=1)
        unseen_left = distinct < self.n if excluded is None else (~(seen | excluded)).any(axis=1)
        escape = np.where(unseen_left, np.maximum(distinct, 1.0), 0.0)
        return np.concatenate([counts, escape[:, None]], axis=1), seen

    def fallback_probabilities(self, excluded: np.ndarray) -> np.ndarray:
        return np.where(excluded, 0.0, self.fallback_counts[None, :])

    def update(self, row: np.ndarray, changes: np.ndarray, change_ctx, label_ctx, labels) -> None:
        if changes.size:
            flat = np.bincount(change_ctx * 2 + changes, minlength=self.bit_counts.size)
            self.bit_counts += flat.reshape(self.bit_counts.shape)
        for counts, ctx in zip(self.stage_counts, label_ctx):
            np.add.at(counts, (ctx, labels), 1.0)
        self.fallback_counts += np.bincount(labels, minlength=self.n)
        pos = np.flatnonzero(changes)
        if self.predicted.size and pos.size:
            idx = np.searchsorted(self.predicted, pos)
            exact = self.predicted[np.minimum(idx, self.predicted.size - 1)] == pos
        else:
            exact = np.zeros(pos.shape, dtype=bool)
        # The first row has nothing real above it: do not flag it as a vertical change.
        self.prev2, self.prev = (row if not self.edges else self.prev), row
        key = row[pos] * (self.n + 1) + row[pos + 1]
        order = np.argsort(key * (2 * self.width) + pos, kind="stable")
        self.edges.append((pos[order], key[order], exact[order].astype(np.int64), pos))
        if len(self.edges) > self.lag + 1:
            self.edges.pop(0)


_EMPTY = np.zeros(0, dtype=np.int64)


def _runs(changes: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    cuts = np.flatnonzero(changes) + 1
    starts = np.empty(cuts.size + 1, dtype=np.int64)
    starts[0] = 0
    starts[1:] = cuts
    ends = np.empty_like(starts)
    ends[:-1] = cuts
    ends[-1] = width
    return starts, ends


_LISTED_LABELS = 32  # label tables list up to this many values (one byte each), else hold a 256-bit bitmap


def write_label_table(values: np.ndarray) -> bytes:
    """The label table the context coders' payloads open with: ``len(values) - 1`` (one byte), then the sorted
    label values (one byte each) or, above :data:`_LISTED_LABELS` labels, a 32-byte bitmap of them."""
    values = np.asarray(values, dtype=np.uint8)
    if len(values) <= _LISTED_LABELS:
        return bytes([len(values) - 1, *values.tolist()])
    bitmap = np.zeros(256, dtype=bool)
    bitmap[values] = True
    return bytes([len(values) - 1]) + np.packbits(bitmap).tobytes()


def read_label_table(data: bytes, height: int, width: int, coder: str) -> tuple[np.ndarray, bytes]:
    """Inverse of :func:`write_label_table`: (the sorted label values, the bytes after the table).

    Refuses (BitstreamError naming ``coder``) an empty payload, more labels than ``height x width`` pixels can
    hold, a table cut short, a listed table that is not strictly increasing and a bitmap that disagrees with
    the count.
    """
    if not data:
        raise BitstreamError(f"{coder} map payload is empty")
    n = data[0] + 1
    if n > height * width:
        raise BitstreamError(f"{coder} map payload declares {n} labels for a map of {height * width} pixels")
    table_len = n if n <= _LISTED_LABELS else 32
    if len(data) < 1 + table_len:
        raise BitstreamError(f"{coder} map payload truncated inside its label table")
    table = np.frombuffer(data[1 : 1 + table_len], dtype=np.uint8)
    if n <= _LISTED_LABELS:
        values = table.copy()
        if n > 1 and not np.all(values[1:] > values[:-1]):
            raise BitstreamError(f"{coder} map label table is not strictly increasing")
    else:
        values = np.flatnonzero(np.unpackbits(table)).astype(np.uint8)
        if len(values) != n:
            raise BitstreamError(f"{coder} map label bitmap disagrees with its label count")
    return values, data[1 + table_len :]


class ContextMapCoder(MapCoder):
    """Adaptive context model + range coder over whole rows (`context`, the first default map coder).

    Payload: ``num_labels - 1`` (1 byte), the label values (sorted bytes, or a 32-byte bitmap
    when more than 32 labels occur), then the range coder's words with trailing zero bytes
    dropped.  A map with a single label needs no coded data at all.
    """

    name = "context"

    def __init__(self):
        import constriction

        self._stream = constriction.stream
        self._family = constriction.stream.model.Categorical(perfect=False)

    def encode(self, semantic_map: np.ndarray) -> bytes:
        semantic_map = _check_map(semantic_map)
        height, width = semantic_map.shape
        values, indices = np.unique(semantic_map, return_inverse=True)
        indices = indices.reshape(height, width).astype(np.int64)
        n = len(values)
        out = write_label_table(values)
        if n == 1:
            return out
        model = _RowModel(n, width)
        encoder = self._stream.queue.RangeEncoder()
        family = self._family
        work = 0
        for y in range(height):
            row = indices[y]
            changes = (row[1:] != row[:-1]).astype(np.int64)
            change_ctx = model.change_contexts()
            if changes.size:
                encoder.encode(changes.astype(np.int32), family, model.change_probabilities(change_ctx))
            starts, ends = _runs(changes, width)
            labels = row[starts]
            label_ctx = model.label_contexts(starts, ends)
            active = np.arange(len(labels))
            excluded = None
            for stage, ctx in enumerate(label_ctx):
                work += len(active) * (n + 1)
                probs, seen = model.stage_probabilities(stage, ctx[active], excluded)
                hit = seen[np.arange(len(active)), labels[active]]
                encoder.encode(np.where(hit, labels[active], n).astype(np.int32), family, probs)
                excluded = seen[~hit] if excluded is None else (excluded | seen)[~hit]
                active = active[~hit]
                if not active.size:
                    break
            if active.size:
                encoder.encode(labels[active].astype(np.int32), family, model.fallback_probabilities(excluded))
            model.update(row, changes, change_ctx, label_ctx, labels)
        words = encoder.get_compressed()
        payload = out + words.astype("<u4").tobytes().rstrip(b"\x00")
        if work > _label_work_limit(height, width, len(payload)):
            raise ValueError(
                f"this {height}x{width} map with {n} labels needs more decoding work than its size justifies "
                "for the context coder (many labels changing almost everywhere); code it with map_coder='png'"
            )
        return payload

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        data = bytes(data)
        values, coded = read_label_table(data, height, width, "context")
        n = len(values)
        if n == 1:
            if coded:
                raise BitstreamError("context map payload has trailing bytes after a single-label map")
            return np.full((height, width), values[0], dtype=np.uint8)
        coded = coded + b"\x00" * (-len(coded) % 4)
        try:
            words = np.frombuffer(coded, dtype="<u4").astype(np.uint32)
            work_limit = _label_work_limit(height, width, len(data))
            return self._decode_rows(words, n, values, height, width, 8 * len(coded) + _EXHAUSTION_SLACK_BITS,
                                     work_limit)
        except BitstreamError:
            raise
        except Exception as err:  # constriction reports damaged data with its own exceptions
            raise BitstreamError(f"context map payload is damaged ({err})") from None

    def _decode_rows(self, words, n, values, height, width, max_bits: int, work_limit: int) -> np.ndarray:
        """Decode row by row; stop as soon as the rows read need more information than the payload holds.

        A range decoder past its data keeps producing symbols (from zeros), so exhaustion is detected
        by counting the bits the model assigns to what was decoded, and work is bounded per pixel.
        """
        decoder = self._stream.queue.RangeDecoder(words)
        family = self._family
        model = _RowModel(n, width)
        out = np.empty((height, width), dtype=np.uint8)
        no_changes = np.zeros(0, dtype=np.int64)
        bits, work = 0.0, 0
        used = np.zeros(n, dtype=bool)
        for y in range(height):
            change_ctx = model.change_contexts()
            if width > 1:
                probs = model.change_probabilities(change_ctx)
                changes = decoder.decode(family, probs).astype(np.int64)
                bits += _information(probs, changes)
            else:
                changes = no_changes
            starts, ends = _runs(changes, width)
            label_ctx = model.label_contexts(starts, ends)
            labels = np.empty(len(starts), dtype=np.int64)
            active = np.arange(len(starts))
            excluded = None
            for stage, ctx in enumerate(label_ctx):
                work += len(active) * (n + 1)
                if work > work_limit:
                    raise BitstreamError(
                        f"context map payload asks for more label evaluations than its size justifies (row {y} of "
                        f"{height}); no encoder writes such a payload"
                    )
                probs, seen = model.stage_probabilities(stage, ctx[active], excluded)
                symbols = decoder.decode(family, probs)
                bits += _information(probs, symbols)
                hit = symbols != n
                labels[active[hit]] = symbols[hit]
                excluded = seen[~hit] if excluded is None else (excluded | seen)[~hit]
                active = active[~hit]
                if not active.size:
                    break
            if active.size:
                probs = model.fallback_probabilities(excluded)
                labels[active] = decoder.decode(family, probs)
                bits += _information(probs, labels[active])
            if bits > max_bits:
                raise BitstreamError(
                    f"context map payload is exhausted at row {y} of {height}: the rows so far need "
                    f"{bits:.0f} bits, the payload holds {max_bits - _EXHAUSTION_SLACK_BITS}"
                )
            used[labels] = True
            row = np.repeat(labels, ends - starts)
            out[y] = values[row]
            model.update(row, changes, change_ctx, label_ctx, labels)
        if not used.all():
            raise BitstreamError(f"context map payload declares {n} labels but its map uses {int(used.sum())}")
        return out


# --------------------------------------------------------------------------------------------
# Image-format coders
# --------------------------------------------------------------------------------------------


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png_to_zlib(png: bytes) -> bytes:
    """The zlib stream of an 8-bit grey, non-interlaced PNG: everything else is implied by the size."""
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    offset, idat = len(_PNG_SIGNATURE), []
    while offset + 8 <= len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        if kind == b"IHDR" and data[8:] != bytes([8, 0, 0, 0, 0]):
            raise ValueError("only 8-bit grey, non-interlaced PNGs can drop their headers")
        if kind == b"IDAT":
            idat.append(data)
        offset += 12 + length
    return b"".join(idat)


def zlib_to_png(stream: bytes, height: int, width: int) -> bytes:
    """Rebuild the PNG file :func:`png_to_zlib` came from."""
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")


def riff_strip(data: bytes) -> bytes:
    """Drop the 12-byte RIFF/WEBP file header (its only content is the length)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    return data[12:]


def riff_wrap(payload: bytes) -> bytes:
    """Rebuild the WebP file :func:`riff_strip` came from."""
    return b"RIFF" + (len(payload) + 4).to_bytes(4, "little") + b"WEBP" + payload


class PNGMapCoder(MapCoder):
    """PNG (8-bit grey, maximum zlib effort); only its zlib stream is stored, the PNG boxes are rebuilt."""

    name = "png"

    def encode(self, semantic_map: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(_check_map(semantic_map), mode="L").save(buffer, format="PNG", optimize=True)
        return png_to_zlib(buffer.getvalue())

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        check_zlib(bytes(data), height * (width + 1), "PNG map")  # one filter byte per row
        image = open_payload_image(zlib_to_png(bytes(data), height, width), "PNG map", height, width)
        return _check_decoded(np.asarray(image), height, width, "PNG")


class WebPMapCoder(MapCoder):
    """Lossless WebP (method 6) without its RIFF header; the map rides in all three channels."""

    name = "webp"

    def encode(self, semantic_map: np.ndarray) -> bytes:
        semantic_map = _check_map(semantic_map)
        if max(semantic_map.shape) > 16383:
            raise ValueError("WebP cannot hold images wider or taller than 16383 pixels")
        buffer = io.BytesIO()
        rgb = np.repeat(semantic_map[:, :, None], 3, axis=2)
        Image.fromarray(rgb, mode="RGB").save(buffer, format="WEBP", lossless=True, quality=100, method=6)
        return riff_strip(buffer.getvalue())

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        check_riff_chunks(bytes(data), "WebP map")
        array = np.asarray(open_payload_image(riff_wrap(bytes(data)), "WebP map", height, width).convert("RGB"))
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise BitstreamError("WebP map payload is not a grey label map")
        return _check_decoded(array[..., 0], height, width, "WebP")


class JXLMapCoder(MapCoder):
    """Lossless JPEG XL as a bare codestream (no container box), through ``pillow-jxl-plugin``.

    ``effort`` 1-10; 10 is the slowest and smallest and the default, since this coder is the
    strongest general-purpose baseline for label maps.
    """

    name = "jxl"

    def __init__(self, effort: int = 10):
        if not 1 <= effort <= 10:
            raise ValueError(f"JPEG XL effort must be in 1..10, got {effort}")
        self.effort = effort

    def __repr__(self) -> str:
        return f"JXLMapCoder(effort={self.effort})"

    def encode(self, semantic_map: np.ndarray) -> bytes:
        import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)

        buffer = io.BytesIO()
        Image.fromarray(_check_map(semantic_map), mode="L").save(
            buffer, format="JXL", lossless=True, effort=self.effort
        )
        return buffer.getvalue()

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        import pillow_jxl  # noqa: F401

        # The plugin decodes on open: read the size from the codestream header first.
        check_declared_size(jxl_size(bytes(data), "JPEG XL map"), height, width, "JPEG XL map")
        image = open_payload_image(data, "JPEG XL map", height, width)
        check_jxl_end(bytes(data), "JPEG XL map")
        if image.mode != "L":
            raise BitstreamError(f"JPEG XL map payload has mode {image.mode}, expected L")
        return _check_decoded(np.asarray(image), height, width, "JPEG XL")


class FLIFMapCoder(MapCoder):
    """FLIF through the ``flif`` command-line tool, the coder the SPIC paper reports."""

    name = "flif"

    @staticmethod
    def _binary() -> str:
        binary = shutil.which("flif")
        if binary is None:
            raise CodecUnavailableError(
                "the FLIF map coder needs the `flif` command on PATH; build it from "
                "https://github.com/FLIF-hub/FLIF (or `apt install flif` where packaged), "
                "or choose another map coder such as 'context'"
            )
        return binary

    def encode(self, semantic_map: np.ndarray) -> bytes:
        semantic_map = _check_map(semantic_map)
        binary = self._binary()
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "map.png"), Path(tmp, "map.flif")
            Image.fromarray(semantic_map, mode="L").save(src)
            subprocess.run([binary, "-e", "-E100", str(src), str(dst)], check=True, capture_output=True)
            return dst.read_bytes()

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        binary = self._binary()
        check_declared_size(flif_size(bytes(data), "FLIF map"), height, width, "FLIF map")
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "map.flif"), Path(tmp, "map.png")
            src.write_bytes(data)
            result = subprocess.run([binary, "-d", str(src), str(dst)], capture_output=True, timeout=60)
            if result.returncode != 0 or not dst.exists():
                raise BitstreamError("FLIF map payload cannot be decoded")
            image = open_payload_image(dst.read_bytes(), "FLIF map", height, width).convert("L")
        return _check_decoded(np.asarray(image), height, width, "FLIF")
