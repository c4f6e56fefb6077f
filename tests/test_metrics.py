"""Metric math against hand-computed values and against torchmetrics' own implementations."""

import math
import os

import numpy as np
import pytest
import torch

from spic_diffusers import metrics
from spic_diffusers.metrics import (
    ConfusionMatrix,
    FeatureSet,
    MetricUnavailable,
    bpp_from_bytes,
    fid_from_features,
    fid_kid_torchmetrics,
    frechet_distance,
    iou_per_class,
    kid_from_features,
    miou,
    pixel_accuracy,
    psnr,
)


# ---------------------------------------------------------------------------------------------- mIoU


PRED = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.uint8)
TARGET = np.array([[0, 1, 1], [1, 2, 255]], dtype=np.uint8)


def test_miou_hand_computed_with_ignore_and_absent_classes():
    # labelled pairs (target, pred): (0,0) (1,0) (1,1) (1,1) (2,2); the ignore pixel predicts 2.
    # class 0: I=1 U=2; class 1: I=2 U=3; class 2: I=1 U=1 (would be 1/2 if ignore counted);
    # classes 3..18 are in neither map and must not enter the mean.
    expected = (1 / 2 + 2 / 3 + 1) / 3
    assert miou(PRED, TARGET) == pytest.approx(expected)
    per_class = iou_per_class(PRED, TARGET)
    assert per_class[:3] == pytest.approx([0.5, 2 / 3, 1.0])
    assert np.isnan(per_class[3:]).all()
    assert pixel_accuracy(PRED, TARGET) == pytest.approx(4 / 5)


def test_miou_accepts_tensors_and_counts_class_only_in_prediction():
    target = torch.tensor([[0, 0], [0, 0]])
    pred = torch.tensor([[0, 0], [0, 5]])
    # class 0: I=3 U=4; class 5 appears only in the prediction: I=0 U=1 -> counted as 0
    assert miou(pred, target) == pytest.approx((0.75 + 0.0) / 2)


def test_out_of_range_prediction_counts_as_wrong():
    target = np.array([[0, 0]])
    pred = np.array([[0, 255]])
    assert miou(pred, target) == pytest.approx(0.5)
    assert pixel_accuracy(pred, target) == pytest.approx(0.5)


def test_set_level_accumulation_sums_intersections_and_unions():
    acc = ConfusionMatrix()
    acc.update(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))  # per-image mIoU 1.0
    acc.update(np.array([[1, 1]]), np.array([[0, 1]]))  # per-image mIoU (0 + 1/2) / 2 = 0.25
    # set: class 0 I=4 U=5, class 1 I=1 U=2 -> (0.8 + 0.5) / 2, not the mean of per-image values 0.625
    assert acc.miou() == pytest.approx(0.65)
    assert acc.intersection[:2].tolist() == [4, 1]
    assert acc.union[:2].tolist() == [5, 2]
    assert acc.pixel_accuracy() == pytest.approx(5 / 6)
    restored = ConfusionMatrix.from_dict(acc.to_dict())
    assert restored.miou() == acc.miou()
    merged = ConfusionMatrix().merge(restored).merge(ConfusionMatrix())
    assert merged.miou() == pytest.approx(0.65)


def test_all_ignore_gives_nan_and_bad_input_raises():
    assert math.isnan(miou(np.zeros((2, 2)), np.full((2, 2), 255)))
    with pytest.raises(ValueError, match="shape"):
        miou(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        miou(np.zeros((1, 2)), np.array([[0, 40]]))
    with pytest.raises(ValueError, match="2-D"):
        miou(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="integer"):
        miou(np.full((2, 2), 0.5), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(num_classes=19, ignore_index=3)


# ---------------------------------------------------------------------------------------------- BPP


def test_bpp_from_bytes_bytes_count_and_file(tmp_path):
    assert bpp_from_bytes(b"\x00" * 100, 10, 20) == pytest.approx(4.0)
    assert bpp_from_bytes(100, 10, 20) == pytest.approx(4.0)
    path = tmp_path / "stream.bin"
    path.write_bytes(b"\x01" * 37)
    assert bpp_from_bytes(path, 4, 8) == pytest.approx(37 * 8 / 32)
    assert bpp_from_bytes(str(path), 4, 8) == pytest.approx(37 * 8 / 32)
    with pytest.raises(ValueError, match="positive"):
        bpp_from_bytes(b"x", 0, 8)
    with pytest.raises(ValueError, match="not found"):
        bpp_from_bytes(tmp_path / "missing.bin", 4, 8)
    with pytest.raises(ValueError, match=">= 0"):
        bpp_from_bytes(-1, 4, 8)


# ---------------------------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_uint8_and_float():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a.astype(np.float32), np.full((4, 4, 3), 0.1, np.float32)) == pytest.approx(20.0, abs=1e-4)
    assert psnr(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)) == pytest.approx(10 * math.log10(4))
    assert psnr(a, a) == math.inf
    assert psnr(a, b.astype(np.float64), data_range=255) == pytest.approx(psnr(a, b))
    with pytest.raises(ValueError, match="mixed dtypes"):
        psnr(a, b.astype(np.float32))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, b[:2])


