"""Opening the files of a dataset tree: regular files only, and a pixel budget read from headers before decoding.

A dataset tree is an input like any other: a 164 KB PNG may declare 13000x13000 (2.4 GB to decode), and a
FIFO named ``x.png`` blocks a reader forever.  Every image and map the converters open goes through
:func:`read_regular_file` and :func:`open_dataset_image`.
"""

from __future__ import annotations

import io
import os
import stat
import warnings

from PIL import Image

# Far above any frame the converters are meant for (Cityscapes is 2048x1024, CamVid 960x720) and far below
# what a decompression bomb asks: an RGB image of this size decodes to 48 MB.
DATASET_MAX_PIXELS = 1 << 24


class DatasetFileError(ValueError):
    """A file of a dataset tree that cannot be opened safely."""


def is_regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` (after symbolic links) is a regular file: not a FIFO, device, socket or folder."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def read_regular_file(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file; a FIFO or device is refused without blocking (``O_NONBLOCK``, then ``fstat``)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise DatasetFileError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DatasetFileError(f"{path} is not a regular file (a FIFO, device or socket); refusing to read it")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as err:
        raise DatasetFileError(f"cannot read {path}: {err.strerror or err}") from None
    finally:
        os.close(fd)


def open_dataset_image(
    source: str | os.PathLike | bytes, name: str | None = None, max_pixels: int = DATASET_MAX_PIXELS,
    decode: bool = True,
) -> Image.Image:
    """An image from a regular file (or its bytes), its size checked against ``max_pixels`` before decoding."""
    name = str(name or source)
    data = source if isinstance(source, bytes) else read_regular_file(source)
    try:
        with warnings.catch_warnings():  # the budget below is the check; Pillow's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise DatasetFileError(
                f"{name} is {width}x{height} ({width * height} pixels), above the converter's budget of "
                f"{max_pixels} pixels"
            )
        if decode:
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        if isinstance(err, DatasetFileError):
            raise
        raise DatasetFileError(f"cannot read {name}: {err}") from None
    return image
