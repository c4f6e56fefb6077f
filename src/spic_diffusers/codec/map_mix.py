"""``mix``, the default map coder: binary context mixing over each pixel's causal neighbourhood, in raster order.

``context2`` (:mod:`.map_context`) keeps numpy's vectorisation by coding whole wavefronts, so its
models learn in batches from a few count tables.  Coding one pixel at a time in compiled code affords
a paq-style model instead: many hashed contexts per decision, logistic mixing and adaptive probability
maps, updated after every decision.  On CamVid test maps it takes 0.85x context2's bytes (0.59x
lossless JPEG XL at effort 10) in about a seventh of its time: 30 ms against 205 ms of CPU to encode and
decode a 256x512 map on one thread (``benchmarks/bench_codecs.py --camvid_dataset ... --real_maps_only``).

Every pixel is coded as a short series of binary decisions:

1. "equals candidate k?" for the distinct labels among the causal neighbours, in the fixed order
   L, T, TR, TL, LL, TT, TRR, TTR, TLL (the first match ends the pixel);
2. if none matched ("new label"): "is it label j?" over the remaining labels, ranked by how often
   each has appeared as a new label so far (the last remaining label is implied).

Each decision is predicted by several hashed context models (16-bit probabilities with a per-slot
count that slows the adaptation rate), their stretched probabilities mixed by two logistic mixers
(weight sets chosen by decision index x distinct labels around x flat, and by decision index x which
of L, T, TL, TR hold the candidate; flat pixels use the first only), averaged in the stretched domain,
then refined by two adaptive probability maps (APM / SSE).  A binary arithmetic coder with a 32-bit
range and 16-bit probabilities codes the result.  The candidate decisions' context models, each with
the decision index:

* which of 14 causal positions (row y: L LL LLL; y - 1: x - 3 .. x + 3; y - 2: x - 2 .. x + 2)
  hold the candidate, and which of the 8 nearest hold already rejected candidates;
* the candidate's label with the labels of L and T and which of L, T, TL, TR hold it;
* the candidate's label with the labels of TR, TRR, TTR;
* the candidate's label, the run length of L along the row and of T down its column;
* two boundary extrapolations: where the run above x - 1 ends, moved by its shift over the last
  two rows, and over the last four;
* the current run against the run above it, and where the run above ends.

New-label decisions use the label with the labels of L, T, TR, the row band, the column band, the
number of candidates and the rank.  Measured on CamVid train and validation maps (12 at 256x512) and
kept out, each at most 0.4 % smaller: the partition pattern of the 8 nearest, label-specific 14-position
masks, the four nearest labels jointly, row band, run-length variants, start-of-run extrapolation,
a flag for columns that equalled their left neighbour in every row so far (a resize artefact), a
"new context" bit in the mixer selector, 4x larger tables; a fast-adapting second probability per
slot, a learnt final mixer in place of the average of the two mixers, and ranking new labels per
label of L were larger.
Also left out: contexts from a clean 4x area-downsampled image (colour or luminance cells, and their
edges), 0.4-0.8 % smaller before any lossy coding of that image; starting from a state learnt on
six other CamVid train maps, 2.6 % smaller; and a network learnt on 209 CamVid maps that predicts the
candidate from which of the positions 4 rows up and 5 columns either side hold it: alone it costs 0.98x
this model's bits on non-flat pixels, and an even mixture of the two saves about 4.5 % of a map, for some
15 000 operations a non-flat pixel (both speed goals of the coder would be lost).

Everything -- the model, the mixer, the coder -- is integer arithmetic, so an encoder and a decoder
on any machine compute identical probabilities.  The squash table is built once from correctly
rounded ``decimal`` exponentials (identical on every platform) and integer interpolation.  The
kernels are plain Python functions compiled with ``numba.njit`` when numba is installed; without it
(or with ``NUMBA_DISABLE_JIT=1``) the same functions run as Python and decode the same payloads, only
slowly.  Values never leave the signed 64-bit range, so numba's machine integers and Python's
unbounded ones agree.

The model's constants (table sizes, counter limit, learning rates, initial weights) define the
format: changing any of them changes every payload, so none is configurable.
Payload: the label table of ``context2`` (:func:`~.semantic.write_label_table`); for a map of two or more
labels, 2 bytes of CRC-32 of the map and its size, then the arithmetic coder's bytes.  A decoder reads
exactly 3 bytes beyond them, so a payload cut short, padded or decoded at another size fails its length
(stopping as soon as it runs out) or its check.
"""

