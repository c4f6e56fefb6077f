"""The hybrid loss against the original implementation's fixture, and its helpers against first principles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import load_fixture

from spic_diffusers.training.loss import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    hybrid_loss,
    linear_alphas_cumprod,
    normal_kl,
    q_sample,
    scheduler_alphas_cumprod,
)


@pytest.fixture(scope="module")
def fixture_model(fixture_unet):
    # unet_from_original_checkpoint(load_original_checkpoint(F + "model.pt"), config.json), from conftest
    return fixture_unet


@pytest.fixture(scope="module")
def reference():
    return load_fixture("train_loss.pt")


def _model_output(unet, ref, timesteps, alphas_cumprod, grad=False):
    x_t = q_sample(ref["x_start"], timesteps, ref["noise"], alphas_cumprod)
    with torch.set_grad_enabled(grad):
        out = unet(x_t, timesteps, ref["segmap"], ref["low_res"]).sample
    return out, x_t


def test_hybrid_loss_matches_original(fixture_model, reference):
    alphas_cumprod = linear_alphas_cumprod()
    out, x_t = _model_output(fixture_model, reference, reference["t"], alphas_cumprod)
    terms = hybrid_loss(out, reference["x_start"], x_t, reference["t"], reference["noise"], alphas_cumprod)
    for key in ("mse", "vb", "loss"):
        assert terms[key].shape == (2,)
        torch.testing.assert_close(terms[key], reference[key], atol=1e-5, rtol=0, msg=key)


def test_scheduler_table_reproduces_fixture(fixture_model, reference):
    """The diffusers scheduler's schedule, recomputed in float64, is the original's."""
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    scheduler = default_scheduler()
    table = scheduler_alphas_cumprod(scheduler)
    assert table.dtype == torch.float64
    torch.testing.assert_close(table, linear_alphas_cumprod(), atol=0, rtol=0)
    torch.testing.assert_close(table.float(), scheduler.alphas_cumprod, atol=1e-6, rtol=0)
    out, x_t = _model_output(fixture_model, reference, reference["t"], table)
    terms = hybrid_loss(out, reference["x_start"], x_t, reference["t"], reference["noise"], table)
    torch.testing.assert_close(terms["loss"], reference["loss"], atol=1e-5, rtol=0)


def test_vb_trains_only_variance_and_mse_only_noise(fixture_model, reference):
    alphas_cumprod = linear_alphas_cumprod()
    out, x_t = _model_output(fixture_model, reference, reference["t"], alphas_cumprod)
    out = out.clone().requires_grad_(True)
    terms = hybrid_loss(out, reference["x_start"], x_t, reference["t"], reference["noise"], alphas_cumprod)
    (grad_vb,) = torch.autograd.grad(terms["vb"].sum(), out, retain_graph=True)
    (grad_mse,) = torch.autograd.grad(terms["mse"].sum(), out)
    assert grad_vb[:, :3].abs().max() == 0  # the mean is detached for the bound
    assert grad_vb[:, 3:].abs().max() > 0
    assert grad_mse[:, 3:].abs().max() == 0
    assert grad_mse[:, :3].abs().max() > 0


def test_t0_uses_decoder_nll(fixture_model, reference):
    alphas_cumprod = linear_alphas_cumprod()
    t = torch.tensor([0, 1])
    out, x_t = _model_output(fixture_model, reference, t, alphas_cumprod)
    terms = hybrid_loss(out, reference["x_start"], x_t, t, reference["noise"], alphas_cumprod)
    # Rebuild p(x_0 | x_1)'s mean and log variance at t = 0 by hand and compare the decoder NLL.
    a = alphas_cumprod.double()
    beta0 = 1 - a[0]
    eps = out[:1, :3].double()
    x0_pred = (x_t[:1].double() - (1 - a[0]).sqrt() * eps) / a[0].sqrt()
    mean = x0_pred  # at t = 0 the posterior mean is x_0 itself (coef of x_t is 0)
    post_var_1 = (1 - a[1]) ** -1 * (1 - a[0]) * (1 - a[1] / a[0])
    frac = (out[:1, 3:].double() + 1) / 2
    log_var = frac * torch.log(beta0) + (1 - frac) * torch.log(post_var_1)
    nll = -discretized_gaussian_log_likelihood(reference["x_start"][:1].double(), mean, 0.5 * log_var)
    expected = nll.mean() / math.log(2)
    # The loss works in float32 (the original's precision); this float64 rebuild agrees to ~1e-6 here.
    assert abs(terms["vb"][0].item() - expected.item()) < 1e-4
    assert terms["vb"][0] > 0 and terms["vb"][1] > 0
    # t = 1 is a KL, not a decoder NLL: much smaller than the decoder term.
    assert terms["vb"][1] < terms["vb"][0]


def test_discretized_likelihood_is_a_distribution():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, log_scale in ((0.3, math.log(0.05)), (-0.98, math.log(0.2)), (0.0, math.log(2.0))):
        x = levels
        lp = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, log_scale))
        assert abs(lp.exp().sum().item() - 1.0) < 1e-6
    with pytest.raises(ValueError, match="share a shape"):
        discretized_gaussian_log_likelihood(torch.zeros(3), torch.zeros(2), torch.zeros(3))


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected)
    assert normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-12


def test_approx_cdf_close_to_erf():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    exact = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    assert (approx_standard_normal_cdf(x) - exact).abs().max() < 1e-3


def test_q_sample_matches_diffusers_add_noise():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    g = torch.Generator().manual_seed(1)
    x, noise = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1, torch.randn(3, 3, 4, 4, generator=g)
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(q_sample(x, t, noise, linear_alphas_cumprod()), scheduler.add_noise(x, noise, t),
                               atol=1e-5, rtol=0)


def test_bad_inputs_raise_clear_errors():
    table = linear_alphas_cumprod()
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="model_output must be"):
        hybrid_loss(torch.zeros(2, 3, 4, 4), x, x, torch.tensor([1, 2]), x, table)
    with pytest.raises(ValueError, match="within 0..999"):
        hybrid_loss(torch.zeros(2, 6, 4, 4), x, x, torch.tensor([1, 1000]), x, table)
    with pytest.raises(ValueError, match="integer"):
        hybrid_loss(torch.zeros(2, 6, 4, 4), x, x, torch.tensor([1.0, 2.0]), x, table)
    with pytest.raises(ValueError, match="decreasing"):
        hybrid_loss(torch.zeros(2, 6, 4, 4), x, x, torch.tensor([1, 2]), x, np.linspace(0.1, 0.9, 10))
    with pytest.raises(ValueError, match="share a shape"):
        hybrid_loss(torch.zeros(2, 6, 4, 4), x, torch.zeros(2, 3, 4, 5), torch.tensor([1, 2]), x, table)
