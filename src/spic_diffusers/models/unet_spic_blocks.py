"""Building blocks of `SPICUNet2DModel`.

The encoder is made of diffusers' own `ResnetBlock2D` and `Attention`; the middle and decoder blocks use
`SPADEResnetBlock2D`, a residual block whose two group norms are SPADE norms driven by the semantic map.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .spade import SPADEGroupNorm


def make_attention(channels: int, num_heads: int, norm_num_groups: int, norm_eps: float) -> Attention:
    """Self-attention over all pixels (group norm, q/k/v, output projection, residual), run with SDPA."""
    if channels % num_heads:
        raise ValueError(f"attention: {channels} channels cannot be split into {num_heads} heads")
    return Attention(
        channels,
        heads=num_heads,
        dim_head=channels // num_heads,
        rescale_output_factor=1.0,
        eps=norm_eps,
        norm_num_groups=norm_num_groups,
        residual_connection=True,
        bias=True,
        upcast_softmax=True,
    )


class SPADEResnetBlock2D(nn.Module):
    """Residual block conditioned on the timestep embedding and, through both norms, on the semantic map.

    Same computation as `ResnetBlock2D` with `norm1`/`norm2` replaced by `SPADEGroupNorm`; the optional
    up-sampling (nearest) happens between the first norm and the first conv, as in the original network.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_semantic_channels: int,
        groups: int = 32,
        eps: float = 1e-5,
        dropout: float = 0.0,
        time_embedding_norm: str = "scale_shift",
        spade_hidden_channels: int = 128,
        up: bool = False,
    ):
        super().__init__()
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"time_embedding_norm must be 'default' or 'scale_shift', got {time_embedding_norm!r}")
        self.time_embedding_norm = time_embedding_norm
        spade = dict(num_semantic_channels=num_semantic_channels, num_groups=groups, eps=eps,
                     hidden_channels=spade_hidden_channels)
        self.norm1 = SPADEGroupNorm(in_channels, **spade)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        proj_out = 2 * out_channels if time_embedding_norm == "scale_shift" else out_channels
        self.time_emb_proj = nn.Linear(temb_channels, proj_out)
        self.norm2 = SPADEGroupNorm(out_channels, **spade)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.upsample = Upsample2D(in_channels, use_conv=False) if up else None
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor, segmentation_map: torch.Tensor) -> torch.Tensor:
        hidden_states = self.nonlinearity(self.norm1(input_tensor, segmentation_map))
        if self.upsample is not None:
            input_tensor = self.upsample(input_tensor)
            hidden_states = self.upsample(hidden_states)
        hidden_states = self.conv1(hidden_states)

        temb = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None].to(hidden_states.dtype)
        if self.time_embedding_norm == "scale_shift":
            scale, shift = temb.chunk(2, dim=1)
            hidden_states = self.norm2(hidden_states, segmentation_map) * (1 + scale) + shift
        else:
            hidden_states = self.norm2(hidden_states + temb, segmentation_map)

        hidden_states = self.conv2(self.dropout(self.nonlinearity(hidden_states)))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return input_tensor + hidden_states


class _CheckpointingMixin:
    """Runs a sub-module through diffusers' gradient-checkpointing function when it is switched on."""

    gradient_checkpointing = False

    def _run(self, module: nn.Module, *args):
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(module, *args)
        return module(*args)


