"""Baselines at SPIC's rate: the bicubic coarse image, and whole-image codecs matched to the stream size."""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

from .. import codec
from ..codec.coarse import COARSE_CODECS
from ..codec.rate_search import quality_candidates, search_rate
from .settings import EvaluationError

__all__ = ["available_codecs", "match_rate", "quality_candidates"]  # quality_candidates: the codec's, re-exported


def available_codecs(names: Iterable[str] | None = None) -> tuple[dict[str, type], dict[str, str]]:
    """Whole-image codecs that work here ({name: codec class}) and why the others do not ({name: reason}).

    A codec counts as available when it codes a small test image (external tools are looked up then).
    """
    names = list(COARSE_CODECS) if names is None else list(names)
    probe = np.zeros((16, 16, 3), dtype=np.uint8)
    usable, missing = {}, {}
    for name in names:
        if name not in COARSE_CODECS:
            raise EvaluationError(f"unknown codec {name!r}; choose from {', '.join(COARSE_CODECS)}")
        try:
            coder = codec.get_coarse_codec(name)
            coder.decode(coder.encode(probe), 16, 16)
        except Exception as error:  # missing tools surface as CodecUnavailableError (or the tool's failure)
            missing[name] = f"{type(error).__name__}: {error}"
            continue
        usable[name] = COARSE_CODECS[name]
    return usable, missing


def match_rate(codec_name: str, image: np.ndarray, target_bytes: int,
               encodes: dict[int, bytes] | None = None) -> dict[str, Any]:
    """Code the whole ``image`` at the quality whose size is the largest not above ``target_bytes``.

    The codec's quality scale is searched with :func:`codec.rate_search.search_rate` (bisection, sizes assumed
    monotonic in quality). When even the smallest setting is larger than the target, that setting is used and
    ``above_target`` is set. ``seconds`` is the decode time of the chosen stream (what a receiver pays).
    ``encodes`` ({quality index: stream}, filled in place) lets searches for several targets on the same image and
    codec share their encodes.
    """
    candidates = quality_candidates(COARSE_CODECS[codec_name])
    cache: dict[int, bytes] = {} if encodes is None else encodes
    before = len(cache)

    def stream_at(index: int) -> bytes:
        if index not in cache:
            cache[index] = codec.get_coarse_codec(codec_name, candidates[index]).encode(image)
        return cache[index]

    found = search_rate(stream_at, len(candidates), lambda size: size <= target_bytes)
    quality = candidates[found.index]
    start = time.perf_counter()
    decoded = codec.get_coarse_codec(codec_name, quality).decode(found.stream, image.shape[0], image.shape[1])
    seconds = time.perf_counter() - start
    return {"quality": quality, "bytes": len(found.stream), "decoded": np.asarray(decoded, np.uint8),
            "above_target": not found.fits, "encodes": len(cache) - before, "seconds": seconds}
