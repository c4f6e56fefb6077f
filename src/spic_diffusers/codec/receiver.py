"""The receiver: SPIC stream -> semantic map + coarse image -> ``SPICPipeline`` -> image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitstream import (
    DEFAULT_MAX_PIXELS,
    BitstreamError,
    CodecUnavailableError,
    check_pixel_budget,
    read_header,
    unpack_stream,
)
from .coarse import coarse_size, get_coarse_codec
from .semantic import get_map_coder


@dataclass
class DecodedParts:
    """What a stream holds, decoded: everything the diffusion model is conditioned on."""

    semantic_map: np.ndarray  # uint8 HxW train ids, 255 = ignore, at full resolution
    coarse_image: np.ndarray  # uint8 hxwx3, h x w = coarse_size(H, W, downsample)
    height: int
    width: int
    downsample: int
    map_coder: str
    coarse_codec: str


def decode_parts(stream: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedParts:
    """Validate a stream and decode its map and coarse image (no diffusion model involved).

    Raises :class:`BitstreamError` for anything wrong with the stream, including payloads that
    pass the CRC but do not decode to the sizes the header states, and :class:`PixelBudgetError`
    (before any payload is touched) when the stream declares more than ``max_pixels`` pixels
    (``None``: no budget beyond the container's limits).
    """
    header, map_payload, coarse_payload = unpack_stream(stream)
    check_pixel_budget(header.height, header.width, max_pixels)
    small_h, small_w = coarse_size(header.height, header.width, header.downsample)
    try:
        semantic_map = get_map_coder(header.map_coder).decode(map_payload, header.height, header.width)
        coarse_image = get_coarse_codec(header.coarse_codec).decode(coarse_payload, small_h, small_w)
    except BitstreamError:
        raise
    except CodecUnavailableError as err:
        raise BitstreamError(f"cannot decode this stream here: {err}") from None
    except Exception as err:  # a codec library failing on a payload is a property of the stream
        raise BitstreamError(f"payload cannot be decoded ({type(err).__name__}: {err})") from None
    if semantic_map.shape != (header.height, header.width) or semantic_map.dtype != np.uint8:
        raise BitstreamError(f"decoded map has shape {semantic_map.shape}, expected {(header.height, header.width)}")
    if coarse_image.shape != (small_h, small_w, 3) or coarse_image.dtype != np.uint8:
        raise BitstreamError(f"decoded coarse image has shape {coarse_image.shape}, expected {(small_h, small_w, 3)}")
    return DecodedParts(
        semantic_map=semantic_map,
        coarse_image=coarse_image,
        height=header.height,
        width=header.width,
        downsample=header.downsample,
        map_coder=header.map_coder,
        coarse_codec=header.coarse_codec,
    )


def decode(stream: bytes, pipeline, max_pixels: int | None = DEFAULT_MAX_PIXELS, **sampling_kwargs):
    """Decode a stream and reconstruct the image with a ``SPICPipeline``.

    ``sampling_kwargs`` go to the pipeline call (``num_inference_steps``, ``guidance_scale``,
    ``generator``, ...).  The map and the coarse image are passed at their decoded sizes; the
    pipeline adapts them to its model.  ``max_pixels`` bounds what the stream may ask for, checked
    with the pipeline's memory estimate before any payload is decoded.  Returns a ``PIL.Image``.
    """
    for key in ("segmentation_map", "low_res_image", "output_type", "return_dict"):
        if key in sampling_kwargs:
            raise ValueError(f"{key!r} comes from the stream and cannot be passed to decode()")
    header = read_header(stream)
    check_pixel_budget(header.height, header.width, max_pixels)
    check_memory = getattr(pipeline, "check_memory", None)
    if check_memory is not None:
        check_memory(header.height, header.width, guidance_scale=sampling_kwargs.get("guidance_scale", 1.5))
    parts = decode_parts(stream, max_pixels=max_pixels)
    output = pipeline(
        parts.semantic_map, parts.coarse_image, output_type="pil", return_dict=True, max_pixels=max_pixels,
        **sampling_kwargs,
    )  # fmt: skip
    return output.images[0]