from __future__ import annotations

import struct
import zlib
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np

from .bitstream import BitstreamError
from .semantic import MapCoder, _check_map, read_label_table, write_label_table

try:  # the compiled kernels; the same functions run as Python without numba
    from numba import njit as _numba_njit
except ImportError:  # pragma: no cover - exercised with NUMBA_DISABLE_JIT instead
    _numba_njit = None


def _compiled(function):
    """numba's ``njit``, caching compiled code where numba finds a writable place (a compile takes seconds, once),
    compiling in every process where it does not; without numba the function itself (pure Python, same output)."""
    if _numba_njit is None:
        return function
    try:
        return _numba_njit(cache=True)(function)
    except RuntimeError:  # no writable cache location: compile per process
        return _numba_njit(function)


def _build_squash_stretch() -> tuple[np.ndarray, np.ndarray]:
    """squash: stretched value d in [-2048, 2047] (1/128 logit) -> P(1) in 1/65536; stretch: its inverse on 12 bits."""
    with localcontext() as ctx:
        ctx.prec = 40
        knots = [
            int((Decimal(65536) / (1 + (-(Decimal(-2048 + 32 * i) / 128)).exp())).to_integral_value(ROUND_HALF_EVEN))
            for i in range(129)
        ]
    squash = np.empty(4096, dtype=np.int64)
    for d in range(4096):
        i, f = divmod(d, 32)
        squash[d] = knots[i] + (knots[i + 1] - knots[i]) * f // 32
    np.clip(squash, 1, 65535, out=squash)
    stretch = np.empty(4096, dtype=np.int64)
    d = 0
    for i in range(4096):
        while d < 4095 and squash[d] < i * 16 + 8:
            d += 1
        stretch[i] = d - 2048
    return squash, stretch


