"""The one rate search: the largest stream that fits a budget, over a coarse codec's quality scale.

The transmitter's ``target_bpp`` (SPIC's stream) and the evaluation's baselines (a whole-image codec at the
size of SPIC's stream) both ask this question, so both use :func:`search_rate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def quality_candidates(codec_class: type) -> list[int]:
    """Integer qualities of a coarse codec (class or instance), ordered from the smallest output to the largest."""
    low, high = codec_class.quality_range
    values = list(range(int(math.ceil(low)), int(math.floor(high)) + 1))
    return values if codec_class.higher_is_better else values[::-1]


@dataclass(frozen=True)
class RateSearch:
    """What :func:`search_rate` found: the chosen candidate ``index``, its ``stream``, whether it ``fits`` the
    budget (False: nothing probed fits, and the smallest candidate is returned), and how many candidates were
    coded (``encodes``)."""

    index: int
    stream: bytes
    fits: bool
    encodes: int


def search_rate(stream_at: Callable[[int], bytes], count: int, fits: Callable[[int], bool],
                neighbours: int = 0) -> RateSearch:
    """The largest stream whose byte size ``fits``, over candidates ``0..count-1`` ordered from the smallest
    stream to the largest (``stream_at(index)`` codes one; each is coded at most once).

    Bisection, which assumes sizes grow with the index.  They do not always (a codec's rate is not strictly
    monotone in its quality), so ``neighbours > 0`` also codes that many candidates on each side of the
    bisection's answer and keeps the largest that fits.
    """
    if count < 1:
        raise ValueError(f"the rate search needs at least one candidate, got {count}")
    if neighbours < 0:
        raise ValueError(f"neighbours must be >= 0, got {neighbours}")
    streams: dict[int, bytes] = {}

    def at(index: int) -> bytes:
        if index not in streams:
            streams[index] = stream_at(index)
        return streams[index]

    lo, hi, best = 0, count - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(len(at(mid))):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best is None:  # every probe failed, down to the smallest candidate
        return RateSearch(index=0, stream=at(0), fits=False, encodes=len(streams))
    if neighbours:
        around = [i for i in range(max(0, best - neighbours), min(count, best + neighbours + 1)) if fits(len(at(i)))]
        best = max(around, key=lambda i: len(at(i)))
    return RateSearch(index=best, stream=at(best), fits=True, encodes=len(streams))
