"""`SPICPipeline`: the SPIC receiver (semantic map + coarse image -> image)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..codec.bitstream import DEFAULT_MAX_PIXELS, check_pixel_budget
from ..config_files import without_load_path
from ..dtypes import DTYPES, parse_dtype
from ..image_processing import image_to_tensor, instance_edges, labels_to_tensor, pad_to_multiple, semantic_channels
from ..memory import available_memory
from ..models.unet_spic import SPICUNet2DModel
from .folder_checks import START_NOISE_MODES, ModelFolderError, check_pipeline_folder
from .registration import register_with_diffusers
from .scheduling_spic_ddim import SPICDDIMScheduler, exact_ddim

GUIDANCE_BATCHING = ("auto", "batched", "sequential")
# `from_pretrained` arguments that only say where a Hub id's files come from, and those that also pick the files.
_HUB_KEYS = ("revision", "token", "cache_dir", "local_files_only", "force_download", "proxies")
_FILE_KEYS = ("variant", "use_safetensors")

# Schedulers that pass the generic checks but do not sample this model correctly.
_UNSUPPORTED_SCHEDULERS = {
    "PNDMScheduler": "is not supported: on SPIC's truncated schedule it returns saturated images (only 0 or 1); "
    "use ddim, dpmsolver++ or unipc",
}


def unsupported_scheduler_reason(scheduler: SchedulerMixin) -> str | None:
    """Why this kind of scheduler cannot sample SPIC, whatever its config (None when it can); checked by the
    command line before a model is loaded."""
    name = type(scheduler).__name__
    if name.startswith("FlowMatch") or not hasattr(scheduler, "scale_model_input"):
        return (f"{name} samples flow-matching models, which predict a velocity between noise and image; the SPIC "
                "model predicts DDPM noise: use ddpm, ddim, dpmsolver++, unipc, euler, heun, lcm or tcd")
    if name in _UNSUPPORTED_SCHEDULERS:
        return f"{name} {_UNSUPPORTED_SCHEDULERS[name]}"
    return None


def default_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The paper's process: linear betas over 1000 steps, learned-range variance, clipped x0, linspace spacing."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="linear",
        beta_start=0.0001,
        beta_end=0.02,
        variance_type="learned_range",
        clip_sample=True,
        prediction_type="epsilon",
        timestep_spacing="linspace",
    )


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 autocast pays on `device`: CUDA GPUs that support it, CPUs with AVX512-BF16 or AMX. Elsewhere
    torch emulates bf16 and a UNet evaluation takes tens of times longer than in fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return _cpu_has_native_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    """Read once: every pipeline call with a saved `default_unet_dtype` asks."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class SPICPipeline(DiffusionPipeline):
    r"""
    Reconstructs images from a semantic map and a coarse image (the SPIC receiver).

    Defaults follow the paper: 100-step linspace spacing of 1000 steps, starting from the upsampled coarse
    image at the first visited timestep <= 200 (no noise added), classifier-free guidance s = 1.5 on the noise,
    learned variance. Any diffusers scheduler predicting epsilon can be swapped in with
    `pipe.scheduler = X.from_config(pipe.scheduler.config)`.

    Args:
        unet: The denoiser.
        scheduler: A diffusers scheduler (DDPM with learned-range variance by default).
        default_timesteps: Timesteps a call visits when given neither `timesteps` nor `num_inference_steps`
            (a distilled few-step student saves its schedule here).
        default_guidance_scale: Guidance scale of a call that passes none (1.5 when unset; a student with
            guidance distilled into it saves 1.0, one pass per step).
        default_start_noise: `start_noise` of a call that passes none ("none" when unset, the paper; a student
            distilled from a forward-noised start saves "forward").
        default_unet_dtype: `unet_dtype` of a call that passes none, applied only where it pays ("bf16" on CPUs
            with native bf16 and on GPUs that support it, "fp16" on GPUs); elsewhere the UNet runs in its own
            dtype. A fast student saves "bf16": it is what holds its decode to a few seconds on a CPU.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["sample"]

    def __init__(
        self,
        unet: SPICUNet2DModel,
        scheduler: SchedulerMixin,
        default_timesteps: list[int] | None = None,
        default_guidance_scale: float | None = None,
        default_start_noise: str | None = None,
        default_unet_dtype: str | None = None,
    ):
        super().__init__()
        if default_start_noise is not None and default_start_noise not in START_NOISE_MODES:
            raise ValueError(f"default_start_noise must be one of {START_NOISE_MODES}, got {default_start_noise!r}")
        if default_unet_dtype is not None and default_unet_dtype not in DTYPES:
            raise ValueError(f"default_unet_dtype must be one of {sorted(DTYPES)}, got {default_unet_dtype!r}")
        self.register_modules(unet=unet, scheduler=exact_ddim(scheduler))
        if default_timesteps is not None:
            default_timesteps = [int(t) for t in default_timesteps]
        self.register_to_config(default_timesteps=default_timesteps, default_guidance_scale=default_guidance_scale,
                                default_start_noise=default_start_noise, default_unet_dtype=default_unet_dtype)

    def __setattr__(self, name: str, value: Any) -> None:
        # `pipe.scheduler = DDIMScheduler.from_config(...)` samples with SPIC's exact-predecessor DDIM (a
        # `DDIMScheduler` subclass): diffusers' own steps to the wrong timestep on SPIC's uneven schedules.
        if name == "scheduler":
            value = exact_ddim(value)
        super().__setattr__(name, value)

    def compile(self, **kwargs: Any) -> "SPICPipeline":
        """Compile the UNet's forward in place with `torch.compile(fullgraph=True)`; `kwargs` go to `torch.compile`
        (e.g. `mode="max-autotune"`, `dynamic=True`).

        The first call of each input shape, dtype and memory format pays the compilation; later ones run the
        compiled graph (see `benchmarks/bench_compile.py`). On a CPU, inductor needs a C++ compiler.
        """
        kwargs.setdefault("fullgraph", True)
        self.unet.compile(**kwargs)
        return self

    # Read by the denoising loop at every step, so a `callback_on_step_end` may change them mid-run
    # (e.g. `pipe._guidance_scale = 0.0` after some steps: the "CFG cut-off" recipe).
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the next step runs the unconditional pass too (guidance scale above 1)."""
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        """Steps the current (or last) call visits, after truncation at `max_timestep`."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` in a callback to stop after the current step."""
        return self._interrupt

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "SPICPipeline":
        """diffusers' `from_pretrained` for a local folder or a Hub id (fetched by diffusers' own `download`), with
        the folder's JSON checked (`check_pipeline_folder`) before anything is built from it."""
        path = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            download_kwargs = {k: kwargs.pop(k) for k in _HUB_KEYS if k in kwargs}
            download_kwargs.update({k: kwargs[k] for k in _FILE_KEYS if k in kwargs})  # also pick the files to load
            try:
                path = cls.download(path, **download_kwargs)
            except Exception as err:
                raise OSError(
                    f"could not find {pretrained_model_name_or_path!r} as a local folder or fetch it from the Hub "
                    f"({type(err).__name__}: {err})"
                ) from err
        check_pipeline_folder(path)
        try:
            return super().from_pretrained(path, **kwargs)
        except (OSError, ValueError):
            raise
        except Exception as err:  # noqa: BLE001  (diffusers reports many folder problems as other errors)
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ModelFolderError(f"{path}: cannot build the pipeline ({type(err).__name__}: {detail})") from None

    def to_json_string(self) -> str:
        """The saved `model_index.json`, without the folder the pipeline was loaded from (`_name_or_path`)."""
        return without_load_path(super().to_json_string())

    # ------------------------------------------------------------------ inputs

    @property
    def num_classes(self) -> int:
        """Number of semantic classes (the one-hot channels minus the instance-edge channel, if any)."""
        return self.unet.config.num_semantic_channels - int(self.unet.config.instance_edge_channel)

    def prepare_segmentation_map(self, segmentation_map, instance_map=None) -> torch.Tensor:
        """Label map (255 = ignore) or one-hot [B,C,H,W] (+ instance map) -> the model's float one-hot map."""
        channels = self.unet.config.num_semantic_channels
        if isinstance(segmentation_map, torch.Tensor) and torch.is_floating_point(segmentation_map):
            if segmentation_map.ndim != 4 or segmentation_map.shape[1] != channels:
                raise ValueError(
                    f"a one-hot segmentation_map must be [B, {channels}, H, W] for this model, got "
                    f"{tuple(segmentation_map.shape)}"
                )
            if not torch.isfinite(segmentation_map).all():
                raise ValueError("segmentation_map contains NaN or infinite values")
            if instance_map is not None:
                raise ValueError("instance_map is only used with a label map; the one-hot map already has its edges")
            return segmentation_map.float()
        labels = labels_to_tensor(segmentation_map)
        edges = None
        if self.unet.config.instance_edge_channel:
            if instance_map is None:
                raise ValueError("this model expects an instance-edge channel: pass instance_map")
            instances = labels_to_tensor(instance_map, name="instance_map")
            if instances.shape != labels.shape:
                raise ValueError(
                    f"instance_map shape {tuple(instances.shape)} differs from segmentation_map {tuple(labels.shape)}"
                )
            edges = instance_edges(instances)
        elif instance_map is not None:
            raise ValueError("this model has no instance-edge channel: instance_map must be None")
        return semantic_channels(labels, self.num_classes, edges)

    def check_sizes(self, segmentation_map: torch.Tensor, low_res_image: torch.Tensor) -> None:
        batch, height, width = segmentation_map.shape[0], *segmentation_map.shape[-2:]
        if low_res_image.shape[0] != batch:
            raise ValueError(
                f"mismatched batch sizes: segmentation_map has {batch}, low_res_image has {low_res_image.shape[0]}"
            )
        low_h, low_w = low_res_image.shape[-2:]
        if low_h > height or low_w > width:
            raise ValueError(
                f"low_res_image ({low_h}x{low_w}) is larger than the segmentation map ({height}x{width}): the map "
                "sets the output size and must be full resolution"
            )
        # The two must cover the same scene: aspect ratios equal up to rounding of the downsampled size.
        if abs(low_h * width - low_w * height) > max(height, width):
            raise ValueError(
                f"aspect ratios disagree: segmentation_map is {height}x{width}, low_res_image is {low_h}x{low_w}"
            )

    def estimate_memory_bytes(
        self, height: int, width: int, batch_size: int = 1, guidance_scale: float = 1.5, include_parameters: bool = True
    ) -> int:
        """A rough estimate of the memory one sampling step needs at ``height x width``.

        Parameters, the skip activations the UNet keeps per level, the working tensors of one block and
        the full-size inputs (one-hot map, SPADE hidden map, sample, coarse image).  Attention runs through
        ``scaled_dot_product_attention``, whose fused kernels do not hold the score matrix.
        """
        cfg = self.unet.config
        batch = batch_size * (2 if guidance_scale > 1 else 1)
        element = torch.finfo(self.unet.dtype).bits // 8
        multiple = self.unet.size_multiple
        height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        params = sum(p.numel() for p in self.unet.parameters()) * element if include_parameters else 0
        activations = 0
        for level, channels in enumerate(cfg.block_out_channels):
            pixels = (height >> level) * (width >> level)
            activations += (2 * cfg.layers_per_block + 6) * channels * pixels
        full = height * width
        inputs = (cfg.num_semantic_channels + cfg.spade_hidden_channels + 4 * cfg.in_channels) * full
        return int(params + batch * element * (activations + inputs))

    def check_memory(self, height: int, width: int, batch_size: int = 1, guidance_scale: float = 1.5) -> None:
        """Refuse, before any work, a size whose estimated memory exceeds what the execution device has free."""
        # The weights are already where they run: only what sampling adds must fit in the free memory.
        needed = self.estimate_memory_bytes(height, width, batch_size, guidance_scale, include_parameters=False)
        available = available_memory(self._execution_device)
        if available is not None and needed > available:
            raise ValueError(
                f"reconstructing {height}x{width} needs about {needed / 2**30:.1f} GiB, but only "
                f"{available / 2**30:.1f} GiB is free on {self._execution_device}: use a smaller image or a "
                "device with more memory"
            )

    # ---------------------------------------------------------------- schedule

    def _variance_type(self) -> str | None:
        # `from_config` carries keys over even to schedulers that ignore them: trust only real parameters.
        if "variance_type" not in inspect.signature(type(self.scheduler).__init__).parameters:
            return None
        return self.scheduler.config.get("variance_type")

    def check_scheduler(self) -> None:
        """Fail early, with the reason, for schedulers that cannot run this model."""
        scheduler = self.scheduler
        for attr in ("set_timesteps", "step", "timesteps"):
            if not hasattr(scheduler, attr):
                raise ValueError(f"{type(scheduler).__name__} is not a diffusers sampling scheduler (no `{attr}`)")
        prediction = scheduler.config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(
                f"{type(scheduler).__name__} is configured with prediction_type={prediction!r}; the SPIC model "
                "predicts the noise: use prediction_type='epsilon'"
            )
        if self._variance_type() == "learned":
            raise ValueError(
                "variance_type='learned' expects a log-variance; the SPIC model outputs learned-range values: "
                "use variance_type='learned_range' (or a scheduler without learned variance)"
            )
        problem = unsupported_scheduler_reason(scheduler)
        if problem is not None:
            raise ValueError(problem)
        if not hasattr(scheduler, "alphas_cumprod") and not hasattr(scheduler, "sigmas"):
            raise ValueError(f"{type(scheduler).__name__} has no discrete noise schedule to drive a DDPM model")

    def unet_evaluations(self, guidance_scale=None, num_inference_steps=None, max_timestep: int | None = 200,
                         timesteps: Sequence[int] | None = None) -> int:
        """How many UNet forwards a call with these settings makes (two per step under guidance > 1): what a
        decode costs, known before it starts."""
        guidance_scale, num_inference_steps, timesteps = self.resolve_sampling_defaults(
            guidance_scale, num_inference_steps, timesteps)
        steps = len(self.get_timesteps(num_inference_steps, max_timestep, timesteps, self._execution_device))
        return steps * (2 if guidance_scale > 1 else 1)

    def estimate_decode_seconds(self, height: int, width: int, evaluations: int, unet_dtype=None) -> float:
        """Seconds `evaluations` UNet forwards take at `height` x `width` here: two are timed (the first pays the
        one-off kernel set-up), the rest are extrapolated from the second."""
        first = self.time_unet_evaluation(height, width, unet_dtype)
        if evaluations <= 1:
            return first
        return first + (evaluations - 1) * self.time_unet_evaluation(height, width, unet_dtype)

    @torch.no_grad()
    def time_unet_evaluation(self, height: int, width: int, unet_dtype=None) -> float:
        """Wall seconds of one UNet forward at `height` x `width` as a call would run it (dtype, memory format)."""
        import time

        device = self._execution_device
        channels = self.unet.config.num_semantic_channels + int(bool(self.unet.config.instance_edge_channel))
        multiple = self.unet.size_multiple
        height, width = (-(-side // multiple) * multiple for side in (height, width))
        sample = torch.zeros(1, self.unet.config.in_channels, height, width, device=device)
        segmap = torch.zeros(1, channels, height, width, device=device)
        low_res = torch.zeros(1, self.unet.config.low_res_channels, height, width, device=device)
        channels_last = device.type == "cpu"
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        start = time.perf_counter()
        self._run_unet(sample, 100, segmap, low_res, self.resolve_unet_dtype(unet_dtype), channels_last)
        return time.perf_counter() - start

    def get_timesteps(
        self, num_inference_steps: int, max_timestep: int | None, timesteps: Sequence[int] | None, device
    ) -> torch.Tensor:
        """Set the scheduler up and return the timesteps to visit, highest first."""
        scheduler = self.scheduler
        num_train = scheduler.config.num_train_timesteps
        if timesteps is not None:
            ts = sorted({int(t) for t in timesteps}, reverse=True)
            if len(ts) != len(list(timesteps)):
                raise ValueError("timesteps must not repeat")
            if not ts or ts[0] >= num_train or ts[-1] < 0:
                raise ValueError(f"timesteps must be within 0..{num_train - 1}, got {list(timesteps)}")
            if "timesteps" not in inspect.signature(scheduler.set_timesteps).parameters:
                raise ValueError(f"{type(scheduler).__name__} does not accept explicit timesteps")
            try:
                scheduler.set_timesteps(timesteps=ts, device=device)
            except Exception as err:
                raise ValueError(f"{type(scheduler).__name__} rejected timesteps {ts}: {err}") from err
            all_ts = scheduler.timesteps
        else:
            if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= num_train:
                raise ValueError(f"num_inference_steps must be an int in 1..{num_train}, got {num_inference_steps!r}")
            _set_spacing(scheduler, num_inference_steps, device)
            all_ts = scheduler.timesteps
        if max_timestep is None:
            return all_ts
        if not 0 <= max_timestep < num_train:
            raise ValueError(f"max_timestep must be within 0..{num_train - 1} or None, got {max_timestep}")
        keep = (all_ts <= max_timestep).nonzero()
        if len(keep) == 0:
            raise ValueError(
                f"no scheduled timestep is <= max_timestep={max_timestep} with num_inference_steps="
                f"{num_inference_steps if timesteps is None else len(timesteps)}; "
                + self._working_step_counts(max_timestep)
            )
        order = getattr(scheduler, "order", 1)
        begin = int(keep[0])
        if order > 1 and begin % order:  # second-order schedulers repeat timesteps: start on a full step
            begin += order - begin % order
        if begin >= len(all_ts):
            raise ValueError(
                f"no full step of {type(scheduler).__name__} starts at or below {max_timestep}; "
                + self._working_step_counts(max_timestep)
            )
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)
        return all_ts[begin:]

    def _working_step_counts(self, max_timestep: int, shown: int = 3) -> str:
        """Say which `num_inference_steps` put a full step at or below `max_timestep` for this scheduler."""
        probe = type(self.scheduler).from_config(self.scheduler.config)
        order = getattr(probe, "order", 1)
        found = []
        for steps in range(1, probe.config.num_train_timesteps + 1):
            _set_spacing(probe, steps, "cpu")
            keep = (probe.timesteps <= max_timestep).nonzero()
            if len(keep) == 0:
                continue
            begin = int(keep[0])
            begin += (order - begin % order) % order if order > 1 else 0
            if begin < len(probe.timesteps):
                found.append(steps)
                if len(found) == shown:
                    break
        name = type(self.scheduler).__name__
        if not found:
            return f"no num_inference_steps of {name} reaches t <= {max_timestep}; raise max_timestep"
        return (f"with {name}, num_inference_steps={found[0]} works (also {', '.join(map(str, found[1:]))}, ...), "
                f"or raise max_timestep")

    # ------------------------------------------------------------------ model

    def _run_unet(self, sample, timestep, segmentation_map, low_res_image, unet_dtype=None, channels_last=False):
        """One UNet forward in the model's (or `unet_dtype`'s autocast) precision; the output comes back fp32.

        Keeping the latents and the scheduler in fp32 confines the rounding of bf16/fp16 to the network.
        """
        dtype = self.unet.dtype
        inputs = [x.to(dtype) for x in (sample, segmentation_map, low_res_image)]
        if channels_last:
            inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
        sample, segmentation_map, low_res_image = inputs
        if unet_dtype is not None and unet_dtype != dtype:
            with torch.autocast(sample.device.type, dtype=unet_dtype):
                out = self.unet(sample, timestep, segmentation_map, low_res_image).sample
        else:
            out = self.unet(sample, timestep, segmentation_map, low_res_image).sample
        return out.float()

    def resolve_unet_dtype(self, unet_dtype: torch.dtype | str | None = None) -> torch.dtype | None:
        """A call's `unet_dtype`: as given (`"fp32"` means none), else the saved default where the device runs it
        natively (bf16: CPUs with AVX512-BF16 or AMX, and GPUs; fp16: GPUs), else None (the UNet's own dtype)."""
        if unet_dtype is None:
            saved = parse_dtype(self.config.get("default_unet_dtype"))
            device = self._execution_device
            if saved == torch.bfloat16 and native_bf16(device):
                unet_dtype = saved
            elif saved == torch.float16 and device.type == "cuda":
                unet_dtype = saved
        return parse_dtype(unet_dtype)

    def resolve_guidance_batching(self, guidance_batching: str = "auto") -> str:
        """`"auto"`: the two guidance passes run one after the other on a CPU (faster there, and half the
        activation memory) and as one batch of two on an accelerator (better use of the device)."""
        if guidance_batching not in GUIDANCE_BATCHING:
            raise ValueError(f"guidance_batching must be one of {GUIDANCE_BATCHING}, got {guidance_batching!r}")
        if guidance_batching == "auto":
            return "sequential" if self._execution_device.type == "cpu" else "batched"
        return guidance_batching

    @torch.no_grad()
    def guided_model_output(
        self,
        sample: torch.Tensor,
        timestep: int | torch.Tensor,
        segmentation_map: torch.Tensor,
        low_res_image: torch.Tensor,
        guidance_scale: float = 1.5,
        guidance_batching: str = "batched",
        unet_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> torch.Tensor:
        """The model output (fp32) with classifier-free guidance on the noise channels.

        The unconditional pass uses an all-zero semantic map and the same coarse image; both passes run as one
        batched forward or, with `guidance_batching="sequential"`, as two forwards of the batch (the same
        numbers). Variance channels (if any) come from the conditional pass.
        """
        batch = sample.shape[0]
        run = lambda *args: self._run_unet(*args, unet_dtype=unet_dtype, channels_last=channels_last)  # noqa: E731
        if guidance_scale > 1:
            if self.resolve_guidance_batching(guidance_batching) == "sequential":
                cond = run(sample, timestep, segmentation_map, low_res_image)
                uncond = run(sample, timestep, torch.zeros_like(segmentation_map), low_res_image)
            else:
                out = run(
                    torch.cat([sample, sample]),
                    timestep,
                    torch.cat([segmentation_map, torch.zeros_like(segmentation_map)]),
                    torch.cat([low_res_image, low_res_image]),
                )
                cond, uncond = out[:batch], out[batch:]
            c = self.unet.config.in_channels
            eps = uncond[:, :c] + guidance_scale * (cond[:, :c] - uncond[:, :c])
            return torch.cat([eps, cond[:, c:]], dim=1)
        return run(sample, timestep, segmentation_map, low_res_image)

    def resolve_sampling_defaults(self, guidance_scale, num_inference_steps, timesteps):
        """Fill what the call left unset from the saved defaults (a student's schedule), else the paper's."""
        if guidance_scale is None:
            saved = self.config.get("default_guidance_scale")
            guidance_scale = 1.5 if saved is None else float(saved)
        if timesteps is None and num_inference_steps is None and self.config.get("default_timesteps"):
            timesteps = list(self.config.default_timesteps)
        if num_inference_steps is None:
            num_inference_steps = self.default_spacing()
        return guidance_scale, num_inference_steps, timesteps

    def default_spacing(self) -> int:
        """The spacing a call that passes none uses: the paper's 100, or the scheduler's own where it has one.

        LCM and TCD pick their steps from an `original_inference_steps` grid (50 by default), so their spacing
        follows that grid rather than the paper's.
        """
        own = _original_inference_steps(self.scheduler)
        return 100 if own is None else own

    # ------------------------------------------------------------------- call

    def check_inputs(
        self,
        segmentation_map,
        guidance_scale: float,
        start_noise: str,
        max_timestep: int | None,
        output_type: str,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        latents: torch.Tensor | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
    ) -> None:
        """Refuse a call before any work: the options, the requested size (pixel budget and memory) and the values
        of `latents`.

        This is where values are checked, once per call: the UNet's forward checks shapes only, so that
        `torch.compile` takes it whole. The segmentation map and coarse image are checked (finite, in range) as
        they are converted (`prepare_segmentation_map`, `image_to_tensor`).
        """
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}")
        if start_noise not in START_NOISE_MODES:
            raise ValueError(f"start_noise must be one of {START_NOISE_MODES}, got {start_noise!r}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
                or not np.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback tensor input {name!r} is not one of {self._callback_tensor_inputs}")
        size = _input_size(segmentation_map)
        if size is not None:
            check_pixel_budget(*size, max_pixels, what="the segmentation map asks for")
            self.check_memory(*size, guidance_scale=guidance_scale)
        if latents is not None:
            if max_timestep is not None and start_noise == "none":
                raise ValueError(
                    "latents (the initial noise) are unused: this call starts from the coarse image as is; pass "
                    "start_noise='forward' (noised to the first timestep) or max_timestep=None (pure noise)"
                )
            if not isinstance(latents, torch.Tensor) or not torch.is_floating_point(latents):
                what = latents.dtype if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise ValueError(f"latents must be a floating-point tensor, got {what}")
            if not torch.isfinite(latents).all():
                raise ValueError("latents contain NaN or infinite values")
        self.check_scheduler()

    def prepare_latents(
        self,
        low_res_image: torch.Tensor,
        shape: tuple[int, int, int, int],
        timesteps: torch.Tensor,
        start_noise: str = "none",
        max_timestep: int | None = 200,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The sample the denoising loop starts from (fp32, on the coarse image's device).

        With `max_timestep=None`: noise (`latents`, else drawn) scaled by the scheduler's `init_noise_sigma`. Else the
        coarse image upsampled to `shape`: forward-noised to `timesteps[0]` with that noise when
        `start_noise="forward"`, as is otherwise (the paper: the coarse image is x_t).
        """
        device, dtype = low_res_image.device, torch.float32
        noise = None
        if latents is not None:
            if tuple(latents.shape) != tuple(shape):
                raise ValueError(
                    f"latents must have shape {tuple(shape)} (batch, channels, height, width of the model's sample: "
                    f"the segmentation map's size rounded up to a multiple of {self.unet.size_multiple}), got "
                    f"{tuple(latents.shape)}"
                )
            noise = latents.to(device=device, dtype=dtype)
        elif max_timestep is None or start_noise == "forward":
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if max_timestep is None:
            return noise * getattr(self.scheduler, "init_noise_sigma", 1.0)
        start = F.interpolate(low_res_image.to(dtype), size=shape[-2:], mode="bilinear", align_corners=False)
        first = timesteps[:1]
        if start_noise == "forward":
            return self.scheduler.add_noise(start, noise, first.repeat(shape[0]))
        # The coarse image IS x_t in DDPM space; schedulers in sigma space (Euler, Heun) scale it.
        scale = self.scheduler.scale_model_input(torch.ones(1, device=device, dtype=dtype), first[0])
        return start / scale

    def prepare_extra_step_kwargs(self, generator, eta: float | None) -> dict[str, Any]:
        """The `scheduler.step` arguments this scheduler takes: `eta` (DDIM's, TCD's; when given) and `generator`."""
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if eta is not None and "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    @torch.no_grad()
    def __call__(
        self,
        segmentation_map,
        low_res_image,
        instance_map=None,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        max_timestep: int | None = 200,
        start_noise: str | None = None,
        timesteps: Sequence[int] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
        eta: float | None = None,
        pad_to_multiple_of_model: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        unet_dtype: torch.dtype | str | None = None,
        guidance_batching: str = "auto",
        channels_last: bool | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Args:
            segmentation_map: Train-id label map(s) (PIL / numpy / LongTensor `[B,H,W]`, 255 = ignore) or a float
                one-hot tensor `[B,C,H,W]`. Sets the output size.
            low_res_image: Decoded coarse image(s) (PIL / numpy / tensor `[B,3,h,w]` in [-1, 1]).
            instance_map: Instance ids, for models with an instance-edge channel.
            guidance_scale: Classifier-free guidance scale s; `<= 1` runs the conditional pass only. Default: the
                saved `default_guidance_scale`, else 1.5 (the paper).
            num_inference_steps: Spacing of the schedule (the paper: 100 over 1000 steps). When neither this nor
                `timesteps` is given, a saved `default_timesteps` schedule is used, else 100.
            max_timestep: Start at the first scheduled timestep <= this; `None` starts from pure noise at the top.
            start_noise: `"none"` uses the upsampled coarse image as is (the paper); `"forward"` noises it to the
                start timestep first. Default: the saved `default_start_noise`, else "none".
            timesteps: Explicit original timesteps to visit (overrides the spacing; `max_timestep` still applies).
            generator: Random generator(s) for reproducibility.
            latents: The initial noise `[B, in_channels, H, W]` (the model's sample size: the map's size rounded up
                to the model's multiple), used instead of drawing it: the start with `max_timestep=None` or
                `start_noise="forward"`. Same latents, same settings and a deterministic sampler: the same image.
            output_type: `"pil"`, `"np"` (HWC in [0, 1]), `"pt"` (`[B,3,H,W]` in [0, 1]) or `"latent"` (the final
                sample as the loop left it, `[B,3,H,W]` in the model's [-1, 1] scale, unclamped, on the device).
            return_dict: Return an `ImagePipelineOutput` instead of a tuple.
            callback_on_step_end: `fn(pipe, step, timestep, callback_kwargs) -> dict` after every step; may
                replace `"sample"`, and may set `pipe._guidance_scale` (read at every step) or `pipe._interrupt`.
            callback_on_step_end_tensor_inputs: Tensors passed in `callback_kwargs`.
            eta: Passed to schedulers whose `step` takes it (DDIM's eta, TCD's gamma); `None` keeps the scheduler's
                default (DDIM: 0, deterministic).
            pad_to_multiple_of_model: Pad sizes the UNet cannot take and crop the result back.
            max_pixels: Refuse outputs above this many pixels (per image) before any work; `None` lifts the
                budget. The memory estimate of the requested size is checked against the device either way.
            unet_dtype: Run the UNet under autocast in this dtype (`torch.bfloat16` or `"bf16"` works on CPU too,
                and pays only on CPUs with native bf16: AVX512-BF16 or AMX); `"fp32"` forces full precision.
                Default: the saved `default_unet_dtype` where it pays, else the UNet's own dtype (a UNet loaded
                with `torch_dtype=` runs in it). The latents and the scheduler's arithmetic stay fp32 either way.
            guidance_batching: `"batched"` runs both guidance passes as one forward of twice the batch,
                `"sequential"` as two forwards (identical numbers). `"auto"` (default) picks sequential on a CPU,
                where it measured faster and needs half the activation memory, and batched on accelerators.
            channels_last: Run the UNet in channels-last memory format (converts `pipe.unet` in place). Default:
                on a CPU, where it saves the layout copies around every convolution (2.4x faster for a bf16 forward
                at 360x480 on one thread); not on accelerators.
        """
        guidance_scale, num_inference_steps, timesteps = self.resolve_sampling_defaults(
            guidance_scale, num_inference_steps, timesteps
        )
        if start_noise is None:
            start_noise = self.config.get("default_start_noise") or "none"
        self.check_inputs(segmentation_map, guidance_scale, start_noise, max_timestep, output_type, max_pixels,
                          latents, callback_on_step_end_tensor_inputs)
        unet_dtype = self.resolve_unet_dtype(unet_dtype)
        guidance_batching = self.resolve_guidance_batching(guidance_batching)
        if channels_last is None:
            channels_last = self._execution_device.type == "cpu"
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False

        device, dtype = self._execution_device, torch.float32  # latents stay fp32; _run_unet casts for the UNet
        segmap = self.prepare_segmentation_map(segmentation_map, instance_map)
        low_res = image_to_tensor(low_res_image)
        self.check_sizes(segmap, low_res)
        batch = segmap.shape[0]
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch}")

        multiple = self.unet.size_multiple
        height, width = segmap.shape[-2:]
        if height % multiple or width % multiple:
            if not pad_to_multiple_of_model:
                raise ValueError(
                    f"the model needs sizes divisible by {multiple}, got {height}x{width}; pass "
                    "pad_to_multiple_of_model=True to pad and crop back"
                )
            # Upsample the coarse image to the true size first, so padding does not stretch it.
            low_res = F.interpolate(low_res, size=(height, width), mode="bilinear", align_corners=False)
            low_res, _ = pad_to_multiple(low_res, multiple)
            segmap, _ = pad_to_multiple(segmap, multiple)
        segmap = segmap.to(device=device, dtype=dtype)
        low_res = low_res.to(device=device, dtype=dtype)
        shape = (batch, self.unet.config.in_channels, *segmap.shape[-2:])

        ts = self.get_timesteps(num_inference_steps, max_timestep, timesteps, device)
        self._num_timesteps = len(ts)
        sample = self.prepare_latents(low_res, shape, ts, start_noise, max_timestep, generator, latents)

        learned_variance = self._variance_type() in ("learned_range",)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        for i, t in enumerate(self.progress_bar(ts)):
            if self._interrupt:
                break
            model_input = self.scheduler.scale_model_input(sample, t)
            output = self.guided_model_output(
                model_input, t, segmap, low_res, self._guidance_scale, guidance_batching, unet_dtype, channels_last
            )
            if not learned_variance:
                output = output[:, : self.unet.config.in_channels]
            sample = self.scheduler.step(output, t, sample, **extra_step_kwargs).prev_sample
            if callback_on_step_end is not None:
                available = {"sample": sample}
                callback_kwargs = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                result = callback_on_step_end(self, i, t, callback_kwargs) or {}
                sample = result.get("sample", sample)

        if output_type == "latent":
            images = sample[..., :height, :width]
        else:
            image = (sample[..., :height, :width].float().clamp(-1, 1) + 1) / 2
            if output_type == "pt":
                images = image.cpu()
            else:
                images = image.cpu().permute(0, 2, 3, 1).numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def _original_inference_steps(scheduler) -> int | None:
    """The `original_inference_steps` grid of schedulers that sample from one (LCM, TCD), else None."""
    if "original_inference_steps" not in inspect.signature(scheduler.set_timesteps).parameters:
        return None
    return int(scheduler.config.get("original_inference_steps") or 50)


def _set_spacing(scheduler, num_inference_steps: int, device) -> None:
    """`scheduler.set_timesteps(num_inference_steps)` with SPIC's meaning: a spacing over the training steps.

    LCM and TCD choose their steps from a grid of `original_inference_steps`; a spacing finer than that grid
    widens the grid to it, so every count from 1 to the number of training steps gives evenly spaced steps.
    """
    own = _original_inference_steps(scheduler)
    if own is not None and num_inference_steps > own:
        scheduler.set_timesteps(num_inference_steps, device=device, original_inference_steps=num_inference_steps)
    else:
        scheduler.set_timesteps(num_inference_steps, device=device)


def _input_size(segmentation_map) -> tuple[int, int] | None:
    """(height, width) of a segmentation map input, read without converting it."""
    if isinstance(segmentation_map, (list, tuple)):
        if not segmentation_map:
            return None
        segmentation_map = segmentation_map[0]
    if isinstance(segmentation_map, PIL.Image.Image):
        width, height = segmentation_map.size
        return height, width
    shape = getattr(segmentation_map, "shape", None)
    if shape is None or len(shape) < 2:
        return None
    return int(shape[-2]), int(shape[-1])


# `DiffusionPipeline.from_pretrained` resolves SPIC folders and Hub repos to these classes (see `registration`).
register_with_diffusers(SPICPipeline, (SPICUNet2DModel, SPICDDIMScheduler))
