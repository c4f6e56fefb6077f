"""Evaluation metrics for SPIC: rate, semantic fidelity and perceptual quality.

The plain functions here (:func:`miou`, :func:`pixel_accuracy`, :func:`psnr`, :func:`bpp_from_bytes`,
:func:`fid_from_features`, :func:`kid_from_features`) have no model dependencies so they can be tested
against hand-computed values. Set-level mIoU follows the paper: per-class intersections and unions are
summed over the whole set (:class:`ConfusionMatrix`) before the IoU of each class is taken, and classes
whose union is empty over the whole set do not enter the mean.

The learned metrics (FID/KID with torch-fidelity's Inception network through torchmetrics, LPIPS) need
pretrained weights that no package ships; when they cannot be loaded offline the wrappers raise
:class:`MetricUnavailable` with the reason, which the evaluation reports as "skipped".

Modules: :mod:`.segmentation` (confusion matrices, mIoU), :mod:`.pixels` (rate, PSNR, boundary PSNR, region
colours, SSIM, MS-SSIM, LPIPS), :mod:`.fid` (FID/KID and the Inception extractor), :mod:`.base` (shared parts).
"""

from .base import (
    CITYSCAPES_NUM_CLASSES,
    IGNORE_INDEX,
    INCEPTION_FEATURE_DIMS,
    INCEPTION_WEIGHTS_FILENAME,
    MetricUnavailable,
    _prepare_torch_fidelity_import as _prepare_torch_fidelity_import,  # private, for the tests
    to_uint8_batch,
)
from .fid import (
    FeatureSet,
    fid_from_features,
    fid_kid_torchmetrics,
    frechet_distance,
    inception_weights_cache_path,
    kid_from_features,
    load_inception,
)
from .pixels import (
    LPIPS,
    MS_SSIM_BETAS,
    boundary_mask,
    bpp_from_bytes,
    masked_psnr,
    ms_ssim,
    ms_ssim_min_size,
    psnr,
    region_colour_errors,
    ssim,
)
from .segmentation import ConfusionMatrix, iou_per_class, miou, pixel_accuracy

__all__ = [
    "CITYSCAPES_NUM_CLASSES",
    "ConfusionMatrix",
    "FeatureSet",
    "IGNORE_INDEX",
    "INCEPTION_FEATURE_DIMS",
    "INCEPTION_WEIGHTS_FILENAME",
    "LPIPS",
    "MS_SSIM_BETAS",
    "MetricUnavailable",
    "boundary_mask",
    "bpp_from_bytes",
    "fid_from_features",
    "fid_kid_torchmetrics",
    "frechet_distance",
    "inception_weights_cache_path",
    "iou_per_class",
    "kid_from_features",
    "load_inception",
    "masked_psnr",
    "miou",
    "ms_ssim",
    "ms_ssim_min_size",
    "pixel_accuracy",
    "psnr",
    "region_colour_errors",
    "ssim",
    "to_uint8_batch",
]
