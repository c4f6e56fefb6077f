"""Baselines at SPIC's rate: the bicubic coarse image, and whole-image codecs matched to the stream size."""

from __future__ import annotations

import math
import time
from typing import Any, Iterable

import numpy as np

from .. import codec
from ..codec.coarse import COARSE_CODECS
from .settings import EvaluationError


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


def quality_candidates(codec_class: type) -> list[int]:
    """Integer qualities of a codec ordered from the smallest to the largest output."""
    low, high = codec_class.quality_range
    values = list(range(int(math.ceil(low)), int(math.floor(high)) + 1))
    return values if codec_class.higher_is_better else values[::-1]


def match_rate(codec_name: str, image: np.ndarray, target_bytes: int,
               encodes: dict[int, bytes] | None = None) -> dict[str, Any]:
    """Code the whole ``image`` at the quality whose size is the largest not above ``target_bytes``.

    Binary search over the codec's quality scale (sizes assumed monotonic in quality). When even the
    smallest setting is larger than the target, that setting is used and ``above_target`` is set. ``seconds`` is
    the decode time of the chosen stream (what a receiver pays). ``encodes`` ({quality index: stream}, filled in
    place) lets searches for several targets on the same image and codec share their encodes.
    """
    candidates = quality_candidates(COARSE_CODECS[codec_name])
    streams: dict[int, bytes] = {} if encodes is None else encodes
    searched = len(streams)

    def stream(i: int) -> bytes:
        if i not in streams:
            streams[i] = codec.get_coarse_codec(codec_name, candidates[i]).encode(image)
        return streams[i]

    lo, hi, best = 0, len(candidates) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(stream(mid)) <= target_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    above = best is None
    best = 0 if above else best
    data = stream(best)
    start = time.perf_counter()
    decoded = codec.get_coarse_codec(codec_name, candidates[best]).decode(data, image.shape[0], image.shape[1])
    seconds = time.perf_counter() - start
    return {"quality": candidates[best], "bytes": len(data), "decoded": np.asarray(decoded, np.uint8),
            "above_target": above, "encodes": len(streams) - searched, "seconds": seconds}

