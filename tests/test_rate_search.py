"""codec.rate_search: the one search for the largest stream within a budget (transmitter and baselines)."""

from __future__ import annotations

import math
import random

import pytest

from spic_diffusers.codec.rate_search import quality_candidates, search_rate
from spic_diffusers.codec.coarse import COARSE_CODECS


def _search(sizes, budget, neighbours=0):
    coded = []

    def stream_at(index):
        coded.append(index)
        return b"x" * sizes[index]

    found = search_rate(stream_at, len(sizes), lambda size: size <= budget, neighbours)
    assert len(coded) == len(set(coded)) == found.encodes, "each candidate is coded at most once"
    assert found.stream == b"x" * sizes[found.index]
    return found


def test_on_growing_sizes_it_finds_the_largest_that_fits():
    rng = random.Random(0)
    for _ in range(300):
        sizes = sorted(rng.randint(1, 400) for _ in range(rng.randint(1, 40)))
        budget = rng.randint(0, 420)
        fitting = [i for i, size in enumerate(sizes) if size <= budget]
        for neighbours in (0, 2):
            found = _search(sizes, budget, neighbours)
            if fitting:
                assert found.fits and sizes[found.index] == max(sizes[i] for i in fitting)
            else:
                assert not found.fits and found.index == 0


def test_bisection_codes_few_candidates_and_neighbours_catch_a_non_monotone_step():
    sizes = list(range(100, 200))
    assert _search(sizes, 150).encodes <= 8
    bumpy = [10, 20, 45, 40, 50, 60]  # 45 overshoots a budget of 44, so bisection stops below it; 40 fits
    assert _search(bumpy, 44).index == 1
    assert _search(bumpy, 44, neighbours=2).index == 3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one candidate"):
        search_rate(lambda i: b"", 0, lambda size: True)
    with pytest.raises(ValueError, match="neighbours"):
        search_rate(lambda i: b"", 1, lambda size: True, neighbours=-1)


@pytest.mark.parametrize("name", sorted(COARSE_CODECS))
def test_quality_candidates_run_from_the_smallest_output_to_the_largest(name):
    codec = COARSE_CODECS[name]
    candidates = quality_candidates(codec)
    low, high = math.ceil(codec.quality_range[0]), math.floor(codec.quality_range[1])
    assert sorted(candidates) == list(range(low, high + 1))
    assert candidates[0] == (low if codec.higher_is_better else high)


def test_benchmark_frames_are_evenly_spread_with_both_ends():
    from spic_diffusers.evaluation.inputs import spread_indices

    picks = spread_indices(233, 24)  # bench_codecs' README table: 24 of CamVid's 233 test maps
    assert len(picks) == 24 and picks[0] == 0 and picks[-1] == 232 and picks == sorted(set(picks))
    assert spread_indices(5, 10) == [0, 1, 2, 3, 4] and spread_indices(0, 3) == [] and spread_indices(9, 1) == [0]
    with pytest.raises(ValueError):
        spread_indices(10, 0)
