"""Reading users' image and map files: sizes from headers first, one clear error per problem, no torch.

Shared by the command line and the demo; kept free of torch so that ``spic encode`` checks its inputs before
any heavy import.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

class InputFileError(ValueError):
    """A user's image or map file is missing, unreadable or of the wrong kind."""


def image_file_size(path, what: str = "image") -> tuple[int, int]:
    """(height, width) from an image file's header, without decoding its pixels."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"no such {what}: {path}")
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
    except PIL.Image.DecompressionBombError as err:
        raise InputFileError(f"{what} {path} is too large to read safely: {err}") from None
    except (OSError, PIL.UnidentifiedImageError, ValueError) as err:
        raise InputFileError(f"cannot read {what} {path}: {err}") from None
    return height, width


def open_image_file(path, what: str = "image", max_pixels: int | None = None) -> PIL.Image.Image:
    """Open and fully read an image file, with one clear error for a missing, unreadable or too large file.

    The size is read from the header and checked against ``max_pixels`` before any pixel is decoded.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"no such {what}: {path}")
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
            if max_pixels is not None and height * width > max_pixels:
                raise InputFileError(
                    f"{what} {path} is {height}x{width} ({height * width} pixels), above the budget of "
                    f"{max_pixels} pixels; raise it with --max_pixels if you mean to spend that"
                )
            image.load()
            return image.copy()
    except PIL.Image.DecompressionBombError as err:
        raise InputFileError(f"{what} {path} is too large to read safely: {err}") from None
    except (OSError, PIL.UnidentifiedImageError, ValueError) as err:
        if isinstance(err, InputFileError):
            raise
        raise InputFileError(f"cannot read {what} {path}: {err}") from None


LABEL_FORMATS = ("trainid", "labelid", "camvid")


def read_segmentation_file(path, label_ids: bool = False, label_format: str | None = None) -> np.ndarray:
    """A uint8 train-id map from a single-channel PNG.

    `label_format`: "trainid" (Cityscapes train ids, 255 = ignore), "labelid" (official Cityscapes label ids; also
    `label_ids=True`) or "camvid" (raw CamVid annotations 0..11, mapped by `labels.camvid_to_train_ids`).
    Unset, the map is read as train ids, and one that looks like a raw CamVid annotation is refused: read as
    train ids, CamVid's Sky would silently become road.
    """
    if label_ids:
        if label_format not in (None, "labelid"):
            raise InputFileError(f"label_ids=True contradicts label_format={label_format!r}")
        label_format = "labelid"
    if label_format is not None and label_format not in LABEL_FORMATS:
        raise InputFileError(f"label_format must be one of {LABEL_FORMATS}, got {label_format!r}")
    image = open_image_file(path, "segmentation map")
    if image.mode not in ("L", "P", "I", "I;16"):
        raise InputFileError(
            f"segmentation map {path} has mode {image.mode}; expected a single-channel train-id PNG (mode L)"
        )
    labels = np.asarray(image)
    if labels.min() < 0 or labels.max() > 255:
        raise InputFileError(f"segmentation map {path} has labels outside 0..255")
    labels = labels.astype(np.uint8)
    if label_format == "labelid":
        from .labels import label_ids_to_train_ids

        labels = label_ids_to_train_ids(labels)
    elif label_format == "camvid":
        from .labels import camvid_to_train_ids

        try:
            labels = camvid_to_train_ids(labels, name=f"segmentation map {path}")
        except ValueError as err:
            raise InputFileError(str(err)) from None
    elif label_format is None:
        from .labels import looks_like_camvid_annotation

        if looks_like_camvid_annotation(labels):
            raise InputFileError(
                f"segmentation map {path} looks like a raw CamVid annotation (values 0..11 only, and 0, road as a "
                "train id, fills the top of the frame where CamVid's 0 is Sky): pass --label_format camvid to map "
                "it to train ids, or --label_format trainid if it holds train ids"
            )
    return labels
