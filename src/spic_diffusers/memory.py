"""How much memory a device has free now: the one probe behind the pipeline's, the trainers' and the benchmarks'
memory checks (a model's configuration never depends on it)."""

from __future__ import annotations

import os

import torch


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Free bytes on ``device`` (CUDA: the driver's figure; CPU: the system's available memory), or None where
    it cannot be told (other devices, or a system that reports nothing)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
