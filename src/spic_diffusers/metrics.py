"""Evaluation metrics for SPIC: rate, semantic fidelity and perceptual quality.

The plain functions here (:func:`miou`, :func:`pixel_accuracy`, :func:`psnr`, :func:`bpp_from_bytes`,
:func:`fid_from_features`, :func:`kid_from_features`) have no model dependencies so they can be tested
against hand-computed values. Set-level mIoU follows the paper: per-class intersections and unions are
summed over the whole set (:class:`ConfusionMatrix`) before the IoU of each class is taken, and classes
whose union is empty over the whole set do not enter the mean.

The learned metrics (FID/KID with torch-fidelity's Inception network through torchmetrics, LPIPS) need
pretrained weights that no package ships; when they cannot be loaded offline the wrappers raise
:class:`MetricUnavailable` with the reason, which the evaluation reports as "skipped".
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .labels import ID2LABEL


CITYSCAPES_NUM_CLASSES = 19
IGNORE_INDEX = 255

# torch-fidelity's Inception weights (the PyTorch port of TF's 2015-12-05 graph used by the reference FID).
INCEPTION_WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FEATURE_DIMS = (64, 192, 768, 2048)


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing package or weights); the message says why."""


# ----------------------------------------------------------------------------------------------------------
# Array helpers
# ----------------------------------------------------------------------------------------------------------


def _to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    try:  # PIL images and array-likes
        return np.asarray(array)
    except Exception as error:  # pragma: no cover - defensive
        raise ValueError(f"cannot convert {type(array).__name__} to an array") from error


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


# ----------------------------------------------------------------------------------------------------------
# Segmentation metrics
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Rate
# ----------------------------------------------------------------------------------------------------------


def bpp_from_bytes(data: bytes | bytearray | int | str | os.PathLike, height: int, width: int) -> float:
    """Bits per pixel of a bitstream given as bytes, a byte count, or a file path (its size on disk)."""
    if isinstance(height, bool) or isinstance(width, bool) or int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if isinstance(data, (bytes, bytearray, memoryview)):
        num_bytes = len(data)
    elif isinstance(data, (int, np.integer)) and not isinstance(data, bool):
        num_bytes = int(data)
        if num_bytes < 0:
            raise ValueError(f"byte count must be >= 0, got {num_bytes}")
    elif isinstance(data, (str, os.PathLike)):
        if not os.path.isfile(data):
            raise ValueError(f"bitstream file not found: {data}")
        num_bytes = os.path.getsize(data)
    else:
        raise ValueError(f"expected bytes, a byte count or a file path, got {type(data).__name__}")
    return 8.0 * num_bytes / (int(height) * int(width))


# ----------------------------------------------------------------------------------------------------------
# Distortion
# ----------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------
# Pixel fidelity where the map says it matters: near class edges, and per class region
# ----------------------------------------------------------------------------------------------------------


