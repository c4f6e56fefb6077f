"""Training SPIC's receiver: the hybrid loss and an Accelerate training loop (`training/train_spic.py`)."""

from .arguments import TrainingInputError, build_parser, parse_args
from .loss import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    hybrid_loss,
    linear_alphas_cumprod,
    normal_kl,
    q_sample,
    scheduler_alphas_cumprod,
)
from .trainer import cli, main, train, training_loss, unet_config_from_args

__all__ = [
    "TrainingInputError",
    "approx_standard_normal_cdf",
    "build_parser",
    "cli",
    "discretized_gaussian_log_likelihood",
    "hybrid_loss",
    "linear_alphas_cumprod",
    "main",
    "normal_kl",
    "parse_args",
    "q_sample",
    "scheduler_alphas_cumprod",
    "train",
    "training_loss",
    "unet_config_from_args",
]
