"""Distribution-level quality: FID and KID from features, and the Inception feature extractor behind them."""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable

import numpy as np
import torch

from .base import INCEPTION_FEATURE_DIMS, INCEPTION_WEIGHTS_FILENAME, MetricUnavailable, _prepare_torch_fidelity_import
from .base import _to_numpy, to_uint8_batch


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
