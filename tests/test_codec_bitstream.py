"""The SPIC container: layout, bpp accounting and rejection of damaged streams."""

import zlib

import numpy as np
import pytest

from spic_diffusers.codec import (
    FORMAT_VERSION,
    MAX_SIDE,
    BitstreamError,
    bpp,
    bpp_breakdown,
    decode_parts,
    encode,
    pack_stream,
    read_header,
    unpack_stream,
)
from spic_diffusers.codec.bitstream import decode_varint, encode_varint


def fix_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


def sample_stream(height=256, width=512, map_payload=b"M" * 900, coarse_payload=b"C" * 700):
    return pack_stream(
        height=height,
        width=width,
        downsample=4,
        map_coder="context",
        coarse_codec="hevc",
        map_payload=map_payload,
        coarse_payload=coarse_payload,
    )


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16384, 2**28, 2**35 - 1])
def test_varint_round_trip(value):
    data = encode_varint(value)
    assert decode_varint(data + b"tail", 0, "x", max_bytes=6) == (value, len(data))


def test_pack_unpack_and_small_header():
    stream = sample_stream()
    header, map_payload, coarse_payload = unpack_stream(stream)
    assert (header.height, header.width, header.downsample) == (256, 512, 4)
    assert (header.map_coder, header.coarse_codec) == ("context", "hevc")
    assert map_payload == b"M" * 900 and coarse_payload == b"C" * 700
    assert header.header_bytes <= 16
    assert header.header_bytes + header.map_bytes + header.coarse_bytes == len(stream)


def test_bpp_is_file_bits_over_original_pixels():
    stream = sample_stream()
    assert bpp(stream, 256, 512) == 8 * len(stream) / (256 * 512)
    assert bpp(stream) == bpp(stream, 256, 512)
    breakdown = bpp_breakdown(stream)
    assert breakdown["bytes"]["map"] == 900 and breakdown["bytes"]["coarse"] == 700
    parts = breakdown["bpp"]
    assert parts["header"] + parts["map"] + parts["coarse"] == pytest.approx(parts["total"])
    assert parts["total"] == pytest.approx(8 * len(stream) / (256 * 512))


def test_real_stream_header_overhead():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 512, 3)).astype(np.uint8)
    labels = np.zeros((256, 512), dtype=np.uint8)
    labels[128:] = 1
    stream = encode(image, labels, coarse_codec="jpeg", coarse_quality=10)
    assert bpp_breakdown(stream)["bytes"]["header"] <= 16
    parts = decode_parts(stream)
    np.testing.assert_array_equal(parts.semantic_map, labels)


@pytest.mark.parametrize(
    "stream, message",
    [
        (b"", "empty"),
        (b"XX\x01\x00abcdefgh", "magic"),
        (b"S", "magic"),
        (b"SP\x01", "truncated"),
    ],
)
def test_obviously_bad_streams(stream, message):
    with pytest.raises(BitstreamError, match=message):
        read_header(stream)


def test_wrong_version_is_named():
    body = bytearray(sample_stream()[:-4])
    body[2] = 3  # versions 1 and 2 exist
    with pytest.raises(BitstreamError, match="version"):
        read_header(fix_crc(bytes(body)))


def test_truncation_and_bit_flips_fail_the_crc():
    stream = sample_stream()
    for cut in (len(stream) - 1, len(stream) // 2, 10):
        with pytest.raises(BitstreamError):
            read_header(stream[:cut])
    for position in (4, 20, len(stream) - 2):
        flipped = bytearray(stream)
        flipped[position] ^= 0x10
        with pytest.raises(BitstreamError, match="CRC"):
            read_header(bytes(flipped))


def test_oversized_dimensions_are_rejected_before_allocating():
    body = b"SP" + bytes([FORMAT_VERSION, 0x00]) + encode_varint(MAX_SIDE + 1) + encode_varint(8)
    body += encode_varint(4) + encode_varint(0)
    with pytest.raises(BitstreamError, match="outside"):
        decode_parts(fix_crc(body))
    body = b"SP" + bytes([FORMAT_VERSION, 0x00]) + encode_varint(MAX_SIDE) + encode_varint(MAX_SIDE)
    body += encode_varint(4) + encode_varint(0)
    with pytest.raises(BitstreamError, match="limit"):
        decode_parts(fix_crc(body))


def test_declared_length_beyond_the_data_is_rejected():
    body = b"SP" + bytes([FORMAT_VERSION, 0x00]) + encode_varint(8) + encode_varint(8)
    body += encode_varint(4) + encode_varint(2**30) + b"abc"
    with pytest.raises(BitstreamError, match="exceeds"):
        decode_parts(fix_crc(body))


def test_unknown_coder_ids_and_runaway_varints():
    body = b"SP" + bytes([FORMAT_VERSION, 0xF0]) + b"\x08\x08\x04\x00"
    with pytest.raises(BitstreamError, match="map coder id"):
        read_header(fix_crc(body))
    body = b"SP" + bytes([FORMAT_VERSION, 0x00]) + b"\xff" * 12
    with pytest.raises(BitstreamError, match="varint"):
        read_header(fix_crc(body))


def test_valid_crc_over_garbage_payload_is_a_bitstream_error():
    for coarse in ("jpeg", "webp", "hevc", "heif"):
        stream = pack_stream(
            height=32,
            width=64,
            downsample=4,
            map_coder="png",
            coarse_codec=coarse,
            map_payload=b"not a png",
            coarse_payload=b"\x00\x00\x00\x01 not an image",
        )
        with pytest.raises(BitstreamError):
            decode_parts(stream)


def test_pack_rejects_bad_parameters():
    with pytest.raises(ValueError):
        sample_stream(height=0)
    with pytest.raises(ValueError, match="unknown map coder"):
        pack_stream(
            height=1, width=1, downsample=1, map_coder="gif", coarse_codec="hevc", map_payload=b"", coarse_payload=b""
        )
