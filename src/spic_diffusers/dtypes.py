"""The names a user may give a torch dtype (`"bf16"`, `"float16"`, ...): one table for the pipeline's
`unet_dtype` / `default_unet_dtype` and the distiller's `--teacher_dtype`."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(value: torch.dtype | str | None, name: str = "unet_dtype") -> torch.dtype | None:
    """`None`, a torch dtype or one of the names in :data:`DTYPES` -> a torch dtype (or None); ValueError naming
    `name` otherwise."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if value not in DTYPES:
        raise ValueError(f"{name} must be a torch dtype or one of {sorted(DTYPES)}, got {value!r}")
    return DTYPES[value]
