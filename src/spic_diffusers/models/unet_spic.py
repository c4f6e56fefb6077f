"""`SPICUNet2DModel`: the SPIC receiver's denoiser as a diffusers model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (pipeline loading looks it up here)
from diffusers.models.unets.unet_2d import UNet2DModel, UNet2DOutput
from torch import nn

from ..config_files import without_load_path
from ..sizes import as_hw
from .unet_spic_blocks import SPICDownBlock2D, SPICMidBlock2D, SPICUpBlock2D


# A config may not ask for more than this (the paper's model has about 0.7 G parameters).
MAX_PARAMETERS = 8_000_000_000
_MAX_CHANNELS = 16384
_MAX_LEVELS = 10
_MAX_LAYERS_PER_BLOCK = 16


def _int_in(name: str, value, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


def validate_unet_config(config: dict) -> None:
    """Types and ranges of a `SPICUNet2DModel` config, checked before anything is built (configs come from files).

    The answer depends on the config alone, never on the machine: whether a model fits in memory is for the
    code that runs it to judge (the pipeline's `max_pixels` and memory check, the codec's and the CLI's budgets).
    """
    c = config
    for name in ("in_channels", "low_res_channels", "out_channels"):
        _int_in(name, c[name], 0 if name == "low_res_channels" else 1, 64)
    _int_in("num_semantic_channels", c["num_semantic_channels"], 1, 1024)
    _int_in("layers_per_block", c["layers_per_block"], 1, _MAX_LAYERS_PER_BLOCK)
    _int_in("norm_num_groups", c["norm_num_groups"], 1, _MAX_CHANNELS)
    _int_in("spade_hidden_channels", c["spade_hidden_channels"], 1, _MAX_CHANNELS)
    _int_in("attention_head_dim", c["attention_head_dim"], 1, _MAX_CHANNELS, optional=True)
    _int_in("num_attention_heads", c["num_attention_heads"], 1, _MAX_CHANNELS, optional=True)
    _int_in("num_attention_heads_upsample", c["num_attention_heads_upsample"], 1, _MAX_CHANNELS, optional=True)
    _int_in("time_embedding_channels", c["time_embedding_channels"], 2, _MAX_CHANNELS, optional=True)
    blocks = c["block_out_channels"]
    if not isinstance(blocks, (list, tuple)) or not 1 <= len(blocks) <= _MAX_LEVELS:
        raise ValueError(f"block_out_channels must be a list of 1..{_MAX_LEVELS} channel counts, got {blocks!r}")
    for value in blocks:
        _int_in("block_out_channels", value, 1, _MAX_CHANNELS)
    factors = c["attention_downsample_factors"]
    if not isinstance(factors, (list, tuple)):
        raise ValueError(f"attention_downsample_factors must be a list, got {factors!r}")
    for value in factors:
        _int_in("attention_downsample_factors", value, 1, 2**_MAX_LEVELS)
    for name in ("dropout", "norm_eps"):
        value = c[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 <= c["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1), got {c['dropout']}")
    if not c["norm_eps"] > 0:
        raise ValueError(f"norm_eps must be positive, got {c['norm_eps']}")
    if not isinstance(c["instance_edge_channel"], bool):
        raise ValueError(f"instance_edge_channel must be true or false, got {c['instance_edge_channel']!r}")
    if c["downsample_type"] not in ("resnet", "conv", "pool"):
        raise ValueError(f"downsample_type must be 'resnet', 'conv' or 'pool', got {c['downsample_type']!r}")
    if c["upsample_type"] not in ("resnet", "conv", "nearest"):
        raise ValueError(f"upsample_type must be 'resnet', 'conv' or 'nearest', got {c['upsample_type']!r}")
    # The dominant weights (3x3 convs of the residual blocks), a lower bound on the parameter count.
    convs = 0
    previous = blocks[0]
    for channels in blocks:
        convs += 9 * (previous * channels + (2 * c["layers_per_block"] + 1) * channels * channels)
        convs += 9 * (3 * c["layers_per_block"] + 3) * channels * channels  # decoder, with skip inputs
        previous = channels
    if convs > MAX_PARAMETERS:
        raise ValueError(
            f"block_out_channels {tuple(blocks)} with {c['layers_per_block']} layers per block give more than "
            f"{convs / 1e9:.1f} G parameters, above the {MAX_PARAMETERS / 1e9:.0f} G a SPIC UNet may have"
        )


class SPICUNet2DModel(UNet2DModel, AttentionMixin):
    r"""
    Pixel-space UNet of SPIC, doubly conditioned on a coarse image and a semantic map.

    The coarse (low-resolution) image is bilinearly upsampled and concatenated to the noisy sample, so the
    first conv sees `in_channels + low_res_channels` channels. The encoder is plain (residual blocks with
    time-embedding scale-shift, attention at the configured down-sampling factors); the middle block and
    every decoder block use SPADE group norms driven by the one-hot semantic map. The output has
    `out_channels` channels: predicted noise, then (with 6 channels) the learned-variance interpolation values.

    Parameters:
        sample_size: Default `(height, width)` of the sample; any size divisible by
            `2 ** (len(block_out_channels) - 1)` works at run time.
        in_channels: Channels of the noisy sample.
        low_res_channels: Channels of the coarse image concatenated to the sample.
        out_channels: Output channels (`2 * in_channels` with learned variance).
        num_semantic_channels: Channels of the one-hot semantic map (19 Cityscapes train ids, 20 with the
            instance-edge channel).
        instance_edge_channel: Whether the last semantic channel is the instance-edge map (the original
            `--no_instance False`); pipelines then need an instance map.
        block_out_channels: Channels of each resolution level.
        layers_per_block: Residual blocks per encoder level (the decoder has one more per level).
        attention_downsample_factors: Down-sampling factors (1 = full resolution) whose levels use attention.
        attention_head_dim: Fixed channels per attention head; takes precedence over `num_attention_heads`.
        num_attention_heads: Fixed number of heads in the encoder and middle block (when no head width is set).
        num_attention_heads_upsample: Fixed number of heads in the decoder (defaults to `num_attention_heads`).
        downsample_type: `"resnet"` (residual block with average pooling), `"conv"` (strided conv) or `"pool"`.
        upsample_type: `"resnet"` (SPADE residual block with nearest up-sampling), `"conv"` or `"nearest"`.
        resnet_time_scale_shift: `"scale_shift"` (FiLM-like) or `"default"` (additive) time embedding.
        time_embedding_channels: Width of the sinusoidal timestep embedding (defaults to
            `block_out_channels[0]`); the embedding MLP is 4 times wider.
        dropout: Dropout inside residual blocks.
        norm_num_groups: Groups of every group norm.
        norm_eps: Epsilon of every group norm.
        spade_hidden_channels: Hidden channels of the SPADE conv net.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = (256, 512),
        in_channels: int = 3,
        low_res_channels: int = 3,
        out_channels: int = 6,
        num_semantic_channels: int = 19,
        instance_edge_channel: bool = False,
        block_out_channels: tuple[int, ...] = (256, 256, 512, 512, 1024, 1024),
        layers_per_block: int = 2,
        attention_downsample_factors: tuple[int, ...] = (8, 16, 32),
        attention_head_dim: int | None = 64,
        num_attention_heads: int | None = None,
        num_attention_heads_upsample: int | None = None,
        downsample_type: str = "resnet",
        upsample_type: str = "resnet",
        resnet_time_scale_shift: str = "scale_shift",
        time_embedding_channels: int | None = None,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        spade_hidden_channels: int = 128,
    ):
        # Skip UNet2DModel's constructor (a different architecture); keep its type for diffusers tooling.
        ModelMixin.__init__(self)
        validate_unet_config(dict(self.config))
        if isinstance(sample_size, str):  # a config holds numbers; "HxW" text is for command lines
            raise ValueError(f"sample_size must be an int or (height, width), got {sample_size!r}")
        as_hw(sample_size, "sample_size")
        if num_semantic_channels < 1 + int(instance_edge_channel):
            raise ValueError(f"num_semantic_channels={num_semantic_channels} leaves no class channel")
        if not block_out_channels:
            raise ValueError("block_out_channels must name at least one level")
        if layers_per_block < 1:
            raise ValueError(f"layers_per_block must be >= 1, got {layers_per_block}")
        if attention_head_dim is None and not num_attention_heads:
            raise ValueError("set attention_head_dim (channels per head) or num_attention_heads")
        if resnet_time_scale_shift not in ("default", "scale_shift"):
            raise ValueError(
                f"resnet_time_scale_shift must be 'default' or 'scale_shift', got {resnet_time_scale_shift!r}"
            )
        for ch in block_out_channels:
            if ch % norm_num_groups:
                raise ValueError(
                    f"block_out_channels {tuple(block_out_channels)} must be multiples of "
                    f"norm_num_groups={norm_num_groups}"
                )

        def heads(channels: int, upsample: bool) -> int:
            if attention_head_dim is not None:
                if channels % attention_head_dim:
                    raise ValueError(
                        f"{channels} channels are not divisible by attention_head_dim={attention_head_dim}"
                    )
                return channels // attention_head_dim
            return (num_attention_heads_upsample or num_attention_heads) if upsample else num_attention_heads

        time_channels = time_embedding_channels or block_out_channels[0]
        temb_channels = 4 * time_channels
        self.time_proj = Timesteps(time_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_channels, temb_channels)
        self.conv_in = nn.Conv2d(in_channels + low_res_channels, block_out_channels[0], kernel_size=3, padding=1)

        common = dict(temb_channels=temb_channels, resnet_time_scale_shift=resnet_time_scale_shift,
                      norm_num_groups=norm_num_groups, norm_eps=norm_eps, dropout=dropout)
        num_levels = len(block_out_channels)
        skip_channels = [block_out_channels[0]]
        channels = block_out_channels[0]
        self.down_blocks = nn.ModuleList()
        for level, out_ch in enumerate(block_out_channels):
            last = level == num_levels - 1
            self.down_blocks.append(SPICDownBlock2D(
                in_channels=channels, out_channels=out_ch, num_layers=layers_per_block,
                num_attention_heads=heads(out_ch, False) if 2 ** level in attention_downsample_factors else None,
                downsample_type=None if last else downsample_type, **common,
            ))
            channels = out_ch
            skip_channels += [out_ch] * (layers_per_block + (0 if last else 1))

        spade = dict(num_semantic_channels=num_semantic_channels, spade_hidden_channels=spade_hidden_channels)
        self.mid_block = SPICMidBlock2D(
            channels=channels, num_attention_heads=heads(channels, False), **spade, **common
        )

        self.up_blocks = nn.ModuleList()
        for level in reversed(range(num_levels)):
            out_ch = block_out_channels[level]
            in_channels_list = []
            for _ in range(layers_per_block + 1):
                in_channels_list.append(channels + skip_channels.pop())
                channels = out_ch
            self.up_blocks.append(SPICUpBlock2D(
                resnet_in_channels=in_channels_list, out_channels=out_ch,
                num_attention_heads=heads(out_ch, True) if 2 ** level in attention_downsample_factors else None,
                upsample_type=upsample_type if level > 0 else None, **spade, **common,
            ))

        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels, eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)

    def _attention_layers(self) -> list[Attention]:
        return [module for module in self.modules() if isinstance(module, Attention)]

    def fuse_qkv_projections(self) -> None:
        """Fuse each self-attention layer's query, key and value projections into one matrix product.

        Same outputs; one `[C, 3C]` projection instead of three `[C, C]` ones (see
        `benchmarks/bench_fuse_qkv.py`). `unfuse_qkv_projections()` goes back.
        """
        for layer in self._attention_layers():  # all self-attention (the middle block always has one)
            if getattr(layer, "fused_projections", False):
                continue
            layer.fuse_projections(fuse=True)
            layer.unfused_processor = layer.processor
            layer.set_processor(FusedAttnProcessor2_0())

    def unfuse_qkv_projections(self) -> None:
        """Undo `fuse_qkv_projections()`: separate q/k/v projections and the default SDPA processor."""
        for layer in self._attention_layers():
            if getattr(layer, "fused_projections", False):
                del layer.to_qkv  # the separate projections were kept; the fused copy must not be saved
                layer.fused_projections = False
                layer.set_processor(getattr(layer, "unfused_processor", None) or AttnProcessor2_0())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """`ModelMixin.from_pretrained`, but weights missing from the checkpoint are an error, not a warning.

        (diffusers leaves them uninitialised or on the meta device, which fails much later and obscurely.)
        """
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        missing = sorted(info.get("missing_keys") or [])
        mismatched = info.get("mismatched_keys") or []
        if missing:
            raise ValueError(
                f"{pretrained_model_name_or_path}: the checkpoint lacks {len(missing)} of the model's weights "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
            )
        if mismatched:
            raise ValueError(f"{pretrained_model_name_or_path}: weights of the wrong shape: {mismatched[:5]}")
        return (model, info) if want_info else model

    def to_json_string(self) -> str:
        """The saved config, without the folder it was loaded from (`_name_or_path`)."""
        return without_load_path(super().to_json_string())

    @property
    def size_multiple(self) -> int:
        """Height and width of a sample must be multiples of this."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def _check_inputs(self, sample, timestep, segmentation_map, low_res_image) -> None:
        """Types and shapes only. Checking values (NaN, ranges) here would wait on the device at every forward and
        break `torch.compile`'s graph; they are checked once, where inputs enter (`SPICPipeline.check_inputs`)."""
        cfg = self.config
        for name, tensor, channels in (
            ("sample", sample, cfg.in_channels),
            ("segmentation_map", segmentation_map, cfg.num_semantic_channels),
            ("low_res_image", low_res_image, cfg.low_res_channels),
        ):
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
            if tensor.ndim != 4:
                raise ValueError(
                    f"{name} must be a 4-D tensor [batch, {channels}, height, width], got shape {tuple(tensor.shape)}"
                )
            if tensor.shape[1] != channels:
                raise ValueError(f"{name} must have {channels} channels, got shape {tuple(tensor.shape)}")
            if not torch.is_floating_point(tensor):
                raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        batch, _, height, width = sample.shape
        if segmentation_map.shape[0] != batch or low_res_image.shape[0] != batch:
            raise ValueError(
                f"batch sizes differ: sample {batch}, segmentation_map {segmentation_map.shape[0]}, "
                f"low_res_image {low_res_image.shape[0]}"
            )
        if segmentation_map.shape[-2:] != sample.shape[-2:]:
            raise ValueError(
                f"segmentation_map must have the sample's size {height}x{width}, got "
                f"{segmentation_map.shape[-2]}x{segmentation_map.shape[-1]}"
            )
        m = self.size_multiple
        if height % m or width % m:
            raise ValueError(
                f"sample size {height}x{width} is not divisible by {m} (2 ** (levels - 1)); pad it to "
                f"{math.ceil(height / m) * m}x{math.ceil(width / m) * m}"
            )
        t = torch.as_tensor(timestep)
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, batch)):
            raise ValueError(f"timestep must be a scalar or a [{batch}] tensor, got shape {tuple(t.shape)}")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        segmentation_map: torch.Tensor,
        low_res_image: torch.Tensor,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple:
        r"""
        Args:
            sample: Noisy image `[B, in_channels, H, W]`.
            timestep: ORIGINAL diffusion timestep(s) (0..999 for the paper), a scalar or a `[B]` tensor.
            segmentation_map: One-hot semantic map `[B, num_semantic_channels, H, W]` (ignore = all zeros).
            low_res_image: Coarse image `[B, low_res_channels, h, w]` in [-1, 1], any size.
            return_dict: Return a `UNet2DOutput` instead of a tuple.
        """
        self._check_inputs(sample, timestep, segmentation_map, low_res_image)
        batch, _, height, width = sample.shape
        timesteps = torch.as_tensor(timestep, device=sample.device)
        if not torch.is_floating_point(timesteps):
            timesteps = timesteps.long()
        timesteps = timesteps.reshape(-1).expand(batch)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))

        upsampled = F.interpolate(low_res_image.to(sample.dtype), size=(height, width), mode="bilinear",
                                  align_corners=False)
        segmentation_map = segmentation_map.to(sample.dtype)
        hidden_states = self.conv_in(torch.cat([sample, upsampled], dim=1))

        skips = (hidden_states,)
        for block in self.down_blocks:
            hidden_states, block_skips = block(hidden_states, emb)
            skips += block_skips

        hidden_states = self.mid_block(hidden_states, emb, segmentation_map)

        for block in self.up_blocks:
            n = len(block.resnets)
            hidden_states = block(hidden_states, skips[-n:], emb, segmentation_map)
            skips = skips[:-n]

        hidden_states = self.conv_out(self.conv_act(self.conv_norm_out(hidden_states)))
        if not return_dict:
            return (hidden_states,)
        return UNet2DOutput(sample=hidden_states)
