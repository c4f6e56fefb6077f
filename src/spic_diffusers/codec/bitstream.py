"""The SPIC container: one versioned, checksummed byte string holding the map and the coarse image.

Layout (all integers are unsigned LEB128 varints unless noted)::

    magic        2 bytes  b"SP"
    version      1 byte   FORMAT_VERSION
    coders       1 byte   high nibble: map coder id, low nibble: coarse codec id
    height       varint   original image height
    width        varint   original image width
    downsample   varint   coarse image = area downsample of the original by this factor
    map_length   varint   bytes of the semantic-map payload
    inst_length  varint   version 2 only: bytes of the instance-edge payload
    map payload  map_length bytes
    instances    version 2 only: inst_length bytes, coded with the map coder
    coarse       the rest up to the trailer (its length is implied, so it is never stored)
    crc32        4 bytes  big-endian CRC-32 of every byte before it

Version 1 streams carry no instance information; :func:`pack_stream` writes version 2 only when
given an instance payload, so streams without one are unchanged.  A 256x512 image costs 13-14 bytes
of header and trailer.  The decoder checks the CRC before it looks at any payload and checks every
declared length against the bytes really present, so a damaged stream fails fast with
:class:`BitstreamError` instead of allocating or hanging.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


MAGIC = b"SP"
FORMAT_VERSION = 1
INSTANCE_FORMAT_VERSION = 2  # version 1 + an instance-edge payload after the map
READABLE_VERSIONS = (FORMAT_VERSION, INSTANCE_FORMAT_VERSION)
MAX_SIDE = 16384
MAX_PIXELS = 1 << 26
# What a receiver decodes unless told otherwise: Cityscapes' full 1024x2048 resolution.  Larger images
# are legal streams, but their decoding cost (time, memory) must be asked for explicitly.
DEFAULT_MAX_PIXELS = 1024 * 2048
MAX_DOWNSAMPLE = 64
_CRC_BYTES = 4

# Small, stable ids written into the stream; never renumber, only append.
MAP_CODER_IDS = {"context": 0, "png": 1, "webp": 2, "jxl": 3, "flif": 4, "context2": 5, "mix": 6}
COARSE_CODEC_IDS = {"hevc": 0, "bpg": 1, "heif": 2, "jxl": 3, "webp": 4, "avif": 5, "jpeg": 6}
MAP_CODER_NAMES = {v: k for k, v in MAP_CODER_IDS.items()}
COARSE_CODEC_NAMES = {v: k for k, v in COARSE_CODEC_IDS.items()}


class BitstreamError(ValueError):
    """A SPIC stream is malformed, damaged, truncated or of an unsupported version."""


class PixelBudgetError(ValueError):
    """A stream or input is valid but larger than the caller allows decoding or coding."""


class CodecUnavailableError(RuntimeError):
    """A codec needs an external tool or package that is not installed here."""


@dataclass(frozen=True)
class StreamHeader:
    """Everything the container states about a stream, parsed and validated."""

    height: int
    width: int
    downsample: int
    map_coder: str
    coarse_codec: str
    header_bytes: int
    map_bytes: int
    coarse_bytes: int
    total_bytes: int
    instance_bytes: int = 0
    version: int = FORMAT_VERSION


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int, name: str, max_bytes: int = 5) -> tuple[int, int]:
    """Read a varint at ``offset``; returns ``(value, new_offset)``. Bounded so it cannot run away."""
    value = 0
    for i in range(max_bytes):
        if offset + i >= len(data):
            raise BitstreamError(f"stream truncated while reading {name}")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise BitstreamError(f"non-canonical varint for {name}")
            return value, offset + i + 1
    raise BitstreamError(f"varint for {name} is longer than {max_bytes} bytes")


def check_dimensions(height: int, width: int, downsample: int) -> None:
    """Reject sizes a decoder must not allocate; raises BitstreamError."""
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"image size {height}x{width} is outside 1..{MAX_SIDE} per side")
    if height * width > MAX_PIXELS:
        raise BitstreamError(f"image size {height}x{width} exceeds the {MAX_PIXELS}-pixel limit")
    if not 1 <= downsample <= MAX_DOWNSAMPLE:
        raise BitstreamError(f"downsample factor {downsample} is outside 1..{MAX_DOWNSAMPLE}")


def check_pixel_budget(height: int, width: int, max_pixels: int | None, what: str = "the stream declares") -> None:
    """Refuse, before any payload or model work, an image above the caller's pixel budget.

    ``max_pixels=None`` lifts the budget (the container's hard limits still apply).
    """
    if max_pixels is None:
        return
    if not isinstance(max_pixels, (int,)) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if height * width > max_pixels:
        raise PixelBudgetError(
            f"{what} a {height}x{width} image ({height * width} pixels), above the budget of {max_pixels} "
            f"pixels; raise it with max_pixels= (spic: --max_pixels) if you mean to spend that"
        )


def pack_stream(
    *,
    height: int,
    width: int,
    downsample: int,
    map_coder: str,
    coarse_codec: str,
    map_payload: bytes,
    coarse_payload: bytes,
    instance_payload: bytes | None = None,
) -> bytes:
    """Assemble a stream from its parts (the inverse of :func:`split_stream`).

    With ``instance_payload`` (instance edges coded by the map coder) the stream is version 2.
    """
    try:
        check_dimensions(height, width, downsample)
    except BitstreamError as err:
        raise ValueError(str(err)) from None
    if map_coder not in MAP_CODER_IDS:
        raise ValueError(f"unknown map coder {map_coder!r}; choose from {sorted(MAP_CODER_IDS)}")
    if coarse_codec not in COARSE_CODEC_IDS:
        raise ValueError(f"unknown coarse codec {coarse_codec!r}; choose from {sorted(COARSE_CODEC_IDS)}")
    body = bytearray(MAGIC)
    body.append(FORMAT_VERSION if instance_payload is None else INSTANCE_FORMAT_VERSION)
    body.append((MAP_CODER_IDS[map_coder] << 4) | COARSE_CODEC_IDS[coarse_codec])
    lengths = [len(map_payload)] + ([] if instance_payload is None else [len(instance_payload)])
    for value in (height, width, downsample, *lengths):
        body += encode_varint(value)
    body += map_payload
    if instance_payload is not None:
        body += instance_payload
    body += coarse_payload
    body += zlib.crc32(body).to_bytes(_CRC_BYTES, "big")
    return bytes(body)


def _parse(stream: bytes) -> tuple[StreamHeader, int]:
    if not isinstance(stream, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a SPIC stream must be bytes, got {type(stream).__name__}")
    data = bytes(stream)
    if len(data) == 0:
        raise BitstreamError("empty stream")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a SPIC stream (wrong magic bytes)")
    if len(data) < len(MAGIC) + 2 + _CRC_BYTES:
        raise BitstreamError("stream truncated: shorter than the smallest possible header")
    version = data[2]
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"unsupported SPIC format version {version} (this decoder reads {READABLE_VERSIONS})")
    end = len(data) - _CRC_BYTES
    stored_crc = int.from_bytes(data[end:], "big")
    if zlib.crc32(data[:end]) != stored_crc:
        raise BitstreamError("CRC mismatch: the stream is damaged or truncated")
    coders = data[3]
    map_id, coarse_id = coders >> 4, coders & 0x0F
    if map_id not in MAP_CODER_NAMES:
        raise BitstreamError(f"unknown map coder id {map_id}")
    if coarse_id not in COARSE_CODEC_NAMES:
        raise BitstreamError(f"unknown coarse codec id {coarse_id}")
    offset = 4
    body = data[:end]
    height, offset = decode_varint(body, offset, "height")
    width, offset = decode_varint(body, offset, "width")
    downsample, offset = decode_varint(body, offset, "downsample factor")
    map_length, offset = decode_varint(body, offset, "map payload length")
    instance_length = 0
    if version == INSTANCE_FORMAT_VERSION:
        instance_length, offset = decode_varint(body, offset, "instance payload length")
        if instance_length == 0:
            raise BitstreamError("a version 2 stream must hold an instance payload")
    check_dimensions(height, width, downsample)
    if map_length > end - offset:
        raise BitstreamError(
            f"map payload length {map_length} exceeds the {end - offset} bytes left in the stream"
        )
    if instance_length > end - offset - map_length:
        raise BitstreamError(
            f"instance payload length {instance_length} exceeds the {end - offset - map_length} bytes left"
        )
    header = StreamHeader(
        height=height,
        width=width,
        downsample=downsample,
        map_coder=MAP_CODER_NAMES[map_id],
        coarse_codec=COARSE_CODEC_NAMES[coarse_id],
        header_bytes=offset + _CRC_BYTES,
        map_bytes=map_length,
        coarse_bytes=end - offset - map_length - instance_length,
        total_bytes=len(data),
        instance_bytes=instance_length,
        version=version,
    )
    return header, offset


def read_header(stream: bytes) -> StreamHeader:
    """Validate a stream (magic, version, CRC, sizes) and return its header."""
    return _parse(stream)[0]


def split_stream(stream: bytes) -> tuple[StreamHeader, bytes, bytes | None, bytes]:
    """Split a validated stream into ``(header, map_payload, instance_payload or None, coarse_payload)``."""
    header, offset = _parse(stream)
    data = bytes(stream)
    map_end = offset + header.map_bytes
    instance_end = map_end + header.instance_bytes
    instance_payload = data[map_end:instance_end] if header.version == INSTANCE_FORMAT_VERSION else None
    return header, data[offset:map_end], instance_payload, data[instance_end : len(data) - _CRC_BYTES]


def unpack_stream(stream: bytes) -> tuple[StreamHeader, bytes, bytes]:
    """Split a validated stream into ``(header, map_payload, coarse_payload)`` (instances left out)."""
    header, map_payload, _, coarse_payload = split_stream(stream)
    return header, map_payload, coarse_payload


def bpp_breakdown(stream: bytes) -> dict:
    """Bytes and bits per pixel of each part, over the pixel count of the original image.

    ``header`` includes the CRC trailer; the parts (``instances`` too, in streams that have them)
    add up exactly to ``total``.
    """
    header = read_header(stream)
    pixels = header.height * header.width
    parts = {"header": header.header_bytes, "map": header.map_bytes, "coarse": header.coarse_bytes}
    if header.version == INSTANCE_FORMAT_VERSION:
        parts["instances"] = header.instance_bytes
    parts["total"] = header.total_bytes
    return {
        "height": header.height,
        "width": header.width,
        "bytes": dict(parts),
        "bpp": {name: 8.0 * size / pixels for name, size in parts.items()},
    }


def bpp(stream: bytes, height: int | None = None, width: int | None = None) -> float:
    """Bits of the whole stream per pixel of the original ``height x width`` image.

    Height and width default to those stated in the stream's header.
    """
    if height is None or width is None:
        header = read_header(stream)
        height = header.height if height is None else height
        width = header.width if width is None else width
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    return 8.0 * len(stream) / (height * width)


def open_payload_image(data: bytes, label: str, height: int, width: int):
    """Open a payload with Pillow, checking the size the header implies *before* decoding any pixels.

    `label` names the payload in errors (e.g. "HEIF coarse", "PNG map"); every failure is a `BitstreamError`.
    """
    import io

    from PIL import Image

    try:
        image = Image.open(io.BytesIO(bytes(data)))
    except Exception as err:
        raise BitstreamError(f"{label} payload cannot be decoded ({err})") from None
    if image.size != (width, height):
        raise BitstreamError(
            f"{label} payload holds a {image.size[1]}x{image.size[0]} image, the header implies {height}x{width}"
        )
    try:
        image.load()
    except Exception as err:
        raise BitstreamError(f"{label} payload cannot be decoded ({err})") from None
    return image
