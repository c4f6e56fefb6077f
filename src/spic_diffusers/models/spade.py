"""SPADE group normalisation: the way the semantic map enters the SPIC decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SPADEGroupNorm(nn.Module):
    """Parameter-free group norm modulated per pixel by the semantic map.

    ``out = group_norm(x) * (1 + gamma(segmap)) + beta(segmap)``, where ``gamma`` and ``beta`` come from
    a small shared conv net applied to the one-hot map resized (nearest) to the feature size. Nearest
    resizing keeps the map one-hot at every scale, so each pixel is modulated by its own class.
    Sub-module names follow the original SPIC checkpoints so conversion is a rename.
    """

    def __init__(
        self,
        num_channels: int,
        num_semantic_channels: int,
        num_groups: int = 32,
        eps: float = 1e-5,
        hidden_channels: int = 128,
    ):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, num_channels, eps=eps, affine=False)
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(num_semantic_channels, hidden_channels, kernel_size=3, padding=1), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(hidden_channels, num_channels, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden_channels, num_channels, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor, segmentation_map: torch.Tensor) -> torch.Tensor:
        normalized = self.norm(hidden_states)
        if segmentation_map.shape[-2:] != hidden_states.shape[-2:]:
            segmentation_map = F.interpolate(segmentation_map, size=hidden_states.shape[-2:], mode="nearest")
        actv = self.mlp_shared(segmentation_map.to(hidden_states.dtype))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)
