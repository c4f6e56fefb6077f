"""SPIC's training objective: the hybrid loss of improved DDPM (noise MSE + variational bound on the variance).

With learned-range variance the model's last channels pick a log-variance between the posterior variance and
beta_t. Those channels are trained by the variational bound (KL between the true posterior q(x_{t-1}|x_t,x_0)
and the model's p(x_{t-1}|x_t); at t = 0 the discretised Gaussian decoder NLL) with the mean detached, so the
noise prediction is trained by the MSE alone.

Schedule coefficients are computed in float64 and gathered as float32, and the terms themselves are computed
in float32: this is the precision the original implementation uses, and the t = 0 decoder term (a difference
of two nearly equal CDF values) changes by ~1e-3 in another precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "approx_standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "hybrid_loss",
    "linear_alphas_cumprod",
    "normal_kl",
    "q_sample",
    "scheduler_alphas_cumprod",
]

_LOG2 = math.log(2.0)


def linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02
) -> torch.Tensor:
    """Cumulative alpha products of the linear schedule, in float64 (the paper's schedule by default)."""
    if num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
    betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    return torch.from_numpy(np.cumprod(1.0 - betas))


def scheduler_alphas_cumprod(scheduler) -> torch.Tensor:
    """float64 cumulative alpha products of a diffusers scheduler.

    Linear schedules are recomputed in float64 from the config (the scheduler keeps float32 tables, whose
    rounding would shift log(beta_t) by ~1e-3 at small t); other schedules use the scheduler's own table.
    """
    config = scheduler.config
    if config.get("trained_betas") is None and config.get("beta_schedule") == "linear":
        return linear_alphas_cumprod(config.num_train_timesteps, config.beta_start, config.beta_end)
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"{type(scheduler).__name__} has no discrete alphas_cumprod table to train against")
    return torch.as_tensor(scheduler.alphas_cumprod).double().cpu()


def _as_float64(alphas_cumprod: torch.Tensor | np.ndarray | Sequence[float]) -> torch.Tensor:
    if isinstance(alphas_cumprod, torch.Tensor):
        table = alphas_cumprod.detach().cpu().double()
    else:
        table = torch.as_tensor(np.asarray(alphas_cumprod, dtype=np.float64))
    if table.ndim != 1 or table.numel() < 2:
        raise ValueError(f"alphas_cumprod must be a 1-D table of at least 2 steps, got shape {tuple(table.shape)}")
    if not torch.all((table > 0) & (table < 1)) or not torch.all(table[1:] < table[:-1]):
        raise ValueError("alphas_cumprod must be strictly decreasing values in (0, 1)")
    return table


def _gather(table: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """table[t] as float32 on `like`'s device, shaped to broadcast over [B, ...]."""
    values = table[timesteps.cpu().long()].float().to(like.device)
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _check_timesteps(timesteps: torch.Tensor, batch: int, num_steps: int) -> torch.Tensor:
    timesteps = torch.as_tensor(timesteps)
    if timesteps.ndim == 0:
        timesteps = timesteps.expand(batch)
    if timesteps.shape != (batch,):
        raise ValueError(f"timesteps must be a scalar or a [{batch}] tensor, got shape {tuple(timesteps.shape)}")
    if torch.is_floating_point(timesteps):
        raise ValueError("timesteps must be integer indices into the schedule")
    if timesteps.min() < 0 or timesteps.max() >= num_steps:
        raise ValueError(f"timesteps must be within 0..{num_steps - 1}, got {timesteps.tolist()}")
    return timesteps.long()


def q_sample(
    x_start: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (the forward process in one jump)."""
    table = _as_float64(alphas_cumprod)
    timesteps = _check_timesteps(timesteps, x_start.shape[0], len(table))
    return _gather(table.sqrt(), timesteps, x_start) * x_start + _gather((1 - table).sqrt(), timesteps, x_start) * noise


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats; arguments broadcast."""
    return 0.5 * (logvar2 - logvar1 - 1.0 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF (the one the bound was defined with)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, num_bins: int = 256
) -> torch.Tensor:
    """Elementwise log-probability (nats) of images in [-1, 1] quantised to `num_bins` levels under a Gaussian.

    Each value owns the bin of half-width 1 / (num_bins - 1) around it; the two extreme bins extend to
    -inf and +inf so the probabilities sum to one.
    """
    if not (x.shape == means.shape == log_scales.shape):
        raise ValueError(
            f"x, means and log_scales must share a shape, got {tuple(x.shape)}, {tuple(means.shape)}, "
            f"{tuple(log_scales.shape)}"
        )
    half_bin = 1.0 / (num_bins - 1)
    edge = 0.999  # between the extreme bin centres (+-1) and their neighbours
    centred = x - means
    inv_std = torch.exp(-log_scales)
    cdf_upper = approx_standard_normal_cdf(inv_std * (centred + half_bin))
    cdf_lower = approx_standard_normal_cdf(inv_std * (centred - half_bin))
    log_cdf_upper = torch.log(cdf_upper.clamp(min=1e-12))
    log_survival_lower = torch.log((1.0 - cdf_lower).clamp(min=1e-12))
    log_bin = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    return torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_survival_lower, log_bin))


