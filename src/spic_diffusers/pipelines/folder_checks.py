"""What a pipeline folder may say, checked before diffusers builds anything from it.

A model folder is an input: ``num_train_timesteps: 1e9`` in a scheduler config allocates gigabytes of betas,
a ``model_index.json`` that is a list or names ``torch.nn`` ends in a traceback deep inside diffusers, and a
``trained_betas`` list of the wrong length fails only after the UNet has run.  Every check here reads JSON
only and raises :class:`ModelFolderError` (a ``ValueError``) naming the file and the field.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..config_files import MAX_CONFIG_BYTES as MAX_CONFIG_BYTES
from ..config_files import ModelFolderError as ModelFolderError
from ..config_files import read_json_object as read_json_object

START_NOISE_MODES = ("none", "forward")
MAX_TRAIN_TIMESTEPS = 100_000
MAX_GUIDANCE_SCALE = 100.0
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
_UNET_CLASSES = ("SPICUNet2DModel",)
UNET_LIBRARY = "spic_diffusers.models.unet_spic"  # what save_pretrained records, and diffusers' loader resolves
# Where a saved pipeline names SPIC's own scheduler from (diffusers records the defining module and loads it there).
_OWN_SCHEDULER = ["spic_diffusers.pipelines.scheduling_spic_ddim", "SPICDDIMScheduler"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_scheduler_config(config: dict[str, Any], where: str = "scheduler config") -> None:
    """The fields of a scheduler config that size or shape what the scheduler allocates and returns."""
    steps = config.get("num_train_timesteps", 1000)
    if not _is_int(steps) or not 1 <= steps <= MAX_TRAIN_TIMESTEPS:
        raise ModelFolderError(
            f"{where}: num_train_timesteps must be an integer in 1..{MAX_TRAIN_TIMESTEPS}, got {steps!r}"
        )
    schedule = config.get("beta_schedule", "linear")
    trained = config.get("trained_betas")
    if trained is None and schedule not in BETA_SCHEDULES:
        raise ModelFolderError(f"{where}: beta_schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")
    for key in ("beta_start", "beta_end"):
        value = config.get(key, 0.01)
        if not _is_number(value) or not 0 < value < 1:
            raise ModelFolderError(f"{where}: {key} must be a number in (0, 1), got {value!r}")
    if trained is not None:
        if not isinstance(trained, list) or len(trained) != steps:
            length = len(trained) if isinstance(trained, list) else type(trained).__name__
            raise ModelFolderError(f"{where}: trained_betas must be a list of num_train_timesteps={steps} numbers, "
                                   f"got {length}")
        if not all(_is_number(beta) and 0 < beta < 1 for beta in trained):
            raise ModelFolderError(f"{where}: trained_betas must hold numbers in (0, 1)")
    offset = config.get("steps_offset", 0)
    if not _is_int(offset) or not 0 <= offset < steps:
        raise ModelFolderError(f"{where}: steps_offset must be an integer in 0..{steps - 1}, got {offset!r}")


def _scheduler_class(entry: Any, where: str):
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
        raise ModelFolderError(f"{where}: scheduler must be [library, class name], got {entry!r}")
    library, name = entry
    if entry == _OWN_SCHEDULER:
        from .scheduling_spic_ddim import SPICDDIMScheduler

        return SPICDDIMScheduler
    if library != "diffusers" or not name.endswith("Scheduler"):
        raise ModelFolderError(f"{where}: scheduler must be a diffusers scheduler class, got {library}.{name}")
    try:
        cls = getattr(diffusers, name, None)
    except (ImportError, RuntimeError) as err:  # a placeholder for a missing backend
        raise ModelFolderError(f"{where}: scheduler {name} cannot be imported ({str(err).splitlines()[0]})") from None
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ModelFolderError(f"{where}: diffusers has no scheduler class {name!r}")
    missing = [attr for attr in ("set_timesteps", "step", "scale_model_input", "add_noise") if not hasattr(cls, attr)]
    if missing:
        raise ModelFolderError(
            f"{where}: {name} cannot sample a SPIC model (it has no {', '.join(missing)}; flow-matching and "
            "other non-epsilon samplers are not supported)"
        )
    return cls


def check_pipeline_folder(path: str | os.PathLike) -> None:
    """``model_index.json`` and the scheduler config of a local SPIC pipeline folder, before anything is built."""
    path = os.fspath(path)
    index_path = os.path.join(path, "model_index.json")
    if not os.path.isfile(index_path):
        return  # diffusers names the missing file itself
    index = read_json_object(index_path, "the pipeline index")
    where = index_path
    unet = index.get("unet")
    if not (isinstance(unet, list) and len(unet) == 2 and unet[0] == UNET_LIBRARY and unet[1] in _UNET_CLASSES):
        resave = (" (diffusers resolves only the module that defines the class: load the UNet with "
                  "SPICUNet2DModel.from_pretrained(folder, subfolder=\"unet\") and save the pipeline again with "
                  "SPICPipeline.save_pretrained)"
                  if isinstance(unet, list) and unet[-1:] == ["SPICUNet2DModel"] else "")
        raise ModelFolderError(f"{where}: unet must be [\"{UNET_LIBRARY}\", \"SPICUNet2DModel\"], got {unet!r}"
                               + resave)
    _scheduler_class(index.get("scheduler"), where)
    extra = sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2
                   and k not in ("unet", "scheduler", "default_timesteps") and all(isinstance(x, str) for x in v))
    if extra:
        raise ModelFolderError(f"{where}: unexpected components {extra}; a SPIC pipeline has a unet and a scheduler")
    scheduler_path = os.path.join(path, "scheduler", "scheduler_config.json")
    scheduler = read_json_object(scheduler_path, "the scheduler config")
    check_scheduler_config(scheduler, scheduler_path)
    steps = scheduler.get("num_train_timesteps", 1000)
    timesteps = index.get("default_timesteps")
    if timesteps is not None:
        if (not isinstance(timesteps, list) or not timesteps or len(timesteps) > steps
                or not all(_is_int(t) and 0 <= t < steps for t in timesteps)):
            raise ModelFolderError(f"{where}: default_timesteps must be null or a non-empty list of integers in "
                                   f"0..{steps - 1}, got {str(timesteps)[:80]}")
    guidance = index.get("default_guidance_scale")
    if guidance is not None and (not _is_number(guidance) or not 0 <= guidance <= MAX_GUIDANCE_SCALE):
        raise ModelFolderError(f"{where}: default_guidance_scale must be null or a number in 0..{MAX_GUIDANCE_SCALE:g},"
                               f" got {guidance!r}")
    start = index.get("default_start_noise")
    if start is not None and start not in START_NOISE_MODES:
        raise ModelFolderError(
            f"{where}: default_start_noise must be null or one of {START_NOISE_MODES}, got {start!r}"
        )