def boundary_mask(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` px of a change of class in the map."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    grown = edge.copy()
    for _ in range(max(0, width - 1)):
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def masked_psnr(truth: np.ndarray, candidate: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, uint8 range) over the pixels where ``mask`` is true; NaN on an empty mask."""
    if not mask.any():
        return float("nan")
    diff = truth[mask].astype(np.float64) - candidate[mask].astype(np.float64)
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def region_colour_errors(truth: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per class of the map: |mean colour in candidate - mean colour in truth| (RGB distance, 0-255 scale)."""
    errors = {}
    for class_id in np.unique(labels):
        if class_id == 255:
            continue
        mask = labels == class_id
        delta = truth[mask].astype(np.float64).mean(0) - candidate[mask].astype(np.float64).mean(0)
        errors[ID2LABEL.get(int(class_id), str(int(class_id)))] = float(np.linalg.norm(delta))
    return errors


def _image_pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x = _to_numpy(a)
    y = _to_numpy(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    if x.size == 0:
        raise ValueError("images are empty")
    return x, y


def psnr(a: Any, b: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images).

    ``data_range`` defaults to 255 for uint8 input and 1.0 for floating-point input (images in [0, 1]);
    mixing uint8 and float input needs an explicit ``data_range``.
    """
    x, y = _image_pair(a, b)
    if data_range is None:
        kinds = {x.dtype == np.uint8, y.dtype == np.uint8}
        if kinds == {True}:
            data_range = 255.0
        elif kinds == {False}:
            if not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
                raise ValueError(
                    f"pass data_range for images of dtype {x.dtype}/{y.dtype} (defaults exist for uint8 and float)"
                )
            data_range = 1.0
        else:
            raise ValueError(f"mixed dtypes {x.dtype} and {y.dtype}: pass data_range explicitly")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def _to_float_batch(images: Any) -> torch.Tensor:
    """uint8 HxWx3 / NxHxWx3 arrays, PIL images or float [N,3,H,W] tensors in [0, 1] -> float [N,3,H,W]."""
    if isinstance(images, torch.Tensor) and images.dtype != torch.uint8:
        out = images.detach().float().cpu()
        if out.ndim == 3:
            out = out[None]
        if out.ndim != 4 or out.shape[1] != 3:
            raise ValueError(f"expected float images of shape [N,3,H,W], got {tuple(images.shape)}")
        return out
    if isinstance(images, (list, tuple)):
        arrays = [_to_numpy(im) for im in images]
    else:
        array = _to_numpy(images)
        arrays = [array] if array.ndim == 3 else list(array)
    for array in arrays:
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"expected HxWx3 images, got shape {array.shape}")
        if array.dtype != np.uint8:
            raise ValueError(f"expected uint8 HxWx3 images, got dtype {array.dtype}")
    if len({a.shape for a in arrays}) != 1:
        raise ValueError("all images in a batch must share one size")
    stacked = np.stack(arrays).astype(np.float32) / 255.0
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def to_uint8_batch(images: Any) -> torch.Tensor:
    """Images (as accepted by :func:`ssim`) -> uint8 tensor [N,3,H,W], the input the Inception wrapper takes."""
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape [N,3,H,W], got {tuple(images.shape)}")
        return images
    return (_to_float_batch(images).clamp(0, 1) * 255).round().to(torch.uint8)


MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_min_size(kernel_size: int = 11, scales: int = len(MS_SSIM_BETAS)) -> int:
    """Smallest side the standard 5-scale MS-SSIM accepts: the window must fit the coarsest scale."""
    return kernel_size * 2 ** (scales - 1)


def ms_ssim(a: Any, b: Any) -> float:
    """Standard 5-scale MS-SSIM (torchmetrics) averaged over the batch; images uint8 or float in [0, 1].

    Raises :class:`MetricUnavailable` when the images are too small for five scales (each side at least
    176 px): a result with fewer scales would not be comparable with published figures.
    """
    x = _to_float_batch(a)
    y = _to_float_batch(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    limit = ms_ssim_min_size()
    if min(x.shape[-2:]) < limit:
        raise MetricUnavailable(
            f"MS-SSIM needs images of at least {limit} px per side for 5 scales, got {tuple(x.shape[-2:])}"
        )
    _prepare_torch_fidelity_import()
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    value = multiscale_structural_similarity_index_measure(x, y, data_range=1.0, betas=MS_SSIM_BETAS)
    return float(value)


def ssim(a: Any, b: Any) -> float:
    """Single-scale SSIM (torchmetrics, 11x11 Gaussian window); images uint8 or float in [0, 1]."""
    x = _to_float_batch(a)
    y = _to_float_batch(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < 11:
        raise MetricUnavailable(f"SSIM needs images of at least 11 px per side, got {tuple(x.shape[-2:])}")
    _prepare_torch_fidelity_import()
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(x, y, data_range=1.0))


class LPIPS:
    """LPIPS distance via torchmetrics; construction raises :class:`MetricUnavailable` when the backbone
    (torchvision with cached ImageNet weights) is not available."""

    def __init__(self, net_type: str = "alex") -> None:
        if importlib.util.find_spec("torchvision") is None:
            raise MetricUnavailable("LPIPS needs torchvision's pretrained backbones; torchvision is not installed")
        _prepare_torch_fidelity_import()
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True)
        except Exception as error:  # missing weights offline surface as download errors
            raise MetricUnavailable(f"LPIPS backbone '{net_type}' could not be loaded: {error}") from error
        self.metric.eval()

    def __call__(self, a: Any, b: Any) -> float:
        x = _to_float_batch(a)
        y = _to_float_batch(b)
        with torch.no_grad():
            return float(self.metric(x, y))


# ----------------------------------------------------------------------------------------------------------
# FID / KID from features
# ----------------------------------------------------------------------------------------------------------


def _features(array: Any, name: str) -> np.ndarray:
    out = _to_numpy(array).astype(np.float64)
    if out.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (num_samples, num_features), got shape {out.shape}")
    if out.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {out.shape[0]}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} holds non-finite values")
    return out


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between two Gaussians: |mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    The trace of the matrix square root is the sum of the square roots of the eigenvalues of S1 S2
    (real and non-negative for covariance matrices up to round-off, which is clipped).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError("means and covariances have inconsistent shapes")
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def fid_from_features(real_features: Any, fake_features: Any) -> float:
    """FID between two sets of precomputed features (rows are samples), unbiased covariances."""
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    return frechet_distance(
        real.mean(0), np.cov(real, rowvar=False, ddof=1).reshape(real.shape[1], -1),
        fake.mean(0), np.cov(fake, rowvar=False, ddof=1).reshape(fake.shape[1], -1),
    )


def kid_from_features(
    real_features: Any,
    fake_features: Any,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2 with the kernel (gamma <x, y> + coef)^degree,
    gamma defaulting to 1 / num_features. ``subset_size`` is capped at the smaller set size."""
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError("num_subsets must be >= 1 and subset_size >= 2")
    m = min(subset_size, real.shape[0], fake.shape[0])
    gamma = 1.0 / real.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = real[rng.choice(real.shape[0], m, replace=False)]
        y = fake[rng.choice(fake.shape[0], m, replace=False)]
        k_xx = (gamma * x @ x.T + coef) ** degree
        k_yy = (gamma * y @ y.T + coef) ** degree
        k_xy = (gamma * x @ y.T + coef) ** degree
        off_diag = m * (m - 1)
        values.append(
            (k_xx.sum() - np.trace(k_xx)) / off_diag
            + (k_yy.sum() - np.trace(k_yy)) / off_diag
            - 2.0 * k_xy.mean()
        )
    values = np.asarray(values)
    return float(values.mean()), float(values.std())


# ----------------------------------------------------------------------------------------------------------
# Feature extractors (Inception via torch-fidelity + torchmetrics, or any callable)
# ----------------------------------------------------------------------------------------------------------


def _prepare_torch_fidelity_import() -> None:
    """Make ``torch_fidelity.<submodule>`` importable without running the package ``__init__``.

    torch-fidelity's ``__init__`` imports its CLIP/VGG/LPIPS modules, which import torchvision; the
    Inception extractor itself is pure torch. Where torchvision is missing, register the package as a
    bare module so that torchmetrics' ``from torch_fidelity.feature_extractor_inceptionv3 import ...``
    (and ours) only loads the pure-torch files.
    """
    if "torch_fidelity" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["torch_fidelity"] = package


# Register early, so that torchmetrics stays importable in this process even where torchvision is missing.
_prepare_torch_fidelity_import()


def inception_weights_cache_path() -> str:
    """Where ``torch.hub`` caches torch-fidelity's Inception weights (used when no path is given)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", INCEPTION_WEIGHTS_FILENAME)


def load_inception(weights_path: str | os.PathLike | None = None, feature_dim: int = 2048) -> torch.nn.Module:
    """torchmetrics' wrapper of torch-fidelity's Inception-v3 (uint8 [N,3,H,W] in, [N, feature_dim] out).

    Never downloads: the weights come from ``weights_path`` or the torch hub cache
    (:func:`inception_weights_cache_path`), else :class:`MetricUnavailable` is raised.
    """
    if feature_dim not in INCEPTION_FEATURE_DIMS:
        raise ValueError(f"feature_dim must be one of {INCEPTION_FEATURE_DIMS}, got {feature_dim}")
    if importlib.util.find_spec("torch_fidelity") is None:
        raise MetricUnavailable(
            "torch-fidelity is not installed (install with `pip install --no-deps torch-fidelity`)"
        )
    path = os.fspath(weights_path) if weights_path is not None else inception_weights_cache_path()
    if not os.path.isfile(path):
        raise MetricUnavailable(
            f"Inception weights not found at {path} (pass --inception_weights or place "
            f"{INCEPTION_WEIGHTS_FILENAME} in the torch hub cache)"
        )
    _prepare_torch_fidelity_import()
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        model = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[str(feature_dim)], feature_extractor_weights_path=path
        )
    except Exception as error:
        raise MetricUnavailable(f"Inception weights at {path} could not be loaded: {error}") from error
    model.num_features = feature_dim
    return model.eval()


class _CallableExtractor(torch.nn.Module):
    """Wraps a plain callable (uint8 [N,3,H,W] -> [N,D]) as a module for torchmetrics."""

    def __init__(self, fn: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.fn(images)
        out = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
        if out.ndim != 2:
            raise ValueError(f"feature extractor must return [N, D] features, got shape {tuple(out.shape)}")
        return out.float()


class FeatureSet:
    """Accumulates feature rows of real and generated images for FID and KID.

    ``extractor`` takes uint8 images [N,3,H,W] and returns features [N,D] (e.g. :func:`load_inception`).
    Feature extraction is batched by the caller; the statistics come from torchmetrics' FID and KID.
    """

    def __init__(self, extractor: Callable[[torch.Tensor], Any]) -> None:
        self.extractor = extractor if isinstance(extractor, torch.nn.Module) else _CallableExtractor(extractor)
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    @torch.no_grad()
    def extract(self, images: Any) -> np.ndarray:
        batch = to_uint8_batch(images)
        out = self.extractor(batch)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
        out = out.reshape(out.shape[0], -1)
        return out.double().cpu().numpy()

    def add(self, images: Any, real: bool) -> None:
        (self.real if real else self.fake).append(self.extract(images))

    def features(self, real: bool) -> np.ndarray:
        rows = self.real if real else self.fake
        if not rows:
            raise ValueError(f"no {'real' if real else 'generated'} images were added")
        return np.concatenate(rows)

    def fid(self) -> float:
        return fid_from_features(self.features(True), self.features(False))

    def kid(self, subset_size: int = 1000, num_subsets: int = 100) -> tuple[float, float]:
        return kid_from_features(self.features(True), self.features(False), num_subsets, subset_size)


def fid_kid_torchmetrics(
    real_images: Any,
    fake_images: Any,
    extractor: Callable[[torch.Tensor], Any],
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
) -> dict[str, float]:
    """FID and KID computed by torchmetrics' own metric classes around ``extractor``.

    ``real_images`` / ``fake_images``: uint8 [N,3,H,W] tensors or lists of uint8 HxWx3 arrays.
    """
    _prepare_torch_fidelity_import()
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    module = extractor if isinstance(extractor, torch.nn.Module) else _CallableExtractor(extractor)
    real = to_uint8_batch(real_images)
    fake = to_uint8_batch(fake_images)
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError("FID/KID need at least 2 real and 2 generated images")
    fid_metric = FrechetInceptionDistance(feature=module, normalize=False, reset_real_features=True)
    subset = min(kid_subset_size, real.shape[0], fake.shape[0])
    kid_metric = KernelInceptionDistance(feature=module, subsets=kid_subsets, subset_size=subset, normalize=False)
    with torch.no_grad():
        for metric in (fid_metric, kid_metric):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        kid_mean, kid_std = kid_metric.compute()
        return {"fid": float(fid_metric.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}
