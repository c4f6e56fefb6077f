"""Image sizes as (height, width): the one normaliser for model configs, options, command lines and scripts.

A size may be given as one int (a square), a ``(height, width)`` pair, or text: ``"HxW"``, ``"H,W"`` or ``"N"``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

SizeLike = int | Sequence[int] | str


class SizeError(argparse.ArgumentTypeError, ValueError):
    """A size that is not one or two positive integers in range; argparse shows its message as it is."""


def as_hw(size: SizeLike, name: str = "size", *, minimum: int = 1, maximum: int | None = None) -> tuple[int, int]:
    """``size`` as ``(height, width)``, each side in ``minimum..maximum``; :class:`SizeError` (a ValueError)
    naming ``name`` otherwise."""
    given = size
    if isinstance(size, str):
        parts = [p for p in size.strip().lower().replace("x", ",").replace(" ", "").split(",")]
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        parts = [size]
    elif isinstance(size, Sequence) or isinstance(size, np.ndarray):
        parts = list(size)
    else:
        raise SizeError(f"{name} must be an int, (height, width) or 'HxW', got {type(size).__name__}")
    try:
        if any(isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()) for p in parts):
            raise ValueError
        sides = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise SizeError(f"{name} must be HEIGHTxWIDTH (or one int for a square), got {given!r}") from None
    if len(sides) == 1:
        sides = (sides[0], sides[0])
    if len(sides) != 2:
        raise SizeError(f"{name} must be HEIGHTxWIDTH (or one int for a square), got {given!r}")
    if min(sides) < minimum or (maximum is not None and max(sides) > maximum):
        allowed = f"at least {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise SizeError(f"{name} sides must be {allowed}, got {sides[0]}x{sides[1]}")
    return sides  # type: ignore[return-value]
