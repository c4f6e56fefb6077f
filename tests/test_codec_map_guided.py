"""The map coder that reads the coarse image (context3): round trips, stream versions, hostile payloads."""

import time

import numpy as np
import pytest

from spic_diffusers.codec import (
    BitstreamError,
    CoarseGuide,
    GuidedMapCoder,
    area_downsample,
    coarse_size,
    decode_parts,
    encode,
    get_coarse_codec,
    get_map_coder,
    pack_stream,
    read_header,
    split_stream,
)
from spic_diffusers.codec.map_guided import MODE_HEVC, MODE_PLAIN, coarse_guide
from spic_diffusers.data.synthetic import make_scene


def _scene_guide(height=64, width=128, seed=0, chroma="444"):
    """A synthetic scene, its map, and the guide its real HEVC coarse image gives."""
    scene = make_scene(height, width, seed)
    payload = get_coarse_codec("hevc", 35, chroma=chroma).encode(area_downsample(scene.image, 4))
    return scene, payload, coarse_guide("hevc", payload, height, width, 4)


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_hevc_planes_are_the_picture_the_rgb_decoder_shows(chroma):
    scene = make_scene(40, 72, 1)
    small = area_downsample(scene.image, 4)
    codec = get_coarse_codec("hevc", 35, chroma=chroma)
    payload = codec.encode(small)
    luma, cb, cr = codec.decode_planes(payload, *small.shape[:2])
    sub = 2 if chroma == "420" else 1
    assert luma.shape == small.shape[:2] and cb.shape == cr.shape == (-(-10 // sub), -(-18 // sub))
    rgb = codec.decode(payload, *small.shape[:2]).astype(np.float64)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert np.corrcoef(grey.ravel(), luma.ravel())[0, 1] > 0.95
    assert all(np.array_equal(a, b) for a, b in zip((luma, cb, cr), codec.decode_planes(payload, *small.shape[:2])))


def test_guided_round_trip_and_the_mode_byte():
    scene, _, guide = _scene_guide()
    coder = GuidedMapCoder()
    guided, plain = coder.encode(scene.semantic_map, guide), coder.encode(scene.semantic_map)
    assert guided[0] == MODE_HEVC and plain[0] == MODE_PLAIN and guided != plain
    assert np.array_equal(coder.decode(guided, 64, 128, guide), scene.semantic_map)
    assert np.array_equal(coder.decode(plain, 64, 128), scene.semantic_map)
    assert plain[1:] == get_map_coder("context2").encode(scene.semantic_map)  # mode 0 is context2's payload
    with pytest.raises(BitstreamError, match="planes, which are missing"):
        coder.decode(guided, 64, 128)
    with pytest.raises(BitstreamError, match="unknown mode"):
        coder.decode(bytes([7]) + plain[1:], 64, 128)
    with pytest.raises(ValueError, match="map's size"):
        coder.encode(scene.semantic_map[:32], guide)


def test_guided_round_trip_odd_sizes_and_single_labels():
    for height, width in ((1, 1), (5, 129), (33, 17)):
        scene_image = (np.random.default_rng(height).random((height, width, 3)) * 255).astype(np.uint8)
        labels = np.random.default_rng(width).choice(np.array([0, 7, 255], np.uint8), (height, width))
        payload = get_coarse_codec("hevc", 35).encode(area_downsample(scene_image, 4))
        guide = coarse_guide("hevc", payload, height, width, 4)
        coder = GuidedMapCoder()
        for semantic_map in (labels, np.full((height, width), 9, np.uint8)):
            assert np.array_equal(coder.decode(coder.encode(semantic_map, guide), height, width, guide), semantic_map)


def test_the_colour_model_pays_where_colour_says_where_objects_begin():
    """Maps whose objects appear with no hint in the causal neighbourhood, in a colour of their own."""
    rng = np.random.default_rng(0)
    height, width = 128, 256
    labels = np.zeros((height, width), np.uint8)
    image = np.full((height, width, 3), 90, np.uint8)
    for _ in range(60):
        y, x, h, w = rng.integers(0, height - 12), rng.integers(0, width - 12), *rng.integers(6, 12, 2)
        labels[y : y + h, x : x + w] = 13
        image[y : y + h, x : x + w] = (220, 40, 40)
    payload = get_coarse_codec("hevc", 35).encode(area_downsample(image, 4))
    guide = coarse_guide("hevc", payload, height, width, 4)
    coder = GuidedMapCoder()
    assert len(coder.encode(labels, guide)) < len(coder.encode(labels))


def test_default_streams_use_the_guided_coder_with_hevc_only():
    scene = make_scene(48, 80, 2)
    stream = encode(scene.image, scene.semantic_map)
    header = read_header(stream)
    assert (header.version, header.map_coder, header.coarse_codec) == (3, "context3", "hevc")
    assert split_stream(stream)[1][0] == MODE_HEVC
    assert np.array_equal(decode_parts(stream).semantic_map, scene.semantic_map)
    with_instances = encode(scene.image, scene.semantic_map, instance_map=scene.semantic_map.astype(np.int64))
    assert read_header(with_instances).version == 4
    assert np.array_equal(decode_parts(with_instances).semantic_map, scene.semantic_map)
    other = encode(scene.image, scene.semantic_map, coarse_codec="jpeg")
    assert (read_header(other).version, read_header(other).map_coder) == (1, "context2")
    asked = encode(scene.image, scene.semantic_map, coarse_codec="jpeg", map_coder="context3")
    assert read_header(asked).version == 3 and split_stream(asked)[1][0] == MODE_PLAIN
    assert np.array_equal(decode_parts(asked).semantic_map, scene.semantic_map)
    old = encode(scene.image, scene.semantic_map, map_coder="context2")  # version 1 streams still decode
    assert read_header(old).version == 1 and np.array_equal(decode_parts(old).semantic_map, scene.semantic_map)


def _repack(stream: bytes, **changes) -> bytes:
    header, map_payload, instances, coarse = split_stream(stream)
    fields = dict(height=header.height, width=header.width, downsample=header.downsample, map_coder=header.map_coder,
                  coarse_codec=header.coarse_codec, map_payload=map_payload, coarse_payload=coarse,
                  instance_payload=instances)  # fmt: skip
    fields.update(changes)
    return pack_stream(**fields)


def test_versions_and_coders_must_agree():
    scene = make_scene(32, 48, 3)
    stream = encode(scene.image, scene.semantic_map)
    body = bytearray(stream[:-4])
    body[2] = 1  # a version 1 stream naming context3
    import zlib

    with pytest.raises(BitstreamError, match="cannot appear in a version 1 stream"):
        decode_parts(bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "big"))
    old = encode(scene.image, scene.semantic_map, map_coder="context2")
    body = bytearray(old[:-4])
    body[2] = 3
    with pytest.raises(BitstreamError, match="cannot appear in a version 3 stream"):
        decode_parts(bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "big"))


