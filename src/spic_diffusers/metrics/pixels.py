"""Rate and pixel fidelity: bits per pixel, PSNR (whole image, near class edges), region colours, SSIM,
MS-SSIM and LPIPS."""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

import numpy as np
import torch

from ..labels import ID2LABEL
from .base import MetricUnavailable, _prepare_torch_fidelity_import, _to_float_batch, _to_numpy


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
