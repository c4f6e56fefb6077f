"""Fuzzing the decoder front end: damaged streams raise BitstreamError, never anything else."""

import functools
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spic_diffusers.codec import BitstreamError, PixelBudgetError, coarse_size, decode_parts, encode


def _scene(height: int, width: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[: height // 3] = 10
    labels[height // 3 : height // 2] = 2
    for _ in range(4):
        y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
        labels[y : y + rng.integers(2, 9), x : x + rng.integers(2, 15)] = rng.choice([5, 13, 255])
    image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    return image, labels


# (map coder, coarse codec, with instances)
FAST = (
    ("context", "jpeg", False), ("context", "webp", False), ("png", "jpeg", False), ("webp", "avif", False),
    ("jxl", "jxl", False), ("context2", "jpeg", False), ("context2", "webp", False), ("context2", "jpeg", True),
    ("mix", "jpeg", False), ("mix", "webp", True),
    ("context", "webp", True),
)  # fmt: skip
SLOW = (("context", "hevc", False), ("context", "heif", False))


@functools.cache
def _stream(map_coder: str, coarse_codec: str, with_instances: bool = False) -> bytes:
    """One valid stream per configuration, made on first use (never while pytest collects)."""
    image, labels = _scene(24, 40, (FAST + SLOW).index((map_coder, coarse_codec, with_instances)))
    instances = None
    if with_instances:  # two touching instances of one class: a boundary the semantic map lacks
        labels[8:16, 4:20] = 13
        instances = labels.astype(np.int64)
        instances[8:16, 4:12], instances[8:16, 12:20] = 13000, 13001
    return encode(image, labels, map_coder=map_coder, coarse_codec=coarse_codec, coarse_quality=None,
                  instance_map=instances)  # fmt: skip


def _streams(configs) -> st.SearchStrategy[bytes]:
    return st.deferred(lambda: st.sampled_from([_stream(*config) for config in configs]))


@st.composite
def mutations(draw, streams):
    stream = bytearray(draw(streams))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice"]))
        if kind == "truncate":
            stream = stream[: draw(st.integers(0, len(stream)))]
        elif not stream:
            stream = bytearray(draw(st.binary(max_size=8)))
        elif kind == "flip":
            position = draw(st.integers(0, len(stream) - 1))
            stream[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            position = draw(st.integers(0, len(stream) - 1))
            stream[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            position = draw(st.integers(0, len(stream)))
            stream[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            start = draw(st.integers(0, len(stream) - 1))
            del stream[start : start + draw(st.integers(1, 16))]
        else:
            start = draw(st.integers(0, len(stream)))
            stream[start:] = draw(st.binary(max_size=64))
    # Half of the cases re-seal the CRC, so the header checks and payload decoders are reached.
    if draw(st.booleans()) and len(stream) > 4:
        body = bytes(stream[:-4])
        stream = bytearray(body + zlib.crc32(body).to_bytes(4, "big"))
    return bytes(stream)


def _check(stream: bytes) -> None:
    start = time.monotonic()
    try:
        parts = decode_parts(stream)
    except (BitstreamError, PixelBudgetError) as err:
        assert str(err)
    else:
        assert parts.semantic_map.shape == (parts.height, parts.width)
        assert parts.semantic_map.dtype == np.uint8
        assert parts.coarse_image.shape == (*coarse_size(parts.height, parts.width, parts.downsample), 3)
    assert time.monotonic() - start < 10, "decoding a damaged stream took too long"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations(_streams(FAST)))
def test_fuzz_in_process_codecs(stream):
    _check(stream)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(_streams(SLOW)))
def test_fuzz_hevc_and_heif(stream):
    _check(stream)


@pytest.mark.parametrize("config", FAST + SLOW, ids=lambda c: "-".join(map(str, c)))
def test_unmutated_streams_decode(config):
    parts = decode_parts(_stream(*config))
    assert parts.semantic_map.shape == (24, 40) and parts.coarse_image.shape == (6, 10, 3)


def test_non_bytes_input_is_a_bitstream_error():
    with pytest.raises(BitstreamError):
        decode_parts("SP not bytes")
