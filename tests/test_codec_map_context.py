"""The pixel-wise context map coder (context2), instance edges in the stream, target rates and HEVC 4:2:0."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_UNET
from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.codec import (
    BitstreamError,
    ContextMapCoder,
    PixelContextMapCoder,
    bpp,
    bpp_breakdown,
    decode,
    decode_parts,
    encode,
    encode_to_rate,
    get_coarse_codec,
    get_map_coder,
    pack_stream,
    read_header,
)
from spic_diffusers.data.camvid import camvid_to_train_ids, write_fake_camvid
from spic_diffusers.data.synthetic import make_scene, make_street_map
from spic_diffusers.image_processing import instance_edges
from spic_diffusers.pipelines.pipeline_spic import default_scheduler


def _camvid_maps(tmp_path, size=None):
    root = write_fake_camvid(tmp_path / "camvid", {"train": 2, "test": 1}, height=90, width=120, seed=3)
    maps = []
    for path in sorted(root.glob("*annot/*.png")):
        labels = camvid_to_train_ids(np.array(Image.open(path)))
        if size:
            labels = np.array(Image.fromarray(labels).resize((size[1], size[0]), Image.NEAREST))
        maps.append(labels)
    return maps


def _ragged_map(height, width, seed):
    """A street layout with hand-drawn-like boundaries: every boundary pixel jitters by one."""
    labels = make_street_map(height, width, seed).copy()
    rng = np.random.default_rng(seed)
    shifted = np.roll(labels, 1, axis=1)
    jitter = (rng.random(labels.shape) < 0.3) & instance_edges(labels)
    labels[jitter] = shifted[jitter]
    return labels


@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (70, 1), (5, 129), (33, 64), (64, 65)])
def test_round_trip_odd_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    labels = rng.choice(np.array([0, 7, 13, 255], dtype=np.uint8), size=shape)
    coder = PixelContextMapCoder()
    assert np.array_equal(coder.decode(coder.encode(labels), *shape), labels)


def test_round_trip_real_shaped_maps(tmp_path):
    coder = PixelContextMapCoder()
    maps = _camvid_maps(tmp_path) + _camvid_maps(tmp_path, (128, 256)) + [_ragged_map(96, 200, 1)]
    for labels in maps:
        assert np.array_equal(coder.decode(coder.encode(labels), *labels.shape), labels)


@pytest.mark.parametrize("num_labels", [1, 2, 40, 256])
def test_round_trip_label_counts(num_labels):
    rng = np.random.default_rng(num_labels)
    values = rng.permutation(256)[:num_labels].astype(np.uint8)
    labels = np.repeat(values[rng.integers(0, num_labels, size=(20, 16))], 4, axis=1)
    labels.reshape(-1)[:num_labels] = values  # every label occurs
    coder = PixelContextMapCoder()
    assert np.array_equal(coder.decode(coder.encode(labels), *labels.shape), labels)


def test_smaller_than_the_row_coder_and_jpeg_xl_on_ragged_maps():
    maps = [_ragged_map(128, 256, seed) for seed in range(2)]
    sizes = {name: sum(len(get_map_coder(name).encode(m)) for m in maps) for name in ("context2", "context", "jxl")}
    assert sizes["context2"] < sizes["context"] and sizes["context2"] < sizes["jxl"], sizes


def test_truncated_payload_is_refused_quickly():
    labels = _ragged_map(96, 128, 4)
    coder = PixelContextMapCoder()
    payload = coder.encode(labels)
    for cut in (len(payload) // 4, len(payload) // 2, len(payload) - 40):
        start = time.monotonic()
        with pytest.raises(BitstreamError):
            coder.decode(payload[:cut], *labels.shape)
        assert time.monotonic() - start < 5


def test_label_counts_the_header_cannot_justify():
    coder = PixelContextMapCoder()
    with pytest.raises(BitstreamError, match="declares 10 labels for a map of 4 pixels"):
        coder.decode(bytes([9]) + bytes(range(10)) + b"\x01\x02", 2, 2)
    with pytest.raises(BitstreamError, match="no coded data"):
        coder.decode(bytes([1, 3, 7]), 4, 4)
    # Ten labels declared, a map of one label coded: the decoder cannot make nine of them appear.
    one_label = coder.encode(np.array([[3, 3, 3, 5]] * 3, dtype=np.uint8))
    forged = bytes([9]) + bytes([3, 5, 10, 11, 12, 13, 14, 15, 16, 17]) + one_label[3:]
    with pytest.raises(BitstreamError):
        coder.decode(forged, 3, 4)
    with pytest.raises(BitstreamError, match="empty"):
        coder.decode(b"", 3, 4)


def test_old_context_streams_still_decode():
    """Streams of the earlier default map coders decode after the default moved on (to mix)."""
    scene = make_scene(32, 64, 5)
    for name in ("context", "context2"):
        stream = encode(scene.image, scene.semantic_map, coarse_codec="jpeg", map_coder=name)
        assert read_header(stream).map_coder == name
        assert np.array_equal(decode_parts(stream).semantic_map, scene.semantic_map)
    assert read_header(encode(scene.image, scene.semantic_map, coarse_codec="jpeg")).map_coder == "mix"
    assert isinstance(get_map_coder("context"), ContextMapCoder)


def _instances(labels):
    """Cityscapes-style instance ids: label id for stuff, class * 1000 + k for two side-by-side cars."""
    instances = labels.astype(np.int64).copy()
    height, width = labels.shape
    instances[height // 2 : height // 2 + 8, 10:20] = 13000
    instances[height // 2 : height // 2 + 8, 20:30] = 13001
    return instances


def test_instance_edges_round_trip_in_a_version_2_stream():
    scene = make_scene(32, 64, 7)
    labels = scene.semantic_map.copy()
    labels[16:24, 10:30] = 13  # the two cars of the instance map
    instances = _instances(labels)
    plain = encode(scene.image, labels, coarse_codec="jpeg")
    stream = encode(scene.image, labels, coarse_codec="jpeg", instance_map=instances)
    assert plain[2] == 1 and stream[2] == 2
    parts = decode_parts(stream)
    expected = instance_edges(instances)
    assert np.array_equal(parts.instance_edges, expected)
    assert decode_parts(plain).instance_edges is None
    breakdown = bpp_breakdown(stream)
    assert sum(v for k, v in breakdown["bytes"].items() if k != "total") == breakdown["bytes"]["total"]
    assert 0 < breakdown["bytes"]["instances"] < 20


def test_decode_drives_an_instance_edge_model():
    torch.manual_seed(0)
    unet = SPICUNet2DModel(**TINY_UNET, num_semantic_channels=20, instance_edge_channel=True)
    pipe = SPICPipeline(unet=unet, scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    scene = make_scene(32, 64, 8)
    instances = _instances(scene.semantic_map)
    stream = encode(scene.image, scene.semantic_map, coarse_codec="jpeg", instance_map=instances)
    kwargs = dict(num_inference_steps=20, generator=torch.Generator().manual_seed(0))
    image = decode(stream, pipe, **kwargs)
    direct = pipe(scene.semantic_map, decode_parts(stream).coarse_image, instance_map=instances, output_type="pil",
                  num_inference_steps=20, generator=torch.Generator().manual_seed(0)).images[0]  # fmt: skip
    assert np.array_equal(np.asarray(image), np.asarray(direct))
    with pytest.raises(ValueError, match="instance"):
        decode(encode(scene.image, scene.semantic_map, coarse_codec="jpeg"), pipe, **kwargs)


def test_instance_map_must_match_the_image():
    scene = make_scene(32, 64, 9)
    with pytest.raises(ValueError, match="instance_map"):
        encode(scene.image, scene.semantic_map, coarse_codec="jpeg", instance_map=np.zeros((8, 8), dtype=np.int64))


def test_version_2_needs_an_instance_payload():
    stream = pack_stream(height=4, width=4, downsample=1, map_coder="png", coarse_codec="jpeg",
                         map_payload=b"x", coarse_payload=b"y", instance_payload=b"")  # fmt: skip
    with pytest.raises(BitstreamError, match="instance"):
        read_header(stream)


def test_target_bpp_lands_at_or_below_the_target():
    scene = make_scene(64, 128, 11)
    for target in (0.6, 1.2):
        fit = encode_to_rate(scene.image, scene.semantic_map, target_bpp=target, coarse_codec="jpeg")
        assert fit.bpp <= target and fit.bpp == bpp(fit.stream) and fit.downsample == 4
        # One quality step up would overshoot (or the best quality already fits).
        if fit.coarse_quality < 95:
            above = encode(scene.image, scene.semantic_map, coarse_codec="jpeg", coarse_quality=fit.coarse_quality + 1)
            assert bpp(above) > target or fit.coarse_quality + 1 > 95 or bpp(above) <= fit.bpp
    stream = encode(scene.image, scene.semantic_map, coarse_codec="jpeg", target_bpp=0.8)
    assert bpp(stream) <= 0.8
    fit = encode_to_rate(scene.image, scene.semantic_map, target_bpp=0.7, coarse_codec="jpeg", downsample=[2, 4, 8])
    assert fit.bpp <= 0.7 and fit.downsample in (2, 4, 8)


def test_target_bpp_errors():
    scene = make_scene(64, 128, 12)
    with pytest.raises(ValueError, match="below the map's own cost"):
        encode(scene.image, scene.semantic_map, coarse_codec="jpeg", target_bpp=0.01)
    with pytest.raises(ValueError, match="either coarse_quality or target_bpp"):
        encode(scene.image, scene.semantic_map, coarse_codec="jpeg", target_bpp=1.0, coarse_quality=20)
    with pytest.raises(ValueError, match="positive"):
        encode(scene.image, scene.semantic_map, coarse_codec="jpeg", target_bpp=-1)
    map_bpp = bpp_breakdown(encode(scene.image, scene.semantic_map, coarse_codec="jpeg"))["bpp"]["map"]
    with pytest.raises(ValueError, match="cannot be reached"):
        encode(scene.image, scene.semantic_map, coarse_codec="jpeg", target_bpp=map_bpp + 0.05)


def test_hevc_420_is_recorded_in_its_payload():
    image = make_scene(64, 128, 13).image[:24, :40]
    full, sub = get_coarse_codec("hevc", 30), get_coarse_codec("hevc", 30, chroma="420")
    a, b = full.encode(image), sub.encode(image)
    assert a != b
    # The same decoder reads both: the sequence parameter set says which chroma format it holds.
    assert full.decode(b, 24, 40).shape == (24, 40, 3) and sub.decode(a, 24, 40).shape == (24, 40, 3)
    stream = encode(make_scene(64, 128, 13).image, make_scene(64, 128, 13).semantic_map, coarse_codec="hevc",
                    chroma="420")  # fmt: skip
    assert decode_parts(stream).coarse_image.shape == (16, 32, 3)
    with pytest.raises(ValueError, match="chroma"):
        get_coarse_codec("jpeg", 20, chroma="420")
    with pytest.raises(ValueError, match="chroma"):
        get_coarse_codec("hevc", 30, chroma="422")


def test_cli_target_bpp(tmp_path, capsys):
    from spic_diffusers.cli import main

    scene = make_scene(64, 128, 14)
    Image.fromarray(scene.image).save(tmp_path / "image.png")
    Image.fromarray(scene.semantic_map).save(tmp_path / "map.png")
    args = ["encode", str(tmp_path / "image.png"), "--segmentation", str(tmp_path / "map.png"),
            "--coarse_codec", "jpeg"]
    assert main([*args, "-o", str(tmp_path / "a.spic"), "--target_bpp", "0.9"]) == 0
    assert "reached" in capsys.readouterr().out
    assert bpp((tmp_path / "a.spic").read_bytes()) <= 0.9
    assert main([*args, "-o", str(tmp_path / "b.spic"), "--target_bpp", "0.01"]) == 1
    assert "below the map's own cost" in capsys.readouterr().err
    assert not (tmp_path / "b.spic").exists()