def _mean_over_sample(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def hybrid_loss(
    model_output: torch.Tensor,
    x_start: torch.Tensor,
    x_t: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor | np.ndarray,
) -> dict[str, torch.Tensor]:
    r"""Per-sample hybrid loss of an epsilon-predicting model with learned-range variance.

    Args:
        model_output: `[B, 2C, ...]`: predicted noise, then the variance values in [-1, 1].
        x_start: Clean images `[B, C, ...]` in [-1, 1].
        x_t: The noised images the model saw (`q_sample(x_start, timesteps, noise, ...)`).
        timesteps: `[B]` integer timesteps (indices into `alphas_cumprod`).
        noise: The noise used to make `x_t`.
        alphas_cumprod: The schedule's cumulative alpha products (float64 preferred; see
            `linear_alphas_cumprod` / `scheduler_alphas_cumprod`).

    Returns:
        `{"loss", "mse", "vb"}`, each `[B]`: `mse` is the noise MSE, `vb` the variational-bound term in bits per
        dimension (gradients reach only the variance channels), `loss = mse + vb`.
    """
    if x_start.shape != x_t.shape or x_start.shape != noise.shape:
        raise ValueError(
            f"x_start, x_t and noise must share a shape, got {tuple(x_start.shape)}, {tuple(x_t.shape)}, "
            f"{tuple(noise.shape)}"
        )
    batch, channels = x_start.shape[:2]
    if model_output.shape != (batch, 2 * channels, *x_start.shape[2:]):
        raise ValueError(
            f"model_output must be [B, {2 * channels}, ...] (noise + variance values) for x_start "
            f"{tuple(x_start.shape)}, got {tuple(model_output.shape)}"
        )
    table = _as_float64(alphas_cumprod)
    timesteps = _check_timesteps(timesteps, batch, len(table))
    model_output, x_start, x_t, noise = (v.float() for v in (model_output, x_start, x_t, noise))

    prev = torch.cat([table.new_ones(1), table[:-1]])
    betas = 1.0 - table / prev
    posterior_variance = betas * (1.0 - prev) / (1.0 - table)
    # log(0) at t = 0: the original clips it to the value at t = 1.
    posterior_log_variance = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))
    coef_x0 = betas * prev.sqrt() / (1.0 - table)
    coef_xt = (1.0 - prev) * (1.0 - betas).sqrt() / (1.0 - table)

    def g(values: torch.Tensor) -> torch.Tensor:
        return _gather(values, timesteps, x_start)

    eps, var_values = model_output[:, :channels], model_output[:, channels:]
    mse = _mean_over_sample((noise - eps) ** 2)

    # Variational bound with the mean frozen: only the variance channels learn from it.
    eps = eps.detach()
    true_mean = g(coef_x0) * x_start + g(coef_xt) * x_t
    true_log_variance = g(posterior_log_variance)
    pred_x0 = g((1.0 / table).sqrt()) * x_t - g((1.0 / table - 1.0).sqrt()) * eps
    model_mean = g(coef_x0) * pred_x0 + g(coef_xt) * x_t
    frac = (var_values + 1) / 2
    model_log_variance = frac * g(torch.log(betas)) + (1 - frac) * true_log_variance

    kl = _mean_over_sample(normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)) / _LOG2
    decoder_nll = -discretized_gaussian_log_likelihood(
        x_start, means=model_mean, log_scales=0.5 * model_log_variance
    )
    decoder_nll = _mean_over_sample(decoder_nll) / _LOG2
    vb = torch.where(timesteps.to(kl.device) == 0, decoder_nll, kl)
    return {"loss": mse + vb, "mse": mse, "vb": vb}
