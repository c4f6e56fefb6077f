"""`SPICDDIMScheduler`: DDIM that steps to the exact predecessor on SPIC's uneven schedules."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401  (pipeline loading looks it up here)
from diffusers.utils.torch_utils import randn_tensor


class SPICDDIMScheduler(DDIMScheduler):
    """DDIM that steps from each timestep to the next one of its schedule: the authors' DDIM sampler.

    diffusers' `DDIMScheduler` steps from `t` to `t - num_train_timesteps // num_inference_steps`, right only for
    an evenly spaced schedule. SPIC's schedules are not: the paper's linspace spacing visits 192, 182, 172, 161,
    ... (the rounding of 100 steps over 1000), a distilled student visits e.g. [192, 91], and `set_timesteps`
    here also takes such an explicit list. The update is the authors' (x0 clipped when `clip_sample`, the noise
    re-derived from it); the last step goes to `final_alpha_cumprod`. Same config as `DDIMScheduler`, so either
    is built from the other's config, and a pipeline folder saving it records this class.
    """

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[int] | None = None,
    ) -> None:
        """A spacing of `num_inference_steps` (as `DDIMScheduler`), or the explicit descending `timesteps`."""
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass either num_inference_steps or timesteps")
        if timesteps is None:
            super().set_timesteps(num_inference_steps, device=device)
            return
        steps = [int(t) for t in timesteps]
        limit = self.config.num_train_timesteps
        if not steps or any(not 0 <= t < limit for t in steps):
            raise ValueError(f"timesteps must be within 0..{limit - 1}, got {steps}")
        if any(a <= b for a, b in zip(steps, steps[1:])):
            raise ValueError(f"timesteps must be strictly decreasing, got {steps}")
        self.num_inference_steps = len(steps)
        self.timesteps = torch.tensor(steps, dtype=torch.long, device=device)

    def previous_timestep(self, timestep: int | torch.Tensor) -> int:
        """The timestep after `timestep` in the schedule (-1 after the last: the clean image)."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        schedule = self.timesteps.tolist()  # one copy to the host, not one per timestep
        t = int(timestep)
        if t not in schedule:
            raise ValueError(f"timestep {t} is not in the schedule {schedule}")
        index = schedule.index(t)
        return schedule[index + 1] if index + 1 < len(schedule) else -1

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDIMSchedulerOutput | tuple:
        """One DDIM update from `timestep` to its successor in the schedule (formulas 12 and 16 of the DDIM paper).

        The noise is always re-derived from the (clipped) x0, as the authors' sampler does;
        `use_clipped_model_output` is accepted for `DDIMScheduler` compatibility.
        """
        t = int(timestep)
        prev_t = self.previous_timestep(t)
        alpha_t = self.alphas_cumprod[t].to(sample.device)
        alpha_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        alpha_prev = alpha_prev.to(sample.device)
        prediction = self.config.prediction_type
        if prediction == "epsilon":
            x0 = (sample - (1 - alpha_t) ** 0.5 * model_output) / alpha_t**0.5
        elif prediction == "sample":
            x0 = model_output
        elif prediction == "v_prediction":
            x0 = alpha_t**0.5 * sample - (1 - alpha_t) ** 0.5 * model_output
        else:
            raise ValueError(f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got {prediction!r}")
        if self.config.thresholding:
            x0 = self._threshold_sample(x0)
        elif self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        eps = (sample - alpha_t**0.5 * x0) / (1 - alpha_t) ** 0.5
        variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
        std = eta * variance**0.5
        prev_sample = alpha_prev**0.5 * x0 + (1 - alpha_prev - std**2) ** 0.5 * eps
        if eta > 0:
            if variance_noise is not None and generator is not None:
                raise ValueError("pass either generator or variance_noise, not both")
            if variance_noise is None:
                variance_noise = randn_tensor(sample.shape, generator=generator, device=sample.device,
                                              dtype=sample.dtype)
            prev_sample = prev_sample + std * variance_noise
        if not return_dict:
            return (prev_sample, x0)
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)


def exact_ddim(scheduler):
    """`scheduler` itself, or, for a plain `DDIMScheduler`, a `SPICDDIMScheduler` of the same config (SPIC's
    schedules are uneven, where `DDIMScheduler` steps to the wrong predecessor)."""
    if type(scheduler) is DDIMScheduler:
        return SPICDDIMScheduler.from_config(scheduler.config)
    return scheduler
