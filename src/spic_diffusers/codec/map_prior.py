"""``context4``: ``context2``'s pixel model over horizontal bands, seeing further right, starting from a shipped prior.

Two changes to ``context2`` (see :mod:`.map_context`) pay on real street maps:

* **Order.**  ``context2`` decodes along wavefronts ``t = x + 2 y`` in vertical strips, so a pixel never
  sees ``(-1, +2)``: on CamVid maps about 40 % of the pixels where a new region starts inside a flat
  neighbourhood hold the label found two or three pixels right of the one above.  ``context4`` uses
  wavefronts ``t = x + 4 y`` and the neighbours

      TL  T  TR TRR TRRR          (row - 2: TT)
  LL  L   X

  (``TTR`` and ``TLL`` of ``context2`` make room for ``TRR`` and ``TRRR``).  To keep the number of
  wavefronts (numpy's per-step cost) near ``context2``'s, the map is cut into horizontal bands of at
  most :data:`BAND_HEIGHT` rows that run in lock step; a band's first row sees nothing above it.
* **Prior.**  ``context2`` starts every map from empty statistics and spends a good share of its bytes
  learning them.  ``context4`` starts its count tables and mixing weights from a prior learnt on
  street maps in Cityscapes train ids (``assets/map_prior/context4.npz``, built by
  ``scripts/train_map_prior.py``), each context capped at :data:`PRIOR_STRENGTH` observations, so a
  map unlike the training set takes over the statistics after a few dozen pixels of a context.
  Label contexts are keyed by label *values* (not by their index in the map's table), so the prior's
  statistics of, say, car against road apply to every map.

The prior is part of the format: a changed prior makes old payloads undecodable, so its content is
checked against :data:`PRIOR_DIGEST` when loaded.  The payload layout is ``context2``'s.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from importlib import resources

import numpy as np

from .map_context import (
    _FLAT_PRIOR,
    _HASHED_ROWS,
    _K,
    _NEW_PRIOR,
    _PATTERNS,
    _RADIX,
    _SELECTORS,
    PixelContextMapCoder,
    _exp,
    _hash,
    _Layout,
    _log,
    _PixelModel,
)

BAND_HEIGHT = 64
SKEW = 4
NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, 2), (-1, 3))
_OUTSIDE = 256  # the label value of a position outside the map
_VALUES = 257  # label values 0..255 and outside
PRIOR_STRENGTH = 16.0  # at most this many observations per context in the prior
PRIOR_UNIT = 16  # prior counts are stored in 1/16 of an observation
WEIGHT_UNIT = 4096  # prior mixing weights in 1/4096
PRIOR_TABLES = ("patterns", "pairs", "triples", "flat", "new")
# SHA-256 of the prior's dense arrays as float64, in PRIOR_TABLES order, then the weights (see prior_digest).
PRIOR_DIGEST = "0bbb7b752446314a1039442d0e61fc786e4c32268de47ffca1b08a1fed174f25"


class PriorError(RuntimeError):
    """The shipped prior of ``context4`` is missing or not the one its streams were coded with."""


class _BandLayout(_Layout):
    """Horizontal bands of at most :data:`BAND_HEIGHT` rows (equal heights, the last rows padded) side by side."""

    def __init__(self, height: int, width: int):
        self.skew = SKEW
        self.full_height = height
        bands = -(-height // BAND_HEIGHT)
        self._set_grid(-(-height // bands), width * bands, bands, NEIGHBOURS)

    def to_buffer(self, indices: np.ndarray, outside: int) -> np.ndarray:
        bands, rows, width = self.strips, self.height, self.strip_width
        padded = np.pad(indices, ((0, bands * rows - self.full_height), (0, 0)), mode="edge")
        return super().to_buffer(padded.reshape(bands, rows, width).transpose(1, 0, 2).reshape(rows, -1), outside)

    def from_buffer(self, buffer: np.ndarray) -> np.ndarray:
        bands, rows, width = self.strips, self.height, self.strip_width
        strips = super().from_buffer(buffer).reshape(rows, bands, width)
        return strips.transpose(1, 0, 2).reshape(bands * rows, width)[: self.full_height]


def prior_digest(tables: dict[str, np.ndarray]) -> str:
    """The digest :data:`PRIOR_DIGEST` states, over the dense prior tables and weights as float64."""
    digest = hashlib.sha256()
    for name in (*PRIOR_TABLES, "weights"):
        digest.update(np.ascontiguousarray(tables[name], dtype="<f8").tobytes())
    return digest.hexdigest()


def dense_prior(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The prior's dense tables from its stored form (sparse rows of counts in 1/PRIOR_UNIT, weights in 1/4096)."""
    shapes = _table_shapes()
    tables = {}
    for name in PRIOR_TABLES:
        table = np.zeros(shapes[name])
        table[stored[f"{name}_rows"].astype(np.int64)] = stored[f"{name}_counts"].astype(np.float64) / PRIOR_UNIT
        tables[name] = table
    tables["weights"] = stored["weights"].astype(np.float64) / WEIGHT_UNIT
    return tables


def _table_shapes() -> dict[str, tuple[int, int]]:
    return {
        "patterns": (_PATTERNS, _K + 1),
        "pairs": (_HASHED_ROWS, _K + 1),
        "triples": (_HASHED_ROWS, _K + 1),
        "flat": (_VALUES, 2),
        "new": (_VALUES, 256),
        "weights": (_SELECTORS * 2, 3),
    }


