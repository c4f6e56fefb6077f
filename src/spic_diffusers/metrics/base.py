"""What every metric module shares: constants, the "unavailable here" error and image/array conversions."""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import numpy as np
import torch

CITYSCAPES_NUM_CLASSES = 19
IGNORE_INDEX = 255

# torch-fidelity's Inception weights (the PyTorch port of TF's 2015-12-05 graph used by the reference FID).
INCEPTION_WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FEATURE_DIMS = (64, 192, 768, 2048)


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing package or weights); the message says why."""


def _to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    try:  # PIL images and array-likes
        return np.asarray(array)
    except Exception as error:  # pragma: no cover - defensive
        raise ValueError(f"cannot convert {type(array).__name__} to an array") from error


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
