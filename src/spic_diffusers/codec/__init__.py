"""SPIC's codec: the transmitter (image -> stream), the container, and the receiver (stream -> image)."""

from .bitstream import (
    FORMAT_VERSION,
    MAX_PIXELS,
    MAX_SIDE,
    BitstreamError,
    CodecUnavailableError,
    StreamHeader,
    bpp,
    bpp_breakdown,
    pack_stream,
    read_header,
    split_stream,
    unpack_stream,
)
from .coarse import (
    COARSE_CODECS,
    CoarseCodec,
    area_downsample,
    coarse_size,
    get_coarse_codec,
    make_coarse,
)
from .receiver import DecodedParts, decode, decode_parts
from .map_context import PixelContextMapCoder
from .semantic import MAP_CODERS, ContextMapCoder, MapCoder, get_map_coder
from .transmitter import RateFit, Segmenter, encode, encode_to_rate


__all__ = [
    "BitstreamError",
    "CodecUnavailableError",
    "COARSE_CODECS",
    "CoarseCodec",
    "ContextMapCoder",
    "DecodedParts",
    "FORMAT_VERSION",
    "MAP_CODERS",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MapCoder",
    "PixelContextMapCoder",
    "RateFit",
    "Segmenter",
    "StreamHeader",
    "area_downsample",
    "bpp",
    "bpp_breakdown",
    "coarse_size",
    "decode",
    "decode_parts",
    "encode",
    "encode_to_rate",
    "get_coarse_codec",
    "get_map_coder",
    "make_coarse",
    "pack_stream",
    "read_header",
    "split_stream",
    "unpack_stream",
]
