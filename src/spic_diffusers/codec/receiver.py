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
    split_stream,
)
from .coarse import coarse_size, get_coarse_codec
from .instances import decode_instance_edges
from .map_coders import get_map_coder


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
    instance_edges: np.ndarray | None = None  # bool HxW, in streams that carry instances (version 2)


def decode_parts(stream: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedParts:
    """Validate a stream and decode its map and coarse image (no diffusion model involved).

    Raises :class:`BitstreamError` for anything wrong with the stream, including payloads that
    pass the CRC but do not decode to the sizes the header states, and :class:`PixelBudgetError`
    (before any payload is touched) when the stream declares more than ``max_pixels`` pixels
    (``None``: no budget beyond the container's limits).
    """
    header, map_payload, instance_payload, coarse_payload = split_stream(stream)
    check_pixel_budget(header.height, header.width, max_pixels)
    small_h, small_w = coarse_size(header.height, header.width, header.downsample)
    edges = None
    try:
        coder = get_map_coder(header.map_coder)
        semantic_map = coder.decode(map_payload, header.height, header.width)
        if instance_payload is not None:
            edges = decode_instance_edges(instance_payload, semantic_map, coder)
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
        instance_edges=edges,
    )


def decode(stream: bytes, pipeline, max_pixels: int | None = DEFAULT_MAX_PIXELS, **sampling_kwargs):
    """Decode a stream and reconstruct the image with a ``SPICPipeline``.

    ``sampling_kwargs`` go to the pipeline call (``num_inference_steps``, ``guidance_scale``,
    ``generator``, ...).  The map and the coarse image are passed at their decoded sizes; the
    pipeline adapts them to its model.  A model with an instance-edge channel gets the stream's
    instance edges (the stream must carry them); other models ignore them.  ``max_pixels`` bounds what the
    stream may ask for, checked with the pipeline's memory estimate before any payload is decoded.  Returns a
    ``PIL.Image``.
    """
    for key in ("segmentation_map", "low_res_image", "instance_map", "output_type", "return_dict"):
        if key in sampling_kwargs:
            raise ValueError(f"{key!r} comes from the stream and cannot be passed to decode()")
    header = read_header(stream)
    check_pixel_budget(header.height, header.width, max_pixels)
    check_memory = getattr(pipeline, "check_memory", None)
    if check_memory is not None:
        check_memory(header.height, header.width, guidance_scale=sampling_kwargs.get("guidance_scale", 1.5))
    parts = decode_parts(stream, max_pixels=max_pixels)
    segmentation = parts.semantic_map
    if getattr(pipeline.unet.config, "instance_edge_channel", False):
        if parts.instance_edges is None:
            raise ValueError(
                "this model expects instance edges, but the stream carries none: encode with instance_map=..."
            )
        segmentation = _one_hot_with_edges(parts.semantic_map, parts.instance_edges, pipeline.num_classes)
    output = pipeline(
        segmentation, parts.coarse_image, output_type="pil", return_dict=True, max_pixels=max_pixels,
        **sampling_kwargs,
    )  # fmt: skip
    return output.images[0]


def _one_hot_with_edges(labels: np.ndarray, edges: np.ndarray, num_classes: int):
    """[1, C + 1, H, W] float: the one-hot map and the instance-edge channel, as the pipeline builds it."""
    from ..image_processing import labels_to_tensor, semantic_channels

    return semantic_channels(labels_to_tensor(labels), num_classes, edges[None])
