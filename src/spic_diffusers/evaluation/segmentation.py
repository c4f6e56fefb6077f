"""How well a segmenter labels a dataset split: set-level IoU per class, at the frames' own size or another.

The mIoU SPIC reports is only as telling as the network that measures it, so the shipped segmenter's own
accuracy on the originals is measured the same way (one confusion matrix over the whole split, mIoU over the
classes the segmenter knows) by `scripts/evaluate_segmenter.py` and by the packaging of the shipped model.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def segmenter_scores(segmenter, rows: Iterable[dict], size: tuple[int, int] | None = None,
                     classes: Sequence[int] | None = None) -> dict[str, Any]:
    """Set-level mIoU, pixel accuracy and per-class IoU of ``segmenter`` over ``rows``.

    ``size`` (height, width) resizes each frame (area) and its map (nearest) first, e.g. to the 96x128 of a
    small receiver; ``None`` keeps the frames' own size. ``classes`` defaults to ``segmenter.known_classes``:
    a model cannot be scored on classes it was never taught.
    """
    from ..image_processing import resize_image, resize_map
    from ..labels import ID2LABEL
    from ..metrics import ConfusionMatrix

    from .inputs import example_arrays

    confusion = ConfusionMatrix()
    seconds, frames, shape = 0.0, 0, None
    for index, row in enumerate(rows):
        _, image, labels = example_arrays(row, index)
        if size is not None:
            image, labels = resize_image(image, size), resize_map(labels, size)
        started = time.perf_counter()
        prediction = segmenter(image)
        seconds += time.perf_counter() - started
        confusion.update(prediction, labels)
        frames, shape = frames + 1, image.shape[:2]
    if not frames:
        raise ValueError("no frames to score the segmenter on")
    classes = list(segmenter.known_classes if classes is None else classes)
    ious = confusion.iou_per_class()
    return {
        "miou": float(np.nanmean([ious[c] for c in classes])),
        "pixel_accuracy": float(confusion.pixel_accuracy()),
        "iou": {ID2LABEL[c]: (None if not np.isfinite(ious[c]) else round(float(ious[c]), 4)) for c in classes},
        "frames": frames,
        "size": f"{shape[0]}x{shape[1]}" if size is None else f"{size[0]}x{size[1]}",
        "seconds_per_frame": seconds / frames,
    }


def scores_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of :func:`segmenter_scores` results keyed by a row name (e.g. the input size)."""
    classes = list(next(iter(results.values()))["iou"])
    head = (f"| input | frames | mIoU | pixel acc. | {' | '.join(classes)} |\n"
            f"|---|---:|---:|---:|{'---:|' * len(classes)}")
    rows = [
        f"| {name} | {r['frames']} | {r['miou']:.3f} | {r['pixel_accuracy']:.3f} | "
        + " | ".join("-" if v is None else f"{v:.2f}" for v in r["iou"].values()) + " |"
        for name, r in results.items()
    ]
    return "\n".join([head, *rows])
