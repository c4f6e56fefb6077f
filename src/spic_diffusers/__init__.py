"""SPIC in diffusers: semantic-preserving image coding with a doubly conditioned DDPM.

Public names are imported lazily so that `import spic_diffusers.codec` (a transmitter without torch
models) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "SPICUNet2DModel": "spic_diffusers.models.unet_spic",
    "SPICPipeline": "spic_diffusers.pipelines.pipeline_spic",
    "SPICDDIMScheduler": "spic_diffusers.pipelines.scheduling_spic_ddim",
    "convert_original_state_dict": "spic_diffusers.conversion",
    "convert_to_original_state_dict": "spic_diffusers.conversion",
    "original_options_to_unet_config": "spic_diffusers.conversion",
    "unet_from_original_checkpoint": "spic_diffusers.conversion",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:
    from .conversion import (
        convert_original_state_dict,
        convert_to_original_state_dict,
        original_options_to_unet_config,
        unet_from_original_checkpoint,
    )
    from .models.unet_spic import SPICUNet2DModel
    from .pipelines.pipeline_spic import SPICPipeline
    from .pipelines.scheduling_spic_ddim import SPICDDIMScheduler


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spic_diffusers' has no attribute {name!r}")