class SPICDownBlock2D(_CheckpointingMixin, nn.Module):
    """One encoder level: plain residual blocks (+ attention), then an optional down-sampler.

    Returns the features after every residual block and after the down-sampler: the decoder's skips.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        num_attention_heads: int | None,
        downsample_type: str | None,
        resnet_time_scale_shift: str = "scale_shift",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        resnet = dict(temb_channels=temb_channels, groups=norm_num_groups, eps=norm_eps, dropout=dropout,
                      time_embedding_norm=resnet_time_scale_shift)
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels=in_channels if i == 0 else out_channels, out_channels=out_channels, **resnet)
            for i in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            make_attention(out_channels, num_attention_heads, norm_num_groups, norm_eps) for _ in range(num_layers)
        ) if num_attention_heads else None
        if downsample_type is None:
            self.downsamplers = None
        elif downsample_type == "resnet":
            self.downsamplers = nn.ModuleList(
                [ResnetBlock2D(in_channels=out_channels, out_channels=out_channels, down=True, **resnet)]
            )
        elif downsample_type in ("conv", "pool"):
            self.downsamplers = nn.ModuleList(
                [Downsample2D(out_channels, use_conv=downsample_type == "conv", padding=1, name="op")]
            )
        else:
            raise ValueError(f"downsample_type must be 'resnet', 'conv' or 'pool', got {downsample_type!r}")
        self.downsample_type = downsample_type

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips = ()
        for i, resnet in enumerate(self.resnets):
            hidden_states = self._run(resnet, hidden_states, temb)
            if self.attentions is not None:
                hidden_states = self._run(self.attentions[i], hidden_states)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            down = self.downsamplers[0]
            if self.downsample_type == "resnet":
                hidden_states = self._run(down, hidden_states, temb)
            else:
                hidden_states = down(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class SPICMidBlock2D(_CheckpointingMixin, nn.Module):
    """SPADE residual block, attention, SPADE residual block."""

    def __init__(
        self,
        *,
        channels: int,
        temb_channels: int,
        num_semantic_channels: int,
        num_attention_heads: int,
        resnet_time_scale_shift: str = "scale_shift",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
        spade_hidden_channels: int = 128,
    ):
        super().__init__()
        resnet = dict(in_channels=channels, out_channels=channels, temb_channels=temb_channels,
                      num_semantic_channels=num_semantic_channels, groups=norm_num_groups, eps=norm_eps,
                      dropout=dropout, time_embedding_norm=resnet_time_scale_shift,
                      spade_hidden_channels=spade_hidden_channels)
        self.resnets = nn.ModuleList([SPADEResnetBlock2D(**resnet), SPADEResnetBlock2D(**resnet)])
        self.attentions = nn.ModuleList([make_attention(channels, num_attention_heads, norm_num_groups, norm_eps)])

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, segmentation_map: torch.Tensor) -> torch.Tensor:
        hidden_states = self._run(self.resnets[0], hidden_states, temb, segmentation_map)
        hidden_states = self._run(self.attentions[0], hidden_states)
        return self._run(self.resnets[1], hidden_states, temb, segmentation_map)


class SPICUpBlock2D(_CheckpointingMixin, nn.Module):
    """One decoder level: SPADE residual blocks on [features, skip] (+ attention), then an optional up-sampler."""

    def __init__(
        self,
        *,
        resnet_in_channels: list[int],
        out_channels: int,
        temb_channels: int,
        num_semantic_channels: int,
        num_attention_heads: int | None,
        upsample_type: str | None,
        resnet_time_scale_shift: str = "scale_shift",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
        spade_hidden_channels: int = 128,
    ):
        super().__init__()
        resnet = dict(temb_channels=temb_channels, num_semantic_channels=num_semantic_channels,
                      groups=norm_num_groups, eps=norm_eps, dropout=dropout,
                      time_embedding_norm=resnet_time_scale_shift, spade_hidden_channels=spade_hidden_channels)
        self.resnets = nn.ModuleList(
            SPADEResnetBlock2D(in_channels=c, out_channels=out_channels, **resnet) for c in resnet_in_channels
        )
        self.attentions = nn.ModuleList(
            make_attention(out_channels, num_attention_heads, norm_num_groups, norm_eps) for _ in resnet_in_channels
        ) if num_attention_heads else None
        if upsample_type is None:
            self.upsamplers = None
        elif upsample_type == "resnet":
            self.upsamplers = nn.ModuleList(
                [SPADEResnetBlock2D(in_channels=out_channels, out_channels=out_channels, up=True, **resnet)]
            )
        elif upsample_type in ("conv", "nearest"):
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=upsample_type == "conv")])
        else:
            raise ValueError(f"upsample_type must be 'resnet', 'conv' or 'nearest', got {upsample_type!r}")
        self.upsample_type = upsample_type

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        segmentation_map: torch.Tensor,
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden_states = torch.cat([hidden_states, skips[-1 - i]], dim=1)
            hidden_states = self._run(resnet, hidden_states, temb, segmentation_map)
            if self.attentions is not None:
                hidden_states = self._run(self.attentions[i], hidden_states)
        if self.upsamplers is not None:
            up = self.upsamplers[0]
            if self.upsample_type == "resnet":
                hidden_states = self._run(up, hidden_states, temb, segmentation_map)
            else:
                hidden_states = up(hidden_states)
        return hidden_states