_SQUASH, _STRETCH = _build_squash_stretch()
# adaptation rate of a counter slot after c updates: about 1 / (c + 1.5), in 1/65536
_RATE = np.array([131072 // (2 * c + 3) for c in range(256)], dtype=np.int64)

_TABLE_BITS = 18  # slots per context model (hashed)
_INPUTS = 7  # context models of a candidate decision
_NEW_INPUTS = 6  # context models of a "which new label" decision
_SETS = 256  # mixer weight sets (each mixer)
_APM_BITS = 12
_LIMIT = 127  # counter count limit: a slot's adaptation rate floors at about 1 / limit
_MIXER_RATE = 6  # mixer learning rate (x 2^-16 per unit of stretch x error)
_APM_RATE = 6  # APM update shift
_INITIAL_WEIGHT = 8000  # initial mixer weight (65536 = 1)
_MASK32 = 0xFFFFFFFF
# Bytes a decoder reads beyond its payload: the coder's 4-byte window less the encoder's one flushed byte.
_READ_AHEAD = 3
_CHECK_BYTES = 2  # CRC-32 (low bytes) of the map and its size, before the coded bytes


@_compiled
def _hash(h, v):
    """Fold v (0 <= v < 2^32) into the 32-bit hash h."""
    return ((h ^ v) * 0x2C9277B5 + 0x6F4F2A45) & 0xFFFFFFFF


@_compiled
def _code_bit(bit, encoding, p, coder, buf, data):
    """Code (encoding) or decode one binary decision with P(bit = 1) = p / 65536, 1 <= p <= 65535."""
    lo = coder[0]
    hi = coder[1]
    r = hi - lo
    mid = lo + (r >> 16) * p + (((r & 0xFFFF) * p) >> 16)
    if not encoding:
        bit = 1 if coder[2] <= mid else 0
    if bit:
        hi = mid
    else:
        lo = mid + 1
    while ((lo ^ hi) & 0xFF000000) == 0:
        if encoding:
            buf[coder[3]] = hi >> 24
            coder[3] += 1
        else:
            pos = coder[3]
            byte = int(data[pos]) if pos < len(data) else 255
            coder[3] = pos + 1
            coder[2] = ((coder[2] << 8) & _MASK32) | byte
        lo = (lo << 8) & _MASK32
        hi = ((hi << 8) & _MASK32) | 0xFF
    coder[0] = lo
    coder[1] = hi
    return bit


@_compiled
def _decide(bit, encoding, slots, ni, probs, counts, weights, wset, wset2, apm1, a1, apm2, a2, stretched, coder, buf,
            data):
    """Predict one decision from the context slots ``slots[:ni]`` with mixer weight sets ``wset`` and ``wset2``
    (-1: the first mixer alone) and APM contexts ``a1``, ``a2``; code it, then learn from it."""
    stride = _INPUTS + 1
    base = wset * stride
    base2 = (_SETS + wset2) * stride
    two = wset2 >= 0
    for i in range(ni):
        stretched[i] = _STRETCH[int(probs[slots[i]]) >> 4]
    stretched[ni] = 256  # bias
    nin = ni + 1
    dot = 0
    dot2 = 0
    for i in range(nin):
        s = stretched[i]
        if s != 0:
            dot += int(weights[base + i]) * s
            if two:
                dot2 += int(weights[base2 + i]) * s
    d1 = dot >> 16
    d1 = 2047 if d1 > 2047 else (-2047 if d1 < -2047 else d1)
    d = d1
    d2 = 0
    if two:
        d2 = dot2 >> 16
        d2 = 2047 if d2 > 2047 else (-2047 if d2 < -2047 else d2)
        d = (d1 + d2) >> 1
    pm = _SQUASH[d + 2048]
    pos = d + 2048
    j = pos >> 7
    w = pos & 127
    i1 = a1 * 33 + j
    i2 = a2 * 33 + j
    p1 = (int(apm1[i1]) * (128 - w) + int(apm1[i1 + 1]) * w) >> 7
    p2 = (int(apm2[i2]) * (128 - w) + int(apm2[i2 + 1]) * w) >> 7
    p = (2 * pm + p1 + p2) >> 2
    if p < 1:
        p = 1
    elif p > 65535:
        p = 65535
    bit = _code_bit(bit, encoding, p, coder, buf, data)
    # learn
    # a mixer whose error is below 1/4096 is left as it is (most decisions in flat regions: saves time)
    err = (bit << 16) - _SQUASH[d1 + 2048]
    if err > 15 or err < -15:
        for i in range(nin):
            weights[base + i] = int(weights[base + i]) + ((stretched[i] * err * _MIXER_RATE) >> 16)
    if two:
        err = (bit << 16) - _SQUASH[d2 + 2048]
        if err > 15 or err < -15:
            for i in range(nin):
                weights[base2 + i] = int(weights[base2 + i]) + ((stretched[i] * err * _MIXER_RATE) >> 16)
    for i in range(ni):
        k = slots[i]
        q = int(probs[k])
        c = int(counts[k])
        if bit:
            q += ((65536 - q) * _RATE[c]) >> 16
        else:
            q -= (q * _RATE[c]) >> 16
        probs[k] = q
        if c < _LIMIT:
            counts[k] = c + 1
    target = bit * 65535
    k1 = i1 + (w >> 6)
    k2 = i2 + (w >> 6)
    apm1[k1] = int(apm1[k1]) + ((target - int(apm1[k1])) >> _APM_RATE)
    apm2[k2] = int(apm2[k2]) + ((target - int(apm2[k2])) >> _APM_RATE)
    return bit


def _new_state():
    """The model's adaptive state: counter slots (probability, count), mixer weights, two APMs."""
    size = (_INPUTS + _NEW_INPUTS) << _TABLE_BITS
    probs = np.full(size, 32768, dtype=np.uint16)
    counts = np.zeros(size, dtype=np.uint8)
    weights = np.full(2 * _SETS * (_INPUTS + 1), _INITIAL_WEIGHT, dtype=np.int64)
    apm1 = np.tile(np.append(_SQUASH[::128], 65535), 1 << _APM_BITS)
    return probs, counts, weights, apm1, apm1.copy()


@_compiled
def _kernel(grid, n, height, width, encoding, data, probs, counts, weights, apm1, apm2, status):
    """Code (encoding: ``grid`` holds the map) or decode (fills ``grid``) a padded map; returns the coder's bytes.
    Decoding sets ``status``: the bytes read, and 1 where the payload ran out before the map was complete."""
    table = 1 << _TABLE_BITS
    shift = 32 - _TABLE_BITS
    new_base = _INPUTS * table  # the new-label models' tables follow the candidate models'
    slots = np.zeros(_INPUTS, dtype=np.int64)
    stretched = np.zeros(_INPUTS + 1, dtype=np.int64)
    coder = np.zeros(4, dtype=np.int64)
    coder[1] = _MASK32
    if not encoding:
        x = 0
        for i in range(4):
            x = (x << 8) | (int(data[i]) if i < len(data) else 255)
        coder[2] = x
        coder[3] = 4
    buf = np.zeros(1024 + height * width // 4 if encoding else 1, dtype=np.uint8)
    vrun = np.ones(width + 6, dtype=np.int64)  # rows the column has kept its label
    new_count = np.zeros(n, dtype=np.int64)  # how often each label was a new label
    nb = np.zeros(14, dtype=np.int64)
    cand = np.zeros(9, dtype=np.int64)
    order = np.zeros(n, dtype=np.int64)
    excluded = np.zeros(n + 1, dtype=np.int64)
    # the 14 causal positions (dy, dx): L T TR TL LL TT TRR TTR TLL | TTL LLL TRRR TTRR TTLL
    # right run lengths of rows y - 1 .. y - 4 (r1 .. r4) and left run lengths of row y - 1 (l1), at padded columns
    r1 = np.zeros(width + 6, dtype=np.int64)
    r2 = np.zeros(width + 6, dtype=np.int64)
    r3 = np.zeros(width + 6, dtype=np.int64)
    r4 = np.zeros(width + 6, dtype=np.int64)
    l1 = np.zeros(width + 6, dtype=np.int64)
    dys = (0, -1, -1, -1, 0, -2, -1, -2, -1, -2, 0, -1, -2, -2)
    dxs = (-1, 0, 1, -1, -2, 0, 2, 1, -2, -1, -3, 3, 2, -2)
    for y in range(height):
        gy = y + 2
        hrun = 0
        ybin = (y * 16) // height
        for x in range(width):
            gx = x + 3
            if not encoding and coder[3] > data.shape[0] + _READ_AHEAD:
                # the payload is exhausted: a damaged or truncated payload, or a size it was not coded for
                status[0] = coder[3]
                status[1] = 1
                return buf[:0]
            if buf.shape[0] - coder[3] < 4096 and encoding:
                grown = np.zeros(2 * buf.shape[0], dtype=np.uint8)
                grown[: buf.shape[0]] = buf
                buf = grown
            for i in range(14):
                nb[i] = grid[gy + dys[i], gx + dxs[i]]
            L = nb[0]
            T = nb[1]
            TR = nb[2]
            if x > 0 and L == grid[gy, gx - 2]:
                hrun += 1
            else:
                hrun = 1
            hq = hrun if hrun < 6 else (6 if hrun < 10 else (7 if hrun < 20 else 8))
            vr = vrun[gx]
            vq = vr if vr < 6 else (6 if vr < 10 else (7 if vr < 20 else 8))
            # boundary extrapolation from rows y - 1 and y - 2: where the run above L's column ends, moved by
            # the shift between the two rows
            if y >= 2 and x >= 1:
                e1 = gx - 1 + r1[gx - 1] - 1
                e2 = gx - 1 + r2[gx - 1] - 1
                end_pred = 2 * e1 - e2 - gx
                end_pred = -4 if end_pred < -4 else (8 if end_pred > 8 else end_pred)
                end1 = e1 - gx
                end1 = 8 if end1 > 8 else end1
            else:
                end_pred = 9
                end1 = 9
            # the same over four rows: the slope from the ends in rows y - 1 and y - 4, in thirds of a column
            if y >= 4 and x >= 1:
                e4 = gx - 1 + r4[gx - 1] - 1
                end_pred4 = 3 * e1 + (e1 - e4) - 3 * gx
                end_pred4 = -6 if end_pred4 < -6 else (12 if end_pred4 > 12 else end_pred4)
            else:
                end_pred4 = 13
            # the current run of L against the run above that ends at x - 1 (when both hold L's label)
            if y >= 1 and x >= 1 and grid[gy - 1, gx - 1] == L:
                run_diff = hrun - l1[gx - 1]
                run_diff = 4 + (-3 if run_diff < -3 else (3 if run_diff > 3 else run_diff))
            else:
                run_diff = 8
            # the candidates: distinct labels of the 9 nearest, in order
            flat14 = L != n
            for i in range(1, 14):
                if nb[i] != L:
                    flat14 = False
                    break
            ncand = 0
            if flat14:  # most pixels: one candidate, every neighbour equal to it
                cand[0] = L
                ncand = 1
            for i in range(9 if not flat14 else 0):
                v = nb[i]
                if v == n:
                    continue
                seen = False
                for k in range(ncand):
                    if cand[k] == v:
                        seen = True
                        break
                if not seen:
                    cand[ncand] = v
                    ncand += 1
            truth = grid[gy, gx] if encoding else -1
            label = -1
            rejected = 0
            for k in range(ncand):
                c = cand[k]
                m = 0x3FFF if flat14 else 0  # which of the 14 positions hold the candidate
                for i in range(14 if not flat14 else 0):
                    if nb[i] == c:
                        m |= 1 << i
                kc = k if k < 3 else 3
                m4 = m & 15
                m8 = m & 255
                at_lt = (1 if c == L else 0) + (2 if c == T else 0)
                slots[0] = _hash(_hash(1, kc), m | (rejected << 14)) >> shift
                slots[1] = table + (_hash(_hash(_hash(_hash(_hash(2, kc), c), L), T), m4) >> shift)
                slots[2] = 2 * table + (_hash(_hash(_hash(_hash(_hash(_hash(3, kc), c), TR), nb[6]), nb[7]),
                                              m & 0xC7) >> shift)
                slots[3] = 3 * table + (_hash(_hash(_hash(_hash(_hash(4, kc), c), hq), vq), m4) >> shift)
                slots[4] = 4 * table + (_hash(_hash(_hash(_hash(9, kc), (end_pred + 4) * 16 + end1 + 1), m4),
                                              at_lt) >> shift)
                slots[5] = 5 * table + (_hash(_hash(_hash(14, kc), run_diff * 16 + end1 + 1),
                                              (m & 0x1F) * 2 + (1 if c == L else 0)) >> shift)
                slots[6] = 6 * table + (_hash(_hash(_hash(_hash(15, kc), (end_pred4 + 6) * 16 + end1 + 1), m4),
                                              at_lt) >> shift)
                ndist = ncand if ncand < 7 else 7
                flat = 1 if m == 0x3FFF else 0
                wset = (kc * 8 + ndist) * 2 + flat
                wset2 = -1 if flat else kc * 16 + m4  # flat pixels: the first set already separates them
                a1 = (kc << 8) | m8
                a2 = _hash(_hash(_hash(9, kc), c), L * 16 + m4) >> (32 - _APM_BITS)
                bit = 1 if truth == c else 0
                bit = _decide(bit, encoding, slots, _INPUTS, probs, counts, weights, wset, wset2, apm1, a1, apm2, a2,
                              stretched, coder, buf, data)
                if bit:
                    label = c
                    break
                rejected |= m8
            if label < 0:
                # a label none of the neighbours holds: "is it j?" over the others, most frequent new labels first
                for j in range(n):
                    excluded[j] = 0
                for k in range(ncand):
                    excluded[cand[k]] = 1
                remaining = 0
                for j in range(n):
                    if not excluded[j]:
                        order[remaining] = j
                        remaining += 1
                # insertion sort by descending new_count, ties by label (stable)
                for a in range(1, remaining):
                    v = order[a]
                    b = a - 1
                    while b >= 0 and new_count[order[b]] < new_count[v]:
                        order[b + 1] = order[b]
                        b -= 1
                    order[b + 1] = v
                lq = L if L < n else n
                tq = T if T < n else n
                for r in range(remaining):
                    j = order[r]
                    if r == remaining - 1:
                        label = j
                        break
                    rq = r if r < 3 else 3
                    slots[0] = new_base + (_hash(_hash(_hash(20, j), lq), rq) >> shift)
                    slots[1] = new_base + table + (_hash(_hash(_hash(21, j), tq), rq) >> shift)
                    slots[2] = new_base + 2 * table + (_hash(_hash(_hash(22, j), ybin), rq) >> shift)
                    slots[3] = new_base + 3 * table + (_hash(_hash(_hash(_hash(23, j), lq), tq), TR) >> shift)
                    slots[4] = new_base + 4 * table + (_hash(_hash(_hash(24, j), ncand), rq) >> shift)
                    slots[5] = new_base + 5 * table + (_hash(_hash(25, j), (x * 8) // width) >> shift)
                    wset = 128 + rq * 8 + (ncand if ncand < 7 else 7)
                    a1 = _hash(_hash(26, j), lq) >> (32 - _APM_BITS)
                    a2 = _hash(_hash(27, j), ybin) >> (32 - _APM_BITS)
                    bit = 1 if truth == j else 0
                    bit = _decide(bit, encoding, slots, _NEW_INPUTS, probs, counts, weights, wset, 128 + (j & 31),
                                  apm1, a1, apm2, a2, stretched, coder, buf, data)
                    if bit:
                        label = j
                        break
                new_count[label] += 1
            if not encoding:
                grid[gy, gx] = label
            vrun[gx] = vrun[gx] + 1 if label == T else 1
        for i in range(width + 6):
            r4[i] = r3[i]
            r3[i] = r2[i]
            r2[i] = r1[i]
        for gx in range(3 + width - 1, 2, -1):
            r1[gx] = r1[gx + 1] + 1 if gx + 1 < 3 + width and grid[gy, gx + 1] == grid[gy, gx] else 1
        for gx in range(3, 3 + width):
            l1[gx] = l1[gx - 1] + 1 if gx > 3 and grid[gy, gx - 1] == grid[gy, gx] else 1
    if encoding:
        # flush: the top byte of lo, then 0xFF padding (which the decoder reads past the end) lands inside [lo, hi]
        buf[coder[3]] = coder[0] >> 24
        coder[3] += 1
        return buf[: coder[3]]
    status[0] = coder[3]
    return buf[:0]


def _grid(height: int, width: int, n: int) -> np.ndarray:
    """The kernel's map buffer: two rows above and three columns either side hold ``n``, the "outside" label.
    int16 holds every label index and ``n`` <= 256 at 2 bytes a pixel (128 MB at the format's 2^26 pixels)."""
    return np.full((height + 2, width + 6), n, dtype=np.int16)


def _check_value(labels: np.ndarray) -> bytes:
    height, width = labels.shape
    size = zlib.crc32(struct.pack(">II", height, width))
    crc = zlib.crc32(np.ascontiguousarray(labels, dtype=np.uint8).tobytes(), size)
    return (crc & ((1 << (8 * _CHECK_BYTES)) - 1)).to_bytes(_CHECK_BYTES, "big")


def encode(labels: np.ndarray) -> bytes:
    """Code a uint8 HxW label map losslessly."""
    labels = _check_map(labels)
    values, indices = np.unique(labels, return_inverse=True)
    indices = indices.reshape(labels.shape)
    out = write_label_table(values)
    if len(values) == 1:
        return out
    grid = _grid(*labels.shape, len(values))
    grid[2:, 3:-3] = indices
    coded = _kernel(grid, len(values), labels.shape[0], labels.shape[1], True,
                    np.zeros(0, dtype=np.uint8), *_new_state(), np.zeros(2, dtype=np.int64))
    return out + _check_value(labels) + coded.tobytes()


def decode(data: bytes, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode`; a payload that is damaged, cut short, longer than its map or decoded at a size
    it was not coded for raises :class:`BitstreamError` (its coded length and a CRC of the map say so)."""
    values, rest = read_label_table(bytes(data), height, width, "mix")
    n = len(values)
    if n == 1:
        if rest:
            raise BitstreamError("mix map payload has trailing bytes after a single-label map")
        return np.full((height, width), values[0], dtype=np.uint8)
    if len(rest) <= _CHECK_BYTES:
        raise BitstreamError("mix map payload is truncated before its coded pixels")
    check, coded = rest[:_CHECK_BYTES], np.frombuffer(rest[_CHECK_BYTES:], dtype=np.uint8).copy()
    grid = _grid(height, width, n)
    status = np.zeros(2, dtype=np.int64)
    _kernel(grid, n, height, width, False, coded, *_new_state(), status)
    if status[1]:
        raise BitstreamError(f"mix map payload ran out after {len(coded)} coded bytes: it is truncated or damaged, "
                             f"or the map is not {height}x{width}")
    if status[0] != len(coded) + _READ_AHEAD:
        raise BitstreamError(f"mix map payload holds {len(coded) + _READ_AHEAD - int(status[0])} bytes more than its "
                             "map needs (trailing bytes, or damage)")
    labels = values[grid[2:, 3:-3]]
    if _check_value(labels) != check:
        raise BitstreamError("mix map payload fails its check: it is damaged")
    return labels


class MixMapCoder(MapCoder):
    """``mix``: binary context mixing over each pixel's causal neighbourhood (see the module docstring)."""

    name = "mix"

    def encode(self, semantic_map: np.ndarray) -> bytes:
        return encode(semantic_map)

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        return decode(data, height, width)