def test_a_guided_map_needs_the_hevc_coarse_payload_it_was_coded_with():
    scene = make_scene(32, 64, 4)
    stream = encode(scene.image, scene.semantic_map)
    jpeg = get_coarse_codec("jpeg").encode(area_downsample(scene.image, 4))
    with pytest.raises(BitstreamError, match="coded with an HEVC coarse image"):
        decode_parts(_repack(stream, coarse_codec="jpeg", coarse_payload=jpeg))
    other = encode(make_scene(32, 64, 5).image, scene.semantic_map)  # another HEVC picture: the check fails
    with pytest.raises(BitstreamError):
        decode_parts(_repack(stream, coarse_payload=split_stream(other)[3]))


def test_damaged_guided_payloads_fail_fast():
    scene, _, guide = _scene_guide(seed=6)
    coder = GuidedMapCoder()
    payload = coder.encode(scene.semantic_map, guide)
    rng = np.random.default_rng(0)
    for cut in (1, 2, len(payload) // 2, len(payload) - 1):
        with pytest.raises(BitstreamError):
            coder.decode(payload[:cut], 64, 128, guide)
    for _ in range(20):
        damaged = bytearray(payload)
        damaged[rng.integers(2, len(payload))] ^= 1 << int(rng.integers(0, 8))
        start = time.monotonic()
        try:
            decoded = coder.decode(bytes(damaged), 64, 128, guide)
        except BitstreamError:
            pass
        else:
            assert decoded.shape == (64, 128)
        assert time.monotonic() - start < 5


def test_guide_checks_its_planes():
    with pytest.raises(ValueError, match="three uint8 planes"):
        CoarseGuide.from_planes([np.zeros((4, 4), np.float32)] * 3, 16, 16)
    planes = [np.full(coarse_size(16, 16, 4), 128, np.uint8)] * 3
    assert CoarseGuide.from_planes(planes, 16, 16).cell.shape == (16, 16)