def test_ssim_and_ms_ssim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    noisy = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < metrics.ssim(a, noisy) < 0.99
    assert metrics.ssim(a, 255 - a) < 0.0
    with pytest.raises(MetricUnavailable, match="176"):
        metrics.ms_ssim(a, noisy)
    big = rng.integers(0, 256, (176, 180, 3), dtype=np.uint8)
    assert metrics.ms_ssim(big, big) == pytest.approx(1.0, abs=1e-4)
    assert metrics.ms_ssim(big, 255 - big) < 0.9


def test_lpips_reports_unavailable_or_works():
    try:
        lpips = metrics.LPIPS()
    except MetricUnavailable as error:
        assert "LPIPS" in str(error)
        pytest.skip(f"LPIPS unavailable here: {error}")
    a = np.zeros((64, 64, 3), np.uint8)
    assert lpips(a, a) == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------- FID / KID


def test_frechet_distance_closed_form_diagonal():
    value = frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0]))
    # |mu|^2 = 5; tr = 1 + 4 + 4 + 9 = 18; 2 tr sqrt = 2 (2 + 6) = 16
    assert value == pytest.approx(7.0)


def test_fid_from_features_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    shifted = x + np.array([3.0, 0, 0, 0])
    assert fid_from_features(x, shifted) == pytest.approx(9.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(x[:1], x)
    with pytest.raises(ValueError, match="feature sizes"):
        fid_from_features(x, x[:, :3])


class TinyExtractor(torch.nn.Module):
    """A fixed random projection of 4x4-pooled images: a stand-in for Inception in the math tests."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(3 * 16, dim, generator=generator))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255.0, 4)
        return pooled.flatten(1) @ self.weight


def _images(seed: int, n: int, offset: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 200, (n, 3, 16, 16), generator=generator) + offset).clamp(0, 255).to(torch.uint8)


def test_feature_set_matches_torchmetrics_fid_and_kid():
    real, fake = _images(0, 24), _images(1, 24, offset=40)
    extractor = TinyExtractor()
    features = FeatureSet(extractor)
    features.add(real[:10], real=True)
    features.add(real[10:], real=True)
    features.add(fake, real=False)
    ours_fid = features.fid()
    ours_kid, _ = features.kid(subset_size=24, num_subsets=1)  # full sets: no subsampling randomness
    reference = fid_kid_torchmetrics(real, fake, extractor, kid_subset_size=24, kid_subsets=1)
    assert ours_fid > 0.01
    assert ours_fid == pytest.approx(reference["fid"], rel=1e-4)
    assert ours_kid == pytest.approx(reference["kid_mean"], rel=1e-4, abs=1e-7)
    # a plain callable works too, and the same images give (close to) zero
    same = FeatureSet(lambda batch: extractor(batch))
    same.add(real, real=True)
    same.add(real, real=False)
    assert same.fid() == pytest.approx(0.0, abs=1e-8)


def test_kid_properties():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    y = rng.normal(loc=2.0, size=(50, 8))
    far, _ = kid_from_features(x, y, num_subsets=10, subset_size=20)
    near, _ = kid_from_features(x, rng.normal(size=(50, 8)), num_subsets=10, subset_size=20)
    assert far > 10 * abs(near)
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(x, y, subset_size=1)


def test_inception_unavailable_without_weights(tmp_path):
    with pytest.raises(MetricUnavailable, match="Inception weights not found|torch-fidelity is not installed"):
        metrics.load_inception(tmp_path / "no-such-weights.pth")
    with pytest.raises(ValueError, match="feature_dim"):
        metrics.load_inception(feature_dim=100)


def _random_inception_weights(path) -> None:
    """Save randomly initialised weights of torch-fidelity's Inception (its constructor always loads some)."""
    metrics._prepare_torch_fidelity_import()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    empty = path.parent / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(0)
    torch.save(_Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty)).state_dict(), path)


def test_inception_path_with_random_weights(tmp_path):
    pytest.importorskip("torch_fidelity", reason="torch-fidelity is not installed")
    path = tmp_path / metrics.INCEPTION_WEIGHTS_FILENAME
    _random_inception_weights(path)
    model = metrics.load_inception(path, feature_dim=64)
    features = FeatureSet(model)
    features.add(_images(0, 3), real=True)
    features.add(_images(1, 3), real=False)
    assert features.features(True).shape == (3, 64)
    assert np.isfinite(features.fid())
    import sys

    assert "torchvision" not in sys.modules


@pytest.mark.skipif(
    not os.path.isfile(metrics.inception_weights_cache_path()),
    reason=f"pretrained Inception weights not cached at {metrics.inception_weights_cache_path()} (offline)",
)
def test_real_inception_weights():
    model = metrics.load_inception()
    features = FeatureSet(model)
    features.add(_images(0, 2), real=True)
    assert features.features(True).shape == (2, 2048)
