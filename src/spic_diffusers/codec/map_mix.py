"""``mix``, the default map coder: binary context mixing over each pixel's causal neighbourhood, in raster order.

``context2`` (:mod:`.map_context`) keeps numpy's vectorisation by coding whole wavefronts, so its
models learn in batches from a few count tables.  Coding one pixel at a time in compiled code affords
a paq-style model instead: many hashed contexts per decision, logistic mixing and adaptive probability
maps, updated after every decision.  On CamVid test maps it takes 0.85x context2's bytes (0.59x
lossless JPEG XL at effort 10) in a third of its time (``benchmarks/bench_codecs.py``).

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
range and 16-bit probabilities codes the result.  The candidate decisions' context models (the
``inputs`` bits of :data:`PARAMS`), each with the decision index:

* 1: which of 14 causal positions (row y: L LL LLL; y - 1: x - 3 .. x + 3; y - 2: x - 2 .. x + 2)
  hold the candidate, and which of the 8 nearest hold already rejected candidates;
* 2: the candidate's label with the labels of L and T and which of L, T, TL, TR hold it;
* 3: the candidate's label with the labels of TR, TRR, TTR;
* 4: the candidate's label, the run length of L along the row and of T down its column;
* 9 / 15: boundary extrapolation: where the run above x - 1 ends, moved by its shift over the last
  two / four rows;
* 14: the current run against the run above it, and where the run above ends.

New-label decisions use the label with the labels of L, T, TR, the row band, the column band, the
number of candidates and the rank.  Measured on CamVid train and validation maps (12 at 256x512) and
kept out, each at most 0.4 % smaller: the partition pattern of the 8 nearest, label-specific 14-position
masks, the four nearest labels jointly, row band, run-length variants, start-of-run extrapolation,
a flag for columns that equalled their left neighbour in every row so far (a resize artefact), a
"new context" bit in the mixer selector, 4x larger tables; a fast-adapting second probability per
slot, a learnt final mixer in place of the average of the two mixers, and ranking new labels per
label of L were larger.
Contexts from a clean 4x area-downsampled image (colour or luminance cells, and their edges):
0.4-0.8 % smaller, before any lossy coding of that image.  Starting from a state learnt on six
other CamVid train maps: 2.6 % smaller.

Everything -- the model, the mixer, the coder -- is integer arithmetic, so an encoder and a decoder
on any machine compute identical probabilities.  The squash table is built once from correctly
rounded ``decimal`` exponentials (identical on every platform) and integer interpolation.  The
kernels are plain Python functions compiled with ``numba.njit`` when numba is installed; without it
(or with ``NUMBA_DISABLE_JIT=1``) the same functions run as Python and decode the same payloads, only
slowly.  Values never leave the signed 64-bit range, so numba's machine integers and Python's
unbounded ones agree.

The diagnostics in ``stats`` (bits per kind of decision) use a float-built table and never reach the
coder; ``PARAMS`` hold the measured alternatives above, and streams are always coded with its defaults.
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


def njit(*args, cache: bool = True):
    """numba's ``njit``, caching compiled code where numba finds a writable place (a compile takes seconds, once),
    compiling in every process where it does not; without numba the function itself (pure Python, same output)."""

    def wrap(function):
        if _numba_njit is None:
            return function
        try:
            return _numba_njit(cache=cache)(function)
        except RuntimeError:  # no writable cache location: compile per process
            return _numba_njit(function)

    return wrap(args[0]) if args and callable(args[0]) else wrap


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
# diagnostics only (never part of coding): -log2(p / 4096) in 1/256 bit
_COST = np.round(-np.log2(np.maximum(np.arange(4096), 0.5) / 4096) * 256).astype(np.int64)
_RATE = np.array([131072 // (2 * c + 3) for c in range(256)], dtype=np.int64)

_TABLE_BITS = 18  # slots per context model (hashed)
_INPUTS = 18  # context models of a candidate decision
_NEW_INPUTS = 7  # context models of a "which new label" decision
_SETS = 256  # mixer weight sets
_APM_BITS = 12
_MASK32 = 0xFFFFFFFF
# Bytes a decoder reads beyond its payload: the coder's 4-byte window less the encoder's one flushed byte.
_READ_AHEAD = 3
_CHECK_BYTES = 2  # CRC-32 (low bytes) of the map and its size, before the coded bytes

# Tunable and ablation parameters (an int64 array passed to the kernel; the defaults are the coder's).
PARAMS = {
    "limit": 127,  # counter count limit: adaptation rate floors at about 1 / limit
    "mixer_rate": 6,  # mixer learning rate (x 2^-16 per unit of stretch x error)
    "apm_rate": 6,  # APM update shift
    "initial_weight": 8000,  # initial mixer weight (65536 = 1)
    "use_apm": 1,
    "inputs": 0b1100_0010_0001_1110,  # bit i: candidate context model i is used
    "new_inputs": 0b11_1111,  # bit 6 is the coarse image's
    "candidates": 9,  # how many neighbour positions offer candidates
    "mixers": 2,  # 2: a second weight set chosen by another context, averaged in the stretched domain
    "dual": 0,  # 1: every context slot also keeps a fast-adapting probability, a second mixer input
    "fast_rate": 3,  # its update shift
    "apm2_context": 0,  # 0: label of the candidate and of L; 1: the boundary extrapolation
    "confidence": 0,  # 1: the mixer weight set also says whether the main context is new (seen < 3 times)
    "coarse": 0,  # experiment: 1 adds contexts from a quantised colour cell per pixel (``coarse`` argument)
    "rank_by_left": 0,  # 1: new labels are ranked by their counts after L's label, 0: by their counts overall
}


def params_array(**overrides) -> np.ndarray:
    values = dict(PARAMS, **overrides)
    unknown = set(values) - set(PARAMS)
    if unknown:
        raise ValueError(f"unknown map_mix parameters {sorted(unknown)}")
    return np.array([values[k] for k in PARAMS], dtype=np.int64)


@njit(cache=True)
def _hash(h, v):
    """Fold v (0 <= v < 2^32) into the 32-bit hash h."""
    return ((h ^ v) * 0x2C9277B5 + 0x6F4F2A45) & 0xFFFFFFFF


@njit(cache=True)
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


@njit(cache=True)
def _decide(bit, encoding, slots, used, ni, probs, counts, fast, weights, wset, wset2, apm1, a1, apm2, a2,
            stretched, prm, coder, buf, data, stats, category):
    """Predict one decision from the context slots ``slots[:ni]`` (those with ``used`` bit set), code it, learn."""
    limit = prm[0]
    mixer_rate = prm[1]
    apm_rate = prm[2]
    stride = 2 * _INPUTS + 1
    base = wset * stride
    base2 = (_SETS + wset2) * stride
    two = prm[8] == 2 and wset2 >= 0
    dual = prm[9]
    fast_rate = prm[10]
    nin = 2 * ni + 1
    for i in range(ni):
        if (used >> i) & 1:
            stretched[i] = _STRETCH[int(probs[slots[i]]) >> 4]
            stretched[ni + 1 + i] = _STRETCH[int(fast[slots[i]]) >> 4] if dual else 0
        else:
            stretched[i] = 0
            stretched[ni + 1 + i] = 0
    stretched[ni] = 256
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
    if d > 2047:
        d = 2047
    elif d < -2047:
        d = -2047
    pm = _SQUASH[d + 2048]
    p = pm
    if prm[4]:
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
    stats[category, 0] += _COST[(p if bit else 65536 - p) >> 4]
    stats[category, 1] += 1
    # learn
    # a mixer whose error is below 1/4096 is left as it is (most decisions in flat regions: saves time)
    err = (bit << 16) - _SQUASH[d1 + 2048]
    if err > 15 or err < -15:
        for i in range(nin):
            weights[base + i] = int(weights[base + i]) + ((stretched[i] * err * mixer_rate) >> 16)
    if two:
        err = (bit << 16) - _SQUASH[d2 + 2048]
        if err > 15 or err < -15:
            for i in range(nin):
                weights[base2 + i] = int(weights[base2 + i]) + ((stretched[i] * err * mixer_rate) >> 16)
    for i in range(ni):
        if (used >> i) & 1:
            k = slots[i]
            q = int(probs[k])
            c = int(counts[k])
            if bit:
                q += ((65536 - q) * _RATE[c]) >> 16
            else:
                q -= (q * _RATE[c]) >> 16
            probs[k] = q
            if c < limit:
                counts[k] = c + 1
            if dual:
                f = int(fast[k])
                fast[k] = f + ((bit * 65535 - f) >> fast_rate)
    if prm[4]:
        target = bit * 65535
        k1 = i1 + (w >> 6)
        k2 = i2 + (w >> 6)
        apm1[k1] = int(apm1[k1]) + ((target - int(apm1[k1])) >> apm_rate)
        apm2[k2] = int(apm2[k2]) + ((target - int(apm2[k2])) >> apm_rate)
    return bit


def _new_state(initial_weight, dual):
    """The model's adaptive state: counter slots (probability, count), mixer weights, two APMs."""
    table = 1 << _TABLE_BITS
    probs = np.full((_INPUTS + _NEW_INPUTS) * table, 32768, dtype=np.uint16)
    counts = np.zeros((_INPUTS + _NEW_INPUTS) * table, dtype=np.uint8)
    weights = np.full(2 * _SETS * (2 * _INPUTS + 1), initial_weight, dtype=np.int64)
    apm_size = (1 << _APM_BITS) * 33
    apm1 = np.tile(np.append(_SQUASH[::128], 65535), apm_size // 33)
    fast = probs.copy() if dual else probs[:1].copy()
    return probs, counts, fast, weights, apm1, apm1.copy()


@njit(cache=True)
def _kernel(grid, n, height, width, encoding, data, prm, stats, coarse, probs, counts, fast, weights, apm1, apm2,
            status):
    """Code (encoding: ``grid`` holds the map) or decode (fills ``grid``) a padded map; returns the coder's bytes."""
    table = 1 << _TABLE_BITS
    shift = 32 - _TABLE_BITS
    slots = np.zeros(_INPUTS, dtype=np.int64)
    stretched = np.zeros(2 * _INPUTS + 1, dtype=np.int64)
    coder = np.zeros(4, dtype=np.int64)
    coder[1] = _MASK32
    if not encoding:
        x = 0
        for i in range(4):
            x = (x << 8) | (int(data[i]) if i < len(data) else 255)
        coder[2] = x
        coder[3] = 4
    buf = np.zeros(1024 + height * width // 4 if encoding else 1, dtype=np.uint8)
    used = prm[5]
    new_used = prm[6]
    if prm[13]:
        used |= 3 << 16
        new_used |= 1 << 6
    max_candidates = prm[7]
    vrun = np.ones(width + 6, dtype=np.int64)  # rows the column has kept its label
    new_count = np.zeros((n + 1, n), dtype=np.int64)  # per label of L (n: none), how often each label was new
    nb = np.zeros(14, dtype=np.int64)
    cand = np.zeros(9, dtype=np.int64)
    order = np.zeros(n, dtype=np.int64)
    excluded = np.zeros(n + 1, dtype=np.int64)
    # the 14 causal positions (dy, dx): L T TR TL LL TT TRR TTR TLL | TTL LLL TRRR TTRR TTLL
    # right and left run lengths of rows y - 1 (r1, l1) and y - 2 (r2, l2), at padded columns
    r1 = np.zeros(width + 6, dtype=np.int64)
    r2 = np.zeros(width + 6, dtype=np.int64)
    r3 = np.zeros(width + 6, dtype=np.int64)
    r4 = np.zeros(width + 6, dtype=np.int64)
    l1 = np.zeros(width + 6, dtype=np.int64)
    l2 = np.zeros(width + 6, dtype=np.int64)
    # 1 while a column has equalled its left neighbour in every row so far (columns a resize duplicated)
    dupcol = np.ones(width + 6, dtype=np.int64)
    dupcol[3] = 0
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
            # the shift between the two rows; where the run above TR's column starts, likewise
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
            if y >= 2 and x + 1 < width:
                s1 = gx + 1 - l1[gx + 1] + 1
                s2 = gx + 1 - l2[gx + 1] + 1
                start_pred = gx - (2 * s1 - s2)
                start_pred = -4 if start_pred < -4 else (8 if start_pred > 8 else start_pred)
            else:
                start_pred = 9
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
            # partition pattern of the 8 nearest (which equal which) and the number of distinct labels
            flat14 = L != n
            for i in range(1, 14):
                if nb[i] != L:
                    flat14 = False
                    break
            pattern = 0
            ncand = 0
            if flat14:  # most pixels: one candidate, every neighbour equal to it (pattern 0)
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
                if not seen and i < max_candidates:
                    cand[ncand] = v
                    ncand += 1
            for i in range(8 if not flat14 else 0):
                f = i
                for k in range(i):
                    if nb[k] == nb[i]:
                        f = k
                        break
                pattern = pattern * (i + 1) + f
            truth = grid[gy, gx] if encoding else -1
            label = -1
            rejected = 0
            for k in range(ncand):
                c = cand[k]
                m = 0x3FFF if flat14 else 0
                for i in range(14 if not flat14 else 0):
                    if nb[i] == c:
                        m |= 1 << i
                kc = k if k < 3 else 3
                m4 = m & 15
                m8 = m & 255
                slots[0] = (kc << 8) | m8
                if (used >> 1) & 1:
                    slots[1] = table + (_hash(_hash(1, kc), m | (rejected << 14)) >> shift)
                if (used >> 2) & 1:
                    slots[2] = 2 * table + (_hash(_hash(_hash(_hash(_hash(2, kc), c), L), T), m4) >> shift)
                if (used >> 3) & 1:
                    slots[3] = 3 * table + (_hash(_hash(_hash(_hash(_hash(_hash(3, kc), c), TR), nb[6]), nb[7]),
                                                  m & 0xC7) >> shift)
                if (used >> 4) & 1:
                    slots[4] = 4 * table + (_hash(_hash(_hash(_hash(_hash(4, kc), c), hq), vq), m4) >> shift)
                if (used >> 5) & 1:
                    slots[5] = 5 * table + (_hash(_hash(_hash(5, kc), pattern), m8) >> shift)
                if (used >> 6) & 1:
                    slots[6] = 6 * table + (_hash(_hash(_hash(_hash(6, kc), c), ybin), m4) >> shift)
                if (used >> 7) & 1:
                    slots[7] = 7 * table + (_hash(_hash(_hash(_hash(7, kc), c), T), vq * 16 + m4) >> shift)
                if (used >> 8) & 1:
                    slots[8] = 8 * table + (_hash(_hash(_hash(_hash(8, kc), c), L), hq * 16 + m4) >> shift)
                if (used >> 11) & 1:
                    slots[11] = 11 * table + (_hash(_hash(_hash(11, kc), c), m) >> shift)
                if (used >> 12) & 1:
                    dup = dupcol[gx] * 2 + (1 if c == L else 0)
                    slots[12] = 12 * table + (_hash(_hash(_hash(_hash(12, kc), dup), m4), min(vr, 8)) >> shift)
                if (used >> 13) & 1:
                    labels4 = _hash(_hash(_hash(_hash(_hash(13, kc), c), L), T), nb[3])
                    slots[13] = 13 * table + (_hash(labels4, TR) >> shift)
                if (used >> 14) & 1:
                    slots[14] = 14 * table + (_hash(_hash(_hash(14, kc), run_diff * 16 + end1 + 1),
                                                    (m & 0x1F) * 2 + (1 if c == L else 0)) >> shift)
                if (used >> 15) & 1:
                    slope = _hash(_hash(_hash(15, kc), (end_pred4 + 6) * 16 + end1 + 1), m4)
                    slots[15] = 15 * table + (_hash(slope, (1 if c == L else 0) + (2 if c == T else 0)) >> shift)
                if prm[13]:
                    cell = coarse[y, x]
                    edge = 1 if x > 0 and coarse[y, x - 1] != cell else 0
                    edge += 2 if y > 0 and coarse[y - 1, x] != cell else 0
                    slots[16] = 16 * table + (_hash(_hash(_hash(16, kc), c), cell) >> shift)
                    slots[17] = 17 * table + (_hash(_hash(_hash(17, kc), edge * 4 + (1 if c == L else 0)
                                                                + (2 if c == T else 0)), m4) >> shift)
                if (used >> 9) & 1:
                    slots[9] = 9 * table + (_hash(_hash(_hash(_hash(9, kc), (end_pred + 4) * 16 + end1 + 1), m4),
                                                  (1 if c == L else 0) + (2 if c == T else 0)) >> shift)
                if (used >> 10) & 1:
                    slots[10] = 10 * table + (_hash(_hash(_hash(_hash(10, kc), (start_pred + 4)), m4),
                                                    (1 if c == TR else 0) + (2 if c == nb[6] else 0)) >> shift)
                ndist = ncand if ncand < 7 else 7
                flat = 1 if m == 0x3FFF else 0
                wset = (kc * 8 + ndist) * 2 + flat
                if prm[12] and counts[slots[1]] < 3:
                    wset += 64
                a1 = (kc << 8) | m8
                if prm[11] == 0:
                    a2 = _hash(_hash(_hash(9, kc), c), L * 16 + m4) >> (32 - _APM_BITS)
                else:
                    a2 = _hash(_hash(_hash(9, kc), (end_pred + 4) * 16 + end1 + 1), m4 * 4 + (1 if c == L else 0)
                               + (2 if c == T else 0)) >> (32 - _APM_BITS)
                category = (0 if flat else 16 + m4) if k == 0 else (2 if k == 1 else 3)
                bit = 1 if truth == c else 0
                wset2 = -1 if flat else kc * 16 + m4  # flat pixels: the first set already separates them
                bit = _decide(bit, encoding, slots, used, _INPUTS, probs, counts, fast, weights, wset, wset2, apm1, a1,
                              apm2, a2, stretched, prm, coder, buf, data, stats, category)
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
                rank_row = (L if L < n else n) if prm[14] else 0
                for a in range(1, remaining):
                    v = order[a]
                    b = a - 1
                    while b >= 0 and new_count[rank_row, order[b]] < new_count[rank_row, v]:
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
                    base = _INPUTS * table
                    slots[0] = base + (_hash(_hash(_hash(20, j), lq), rq) >> shift)
                    slots[1] = base + table + (_hash(_hash(_hash(21, j), tq), rq) >> shift)
                    slots[2] = base + 2 * table + (_hash(_hash(_hash(22, j), ybin), rq) >> shift)
                    slots[3] = base + 3 * table + (_hash(_hash(_hash(_hash(23, j), lq), tq), TR) >> shift)
                    slots[4] = base + 4 * table + (_hash(_hash(_hash(24, j), ncand), rq) >> shift)
                    slots[5] = base + 5 * table + (_hash(_hash(25, j), (x * 8) // width) >> shift)
                    if prm[13]:
                        slots[6] = base + 6 * table + (_hash(_hash(26, j), coarse[y, x]) >> shift)
                    wset = 128 + rq * 8 + (ncand if ncand < 7 else 7)
                    a1 = _hash(_hash(26, j), lq) >> (32 - _APM_BITS)
                    a2 = _hash(_hash(27, j), ybin) >> (32 - _APM_BITS)
                    bit = 1 if truth == j else 0
                    bit = _decide(bit, encoding, slots, new_used, _NEW_INPUTS, probs, counts, fast, weights, wset,
                                  128 + (j & 31), apm1, a1, apm2, a2, stretched, prm, coder, buf, data, stats, 4)
                    if bit:
                        label = j
                        break
                new_count[rank_row, label] += 1
            if not encoding:
                grid[gy, gx] = label
            vrun[gx] = vrun[gx] + 1 if label == T else 1
            if label != L:
                dupcol[gx] = 0
        for i in range(width + 6):
            r4[i] = r3[i]
            r3[i] = r2[i]
            r2[i] = r1[i]
            l2[i] = l1[i]
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


def _padded(indices: np.ndarray, n: int) -> np.ndarray:
    height, width = indices.shape
    grid = np.full((height + 2, width + 6), n, dtype=np.int64)
    grid[2:, 3 : 3 + width] = indices
    return grid


def _check_value(labels: np.ndarray) -> bytes:
    height, width = labels.shape
    size = zlib.crc32(struct.pack(">II", height, width))
    crc = zlib.crc32(np.ascontiguousarray(labels, dtype=np.uint8).tobytes(), size)
    return (crc & ((1 << (8 * _CHECK_BYTES)) - 1)).to_bytes(_CHECK_BYTES, "big")


def encode(labels: np.ndarray, params: np.ndarray | None = None, stats: np.ndarray | None = None, state=None,
           coarse: np.ndarray | None = None) -> bytes:
    """Code a uint8 HxW label map losslessly (``params``, ``stats``, ``state``, ``coarse``: measurement hooks)."""
    labels = _check_map(labels)
    values, indices = np.unique(labels, return_inverse=True)
    indices = indices.reshape(labels.shape)
    out = write_label_table(values)
    if len(values) == 1:
        return out
    prm = params_array() if params is None else params
    coded = _kernel(_padded(indices, len(values)), len(values), labels.shape[0], labels.shape[1], True,
                    np.zeros(0, dtype=np.uint8), prm, np.zeros((32, 2), dtype=np.int64) if stats is None else stats,
                    np.zeros((1, 1), dtype=np.int64) if coarse is None else coarse,
                    *(_new_state(prm[3], prm[9]) if state is None else state), np.zeros(2, dtype=np.int64))
    return out + _check_value(labels) + coded.tobytes()


def decode(data: bytes, height: int, width: int, params: np.ndarray | None = None, state=None,
           coarse: np.ndarray | None = None) -> np.ndarray:
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
    grid = np.full((height + 2, width + 6), n, dtype=np.int64)
    prm = params_array() if params is None else params
    status = np.zeros(2, dtype=np.int64)
    _kernel(grid, n, height, width, False, coded, prm, np.zeros((32, 2), dtype=np.int64),
            np.zeros((1, 1), dtype=np.int64) if coarse is None else coarse,
            *(_new_state(prm[3], prm[9]) if state is None else state), status)
    if status[1]:
        raise BitstreamError(f"mix map payload ran out after {len(coded)} coded bytes: it is truncated or damaged, "
                             f"or the map is not {height}x{width}")
    if status[0] != len(coded) + _READ_AHEAD:
        raise BitstreamError(f"mix map payload holds {len(coded) + _READ_AHEAD - int(status[0])} bytes more than its "
                             "map needs (trailing bytes, or damage)")
    labels = values[grid[2:, 3 : 3 + width]]
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