@lru_cache(maxsize=1)
def load_prior() -> dict[str, np.ndarray]:
    """The shipped prior, checked against :data:`PRIOR_DIGEST` (a different prior would decode garbage)."""
    try:
        data = resources.files("spic_diffusers").joinpath("assets", "map_prior", "context4.npz").read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            tables = dense_prior(dict(stored))
    except (OSError, KeyError, ValueError) as err:
        raise PriorError(f"the context4 prior cannot be read ({err}); reinstall spic-diffusers") from None
    if prior_digest(tables) != PRIOR_DIGEST:
        raise PriorError("the context4 prior is not the one its streams are coded with; reinstall spic-diffusers")
    for table in tables.values():
        table.setflags(write=False)
    return tables


class _PriorModel(_PixelModel):
    """``context2``'s model keyed by label values, its tables started from a prior (None: empty statistics)."""

    def __init__(self, values: np.ndarray, prior: dict[str, np.ndarray] | None):
        super().__init__(len(values))
        self.lut = np.append(values.astype(np.int64), _OUTSIDE)  # label index -> label value
        self.flat = np.empty((_VALUES, 2))
        self.flat[:] = _FLAT_PRIOR
        self.new = np.full((_VALUES, 256), _NEW_PRIOR)
        if prior is not None:
            for name in PRIOR_TABLES:
                setattr(self, name, getattr(self, name) + prior[name])
            self.weights = prior["weights"].copy()

    def flat_probabilities(self, left: np.ndarray) -> np.ndarray:
        return self.flat.take(self.lut.take(left), axis=0)

    def update_flat(self, left: np.ndarray, is_new: np.ndarray) -> None:
        np.add.at(self.flat, (self.lut.take(left), is_new), 1.0)

    def predict(self, neighbours: np.ndarray):
        """As :meth:`_PixelModel.predict`, with the label contexts hashed from label values."""
        n = self.n
        first = (neighbours[:, :, None] == neighbours[:, None, :]).argmax(axis=2)
        big = first @ _RADIX
        small = first[:, :4] @ _RADIX[:4]
        value = self.lut.take(neighbours[:, :4])
        far = (neighbours[:, 4] != neighbours[:, 0]) + 2 * (neighbours[:, 5] != neighbours[:, 1])
        pair = ((small * _VALUES + value[:, 0]) * _VALUES + value[:, 1]) * 4 + far
        triple = (pair // 4 * _VALUES + value[:, 3]) * 2 + 1
        pair, triple = _hash(pair), _hash(triple)
        a = self.patterns.take(big, axis=0)
        b = self.pairs.take(pair, axis=0)
        c = self.triples.take(triple, axis=0)
        a_total = a.sum(axis=1, keepdims=True)
        logs = np.stack(
            [_log(a / a_total), _log(b / b.sum(axis=1, keepdims=True)), _log(c / c.sum(axis=1, keepdims=True))], axis=1
        )
        distinct = (first == self._columns) & (neighbours != n)
        selector = np.minimum(distinct.sum(axis=1), _SELECTORS - 1) * 2 + (a_total[:, 0] > 8)
        weights = self.weights.take(selector, axis=0)
        mixed = weights[:, 0:1] * logs[:, 0] + weights[:, 1:2] * logs[:, 1] + weights[:, 2:3] * logs[:, 2]
        possible = np.ones(mixed.shape, dtype=bool)
        possible[:, :_K] = distinct
        possible[distinct.sum(axis=1) >= n, _K] = False
        mixed[~possible] = -1e30
        probs = _exp(mixed.max(axis=1, keepdims=True) - mixed)
        probs[~possible] = 0.0
        return probs, (big, pair, triple, logs, selector)

    def new_probabilities(self, neighbours: np.ndarray) -> np.ndarray:
        # A C-ordered copy: the range coder reads the rows of the array it is given as laid out in memory.
        rows = self.new.take(self.lut.take(neighbours[:, 0]), axis=0)
        probs = np.ascontiguousarray(rows.take(self.lut[:-1], axis=1))
        at = np.repeat(np.arange(len(neighbours)), _K)
        labels = neighbours.ravel()
        inside = labels < self.n
        probs[at[inside], labels[inside]] = 0.0
        return probs

    def update_new(self, left: np.ndarray, labels: np.ndarray) -> None:
        np.add.at(self.new, (self.lut.take(left), self.lut.take(labels)), 1.0)

    def statistics(self) -> dict[str, np.ndarray]:
        """What this map taught the model: its tables less their starting values, and its weights."""
        empty = _PriorModel(self.lut[:-1], None)
        learnt = {name: getattr(self, name) - getattr(empty, name) for name in PRIOR_TABLES}
        learnt["weights"] = self.weights.copy()
        return learnt


class PriorContextMapCoder(PixelContextMapCoder):
    """``context2``'s payload and range coder with ``context4``'s order and prior (see the module docstring)."""

    name = "context4"

    def __init__(self, prior: dict[str, np.ndarray] | None = None):
        super().__init__()
        self._prior = load_prior() if prior is None else prior

    def _layout(self, height: int, width: int) -> _Layout:
        return _BandLayout(height, width)

    def _model(self, values: np.ndarray) -> _PixelModel:
        return _PriorModel(values, self._prior)
