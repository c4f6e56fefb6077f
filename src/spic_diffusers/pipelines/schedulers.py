"""Short names for the diffusers schedulers SPIC is tested with (`--scheduler ddim`)."""

from __future__ import annotations

from typing import Any

# short name -> (diffusers class name, config overrides); a pipeline samples DDIMScheduler as SPICDDIMScheduler
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmsolver": ("DPMSolverMultistepScheduler", {}),
    "dpmsolver-singlestep": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}


def scheduler_from_name(name: str, base_config: Any):
    """A scheduler by short name (see `SCHEDULER_CLASSES`), diffusers class name or `SPICDDIMScheduler`, built from
    `base_config`.

    Building from the pipeline's own scheduler config keeps the training schedule (betas, 1000 steps,
    linspace spacing) whatever the sampler.
    """
    import diffusers

    class_name, overrides = SCHEDULER_CLASSES.get(name.lower(), (name, {}))
    if class_name == "SPICDDIMScheduler":
        from .scheduling_spic_ddim import SPICDDIMScheduler as cls
    else:
        cls = getattr(diffusers, class_name, None) if class_name.endswith("Scheduler") else None
    if cls is None:
        raise ValueError(
            f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULER_CLASSES)} "
            "or a diffusers *Scheduler class name"
        )
    try:
        return cls.from_config(base_config, **overrides)
    except ImportError as err:  # diffusers' placeholders for schedulers whose backend is not installed
        reason = str(err).strip().splitlines()[0]
        raise ValueError(f"scheduler {name!r} needs a package that is not installed: {reason}") from None
