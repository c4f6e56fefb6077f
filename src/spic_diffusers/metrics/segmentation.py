"""Semantic fidelity: confusion matrices, set-level mIoU and pixel accuracy over Cityscapes train ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import CITYSCAPES_NUM_CLASSES, IGNORE_INDEX, _to_numpy


def _label_map(array: Any, name: str) -> np.ndarray:
    out = _to_numpy(array)
    if out.ndim != 2:
        raise ValueError(f"{name} must be a 2-D label map (H, W), got shape {tuple(out.shape)}")
    if not np.issubdtype(out.dtype, np.integer):
        if np.issubdtype(out.dtype, np.floating) and np.all(np.mod(out, 1) == 0):
            out = out.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class ids, got dtype {out.dtype}")
    return out.astype(np.int64, copy=False)


@dataclass
class ConfusionMatrix:
    """Accumulates a class confusion matrix over a set of label maps (rows: target, columns: prediction).

    Pixels whose *target* is ``ignore_index`` are excluded. A prediction outside ``[0, num_classes)``
    counts as wrong for its target class (it adds to that class's union but to no class's intersection).
    """

    num_classes: int = CITYSCAPES_NUM_CLASSES
    ignore_index: int = IGNORE_INDEX
    matrix: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    # predictions outside the class range, per target class (not representable in the matrix)
    invalid_predictions: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if 0 <= self.ignore_index < self.num_classes:
            raise ValueError(f"ignore_index {self.ignore_index} collides with a class id (< {self.num_classes})")
        if self.matrix is None:
            self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        if self.invalid_predictions is None:
            self.invalid_predictions = np.zeros(self.num_classes, dtype=np.int64)

    @staticmethod
    def counts(
        prediction: Any, target: Any, num_classes: int = CITYSCAPES_NUM_CLASSES, ignore_index: int = IGNORE_INDEX
    ) -> tuple[np.ndarray, np.ndarray]:
        """Confusion matrix and out-of-range prediction counts of one pair of maps."""
        pred = _label_map(prediction, "prediction")
        tgt = _label_map(target, "target")
        if pred.shape != tgt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from target shape {tgt.shape}")
        keep = tgt != ignore_index
        bad_target = keep & ((tgt < 0) | (tgt >= num_classes))
        if bad_target.any():
            values = np.unique(tgt[bad_target])[:5].tolist()
            raise ValueError(f"target holds ids outside 0..{num_classes - 1} and ignore {ignore_index}: {values}")
        tgt = tgt[keep]
        pred = pred[keep]
        valid = (pred >= 0) & (pred < num_classes)
        matrix = np.bincount(
            tgt[valid] * num_classes + pred[valid], minlength=num_classes * num_classes
        ).reshape(num_classes, num_classes)
        invalid = np.bincount(tgt[~valid], minlength=num_classes)
        return matrix.astype(np.int64), invalid.astype(np.int64)

    def update(self, prediction: Any, target: Any) -> "ConfusionMatrix":
        matrix, invalid = self.counts(prediction, target, self.num_classes, self.ignore_index)
        self.matrix += matrix
        self.invalid_predictions += invalid
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError("cannot merge confusion matrices with different class settings")
        self.matrix += other.matrix
        self.invalid_predictions += other.invalid_predictions
        return self

    @property
    def intersection(self) -> np.ndarray:
        return np.diag(self.matrix).copy()

    @property
    def union(self) -> np.ndarray:
        target_total = self.matrix.sum(axis=1) + self.invalid_predictions
        prediction_total = self.matrix.sum(axis=0)
        return target_total + prediction_total - np.diag(self.matrix)

    @property
    def labelled(self) -> int:
        return int(self.matrix.sum() + self.invalid_predictions.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.matrix))

    def iou_per_class(self) -> np.ndarray:
        """IoU of each class; NaN where the class is absent from both prediction and target."""
        return _iou(self.intersection, self.union)

    def miou(self) -> float:
        return _mean_iou(self.intersection, self.union)

    def pixel_accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "matrix": self.matrix.tolist(),
            "invalid_predictions": self.invalid_predictions.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConfusionMatrix":
        out = cls(num_classes=int(data["num_classes"]), ignore_index=int(data["ignore_index"]))
        matrix = np.asarray(data["matrix"], dtype=np.int64)
        if matrix.shape != out.matrix.shape:
            raise ValueError(f"stored matrix has shape {matrix.shape}, expected {out.matrix.shape}")
        out.matrix = matrix
        out.invalid_predictions = np.asarray(data["invalid_predictions"], dtype=np.int64)
        return out


def _iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    intersection = np.asarray(intersection, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    out = np.full(union.shape, np.nan)
    present = union > 0
    out[present] = intersection[present] / union[present]
    return out


def _mean_iou(intersection: np.ndarray, union: np.ndarray) -> float:
    iou = _iou(intersection, union)
    if np.all(np.isnan(iou)):
        return float("nan")
    return float(np.nanmean(iou))


def miou(
    prediction: Any,
    target: Any,
    num_classes: int = CITYSCAPES_NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> float:
    """Mean IoU of one prediction against one target map.

    Classes absent from both maps do not enter the mean; pixels whose target is ``ignore_index`` are
    excluded. Returns NaN when no pixel is labelled. For a set, accumulate a :class:`ConfusionMatrix`.
    """
    return ConfusionMatrix(num_classes, ignore_index).update(prediction, target).miou()


def iou_per_class(
    prediction: Any,
    target: Any,
    num_classes: int = CITYSCAPES_NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """IoU of each class for one pair of maps (NaN where the class is in neither map)."""
    return ConfusionMatrix(num_classes, ignore_index).update(prediction, target).iou_per_class()


def pixel_accuracy(
    prediction: Any,
    target: Any,
    num_classes: int = CITYSCAPES_NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> float:
    """Fraction of labelled (non-ignore) target pixels whose predicted class matches."""
    return ConfusionMatrix(num_classes, ignore_index).update(prediction, target).pixel_accuracy()
