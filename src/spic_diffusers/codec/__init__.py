"""SPIC's codec: the transmitter (image -> stream), the container, and the receiver (stream -> image)."""

from .bitstream import (
    DEFAULT_MAX_PIXELS,
    FORMAT_VERSION,
    MAX_PIXELS,
    MAX_SIDE,
    BitstreamError,
    CodecUnavailableError,
    PixelBudgetError,
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
    COARSE_FALLBACKS,
    DEFAULT_COARSE_CODEC,
    DEFAULT_COARSE_QUALITY,
    CoarseCodec,
    area_downsample,
    coarse_size,
    get_coarse_codec,
    make_coarse,
    select_coarse_codec,
)
from .receiver import DecodedParts, decode, decode_parts
from .map_context import PixelContextMapCoder
from .map_coders import DEFAULT_MAP_CODER, MAP_CODERS, get_map_coder
from .semantic import ContextMapCoder, MapCoder
from .transmitter import RateFit, Segmenter, encode, encode_to_rate


__all__ = [
    "BitstreamError",
    "CodecUnavailableError",
    "COARSE_CODECS",
    "COARSE_FALLBACKS",
    "DEFAULT_COARSE_CODEC",
    "DEFAULT_COARSE_QUALITY",
    "CoarseCodec",
    "ContextMapCoder",
    "DecodedParts",
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "DEFAULT_MAP_CODER",
    "MAP_CODERS",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MapCoder",
    "PixelBudgetError",
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
    "select_coarse_codec",
    "split_stream",
    "unpack_stream",
]
