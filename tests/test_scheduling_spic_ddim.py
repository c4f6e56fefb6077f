"""SPICDDIMScheduler: diffusers' DDIM update, stepping to the schedule's own next timestep."""

import pytest
import torch
from diffusers import DDIMScheduler

from spic_diffusers import SPICDDIMScheduler
from spic_diffusers.pipelines.pipeline_spic import default_scheduler
from spic_diffusers.pipelines.schedulers import scheduler_from_name


def _ddim_loop(scheduler, **step_kwargs):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 8, 8, generator=g)
    for t in scheduler.timesteps:
        eps = torch.randn(2, 3, 8, 8, generator=g)
        sample = scheduler.step(eps, t, sample, **step_kwargs).prev_sample
    return sample


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_on_an_even_schedule_it_is_diffusers_ddim(eta):
    """Where `t - T // n` is the schedule's next timestep, both give the same trajectory (noise re-derived from the
    clipped x0: `use_clipped_model_output=True`)."""
    config = default_scheduler().config
    ours = SPICDDIMScheduler.from_config(config, timestep_spacing="leading")
    theirs = DDIMScheduler.from_config(config, timestep_spacing="leading")
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert ours.timesteps.tolist() == list(range(900, -1, -100))
    a = _ddim_loop(ours, eta=eta, generator=torch.Generator().manual_seed(1))
    b = _ddim_loop(theirs, eta=eta, use_clipped_model_output=True, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_uneven_and_explicit_schedules_step_to_their_next_timestep():
    scheduler = SPICDDIMScheduler.from_config(default_scheduler().config)
    scheduler.set_timesteps(100)
    visits = [int(t) for t in scheduler.timesteps if t <= 200]
    assert visits[:5] == [192, 182, 172, 161, 151]
    assert [scheduler.previous_timestep(t) for t in visits[:4]] == [182, 172, 161, 151]
    assert scheduler.previous_timestep(0) == -1
    scheduler.set_timesteps(timesteps=[192, 91])
    assert scheduler.timesteps.tolist() == [192, 91] and scheduler.num_inference_steps == 2
    assert scheduler.previous_timestep(192) == 91 and scheduler.previous_timestep(91) == -1
    # The last step lands on the clean image: x0 exactly (final_alpha_cumprod = 1).
    sample, eps = torch.rand(1, 3, 4, 4) * 2 - 1, torch.randn(1, 3, 4, 4)
    out = scheduler.step(eps, 91, sample)
    assert torch.equal(out.prev_sample, out.pred_original_sample)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(timesteps=[91, 192]), "strictly decreasing"),
        (dict(timesteps=[192, 192]), "strictly decreasing"),
        (dict(timesteps=[1000]), "within 0..999"),
        (dict(timesteps=[]), "within 0..999"),
        (dict(num_inference_steps=5, timesteps=[192]), "either"),
        (dict(), "either"),
    ],
)
def test_bad_schedules_are_refused(kwargs, message):
    scheduler = SPICDDIMScheduler.from_config(default_scheduler().config)
    with pytest.raises(ValueError, match=message):
        scheduler.set_timesteps(**kwargs)


def test_a_timestep_off_the_schedule_is_refused():
    scheduler = SPICDDIMScheduler.from_config(default_scheduler().config)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(torch.zeros(1, 3, 4, 4), 192, torch.zeros(1, 3, 4, 4))
    scheduler.set_timesteps(timesteps=[192, 91])
    with pytest.raises(ValueError, match="not in the schedule"):
        scheduler.step(torch.zeros(1, 3, 4, 4), 100, torch.zeros(1, 3, 4, 4))


def test_class_name_builds_it_and_a_pipeline_samples_ddim_with_it(tiny_unet):
    from spic_diffusers import SPICPipeline

    config = default_scheduler().config
    assert type(scheduler_from_name("SPICDDIMScheduler", config)) is SPICDDIMScheduler
    ddim = scheduler_from_name("ddim", config)
    assert type(ddim) is DDIMScheduler
    pipe = SPICPipeline(unet=tiny_unet, scheduler=ddim)
    assert type(pipe.scheduler) is SPICDDIMScheduler
    pipe.scheduler = default_scheduler()
    pipe.scheduler = ddim
    assert type(pipe.scheduler) is SPICDDIMScheduler
    assert pipe.config.scheduler[1] == "SPICDDIMScheduler"
