"""The map coder context4 (banded wavefronts, a shipped prior): round trips, its prior, stream versions 3 and 4."""

import time
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spic_diffusers.codec import BitstreamError, decode_parts, encode, get_map_coder, pack_stream, read_header
from spic_diffusers.codec.instances import label_edges
from spic_diffusers.codec.map_coders import DEFAULT_MAP_CODER
from spic_diffusers.codec.map_prior import (
    BAND_HEIGHT,
    NEIGHBOURS,
    PRIOR_DIGEST,
    SKEW,
    PriorContextMapCoder,
    PriorError,
    _BandLayout,
    load_prior,
    prior_digest,
)
from spic_diffusers.data.synthetic import make_scene, make_street_map


def _real_maps():
    """The CamVid test annotations shipped with the demo (train ids), at their size and at 256x512."""
    folder = Path(str(resources.files("spic_diffusers").joinpath("assets", "camvid_frames")))
    maps = [np.array(Image.open(path)) for path in sorted(folder.glob("*_labelTrainIds.png"))]
    assert maps
    return maps + [np.array(Image.fromarray(m).resize((512, 256), Image.NEAREST)) for m in maps]


def _ragged_map(height, width, seed):
    labels = make_street_map(height, width, seed).copy()
    rng = np.random.default_rng(seed)
    jitter = (rng.random(labels.shape) < 0.3) & label_edges(labels)
    labels[jitter] = np.roll(labels, 1, axis=1)[jitter]
    return labels


def test_every_neighbour_is_decoded_before_its_pixel():
    assert all(dx + SKEW * dy < 0 for dy, dx in NEIGHBOURS)


@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (70, 1), (5, 129), (63, 3), (64, 65), (65, 2), (200, 33)])
def test_band_layout_places_every_pixel_once(shape):
    layout = _BandLayout(*shape)
    labels = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape)
    buffer = layout.to_buffer(labels, -1)
    assert np.array_equal(layout.from_buffer(buffer), labels)
    visited = np.concatenate([layout.wavefront(t) for t in range(layout.steps)])
    assert len(visited) == len(np.unique(visited)) == layout.strips * layout.height * layout.strip_width
    assert layout.height <= BAND_HEIGHT


@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (70, 1), (5, 129), (33, 64), (64, 65), (130, 40)])
def test_round_trip_odd_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    labels = rng.choice(np.array([0, 7, 13, 255], dtype=np.uint8), size=shape)
    coder = PriorContextMapCoder()
    assert np.array_equal(coder.decode(coder.encode(labels), *shape), labels)


@pytest.mark.parametrize("num_labels", [1, 2, 40, 256])
def test_round_trip_label_counts(num_labels):
    rng = np.random.default_rng(num_labels)
    values = rng.permutation(256)[:num_labels].astype(np.uint8)
    labels = np.repeat(values[rng.integers(0, num_labels, size=(20, 16))], 4, axis=1)
    labels.reshape(-1)[:num_labels] = values
    coder = PriorContextMapCoder()
    assert np.array_equal(coder.decode(coder.encode(labels), *labels.shape), labels)


def test_smaller_than_context2_and_jpeg_xl_on_real_maps():
    maps = _real_maps() + [_ragged_map(96, 200, 1)]
    sizes = {}
    for name in ("context4", "context2", "jxl"):
        coder = get_map_coder(name)
        payloads = [coder.encode(m) for m in maps]
        if name == "context4":
            assert all(np.array_equal(coder.decode(p, *m.shape), m) for p, m in zip(payloads, maps))
        sizes[name] = sum(map(len, payloads))
    assert sizes["context4"] < 0.95 * sizes["context2"] and sizes["context4"] < 0.7 * sizes["jxl"], sizes


def test_the_shipped_prior_is_the_stated_one():
    prior = load_prior()
    assert prior_digest(prior) == PRIOR_DIGEST
    assert not prior["pairs"].flags.writeable  # shared by every coder: nobody may change it
    assert all(np.all(table >= 0) for table in prior.values())


def test_a_different_prior_decodes_differently():
    """The prior is part of the format: a payload coded with one cannot be read with another."""
    labels = _real_maps()[0]
    payload = PriorContextMapCoder().encode(labels)
    other = {name: table * 2 for name, table in load_prior().items()}
    try:
        decoded = PriorContextMapCoder(other).decode(payload, *labels.shape)
    except BitstreamError:
        return
    assert not np.array_equal(decoded, labels)


def test_a_damaged_prior_is_refused(monkeypatch):
    import spic_diffusers.codec.map_prior as map_prior

    map_prior.load_prior.cache_clear()
    monkeypatch.setattr(map_prior, "PRIOR_DIGEST", "f" * 64)
    try:
        with pytest.raises(PriorError, match="not the one"):
            PriorContextMapCoder()
    finally:
        map_prior.load_prior.cache_clear()


def test_truncated_and_forged_payloads_are_refused_quickly():
    labels = _ragged_map(96, 128, 4)
    coder = PriorContextMapCoder()
    payload = coder.encode(labels)
    for cut in (len(payload) // 4, len(payload) // 2, len(payload) - 20):
        start = time.monotonic()
        with pytest.raises(BitstreamError, match="context4"):
            coder.decode(payload[:cut], *labels.shape)
        assert time.monotonic() - start < 5
    with pytest.raises(BitstreamError, match="more than"):
        coder.decode(bytes([9]) + bytes(range(10)) + b"\x01\x02", 2, 2)
    with pytest.raises(BitstreamError, match="no coded data"):
        coder.decode(bytes([1, 3, 7]), 4, 4)
    with pytest.raises(BitstreamError, match="empty"):
        coder.decode(b"", 3, 4)
    with pytest.raises(BitstreamError):  # a context2 payload is not a context4 one
        coder.decode(get_map_coder("context2").encode(labels), *labels.shape)


def test_default_streams_are_version_3_and_4_and_old_streams_still_decode():
    assert DEFAULT_MAP_CODER == "context4"
    scene = make_scene(32, 64, 5)
    labels = scene.semantic_map
    plain = encode(scene.image, labels, coarse_codec="jpeg")
    instances = labels.astype(np.int64)
    instances[8:16, 4:12], instances[8:16, 12:20] = 13000, 13001
    with_instances = encode(scene.image, labels, coarse_codec="jpeg", instance_map=instances)
    assert (read_header(plain).map_coder, plain[2], with_instances[2]) == ("context4", 3, 4)
    assert np.array_equal(decode_parts(plain).semantic_map, labels)
    assert decode_parts(with_instances).instance_edges is not None
    for old in ("context2", "context"):
        stream = encode(scene.image, labels, coarse_codec="jpeg", map_coder=old)
        assert stream[2] == 1 and np.array_equal(decode_parts(stream).semantic_map, labels)


@pytest.mark.parametrize("map_coder,version", [("context4", 1), ("context4", 2), ("context2", 3), ("png", 4)])
def test_coders_and_versions_that_disagree_are_refused(map_coder, version):
    instance_payload = b"z" if version in (2, 4) else None
    packed = pack_stream(height=4, width=4, downsample=1, map_coder=map_coder, coarse_codec="jpeg",
                         map_payload=b"x", coarse_payload=b"y", instance_payload=instance_payload)  # fmt: skip
    stream = bytearray(packed)
    stream[2] = version
    stream[-4:] = zlib.crc32(bytes(stream[:-4])).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="cannot appear in a version"):
        read_header(bytes(stream))
