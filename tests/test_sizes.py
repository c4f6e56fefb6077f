"""sizes.as_hw: the one (height, width) normaliser for configs, options and command lines."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from spic_diffusers.sizes import SizeError, as_hw


@pytest.mark.parametrize("given", [(256, 512), [256, 512], np.array([256, 512]), "256x512", "256X512", "256,512",
                                   " 256, 512 ", (256.0, 512.0)])
def test_every_spelling_of_a_size_gives_height_and_width(given):
    assert as_hw(given) == (256, 512)


def test_one_number_is_a_square():
    assert as_hw(64) == as_hw("64") == as_hw([64]) == as_hw(np.int64(64)) == (64, 64)


@pytest.mark.parametrize("given", ["", "x", "256x", "1x2x3", "axb", (1, 2, 3), (2.5, 4), True, None, 3.0, "0x8"])
def test_bad_sizes_are_refused_with_a_clear_error_argparse_and_callers_both_catch(given):
    with pytest.raises(SizeError, match="resolution") as info:
        as_hw(given, "resolution")
    assert isinstance(info.value, ValueError) and isinstance(info.value, argparse.ArgumentTypeError)


def test_bounds_are_checked():
    assert as_hw("32x4096", minimum=32, maximum=4096) == (32, 4096)
    with pytest.raises(SizeError, match="32..4096"):
        as_hw("16x64", minimum=32, maximum=4096)
    with pytest.raises(SizeError, match="32..4096"):
        as_hw("64x8192", minimum=32, maximum=4096)


def test_an_argparse_option_shows_the_message():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=lambda text: as_hw(text, "--size"))
    assert parser.parse_args(["--size", "8x16"]).size == (8, 16)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "8by16"])
