"""Lossy coarse codecs, the area downsample and make_coarse."""

import numpy as np
import pytest
import torch

from spic_diffusers.codec import (
    COARSE_CODECS,
    COARSE_FALLBACKS,
    BitstreamError,
    CodecUnavailableError,
    area_downsample,
    coarse_size,
    decode_parts,
    encode,
    get_coarse_codec,
    make_coarse,
    select_coarse_codec,
)

PILLOW_CODECS = ["heif", "jxl", "webp", "avif", "jpeg"]
AVAILABLE = ["hevc"] + PILLOW_CODECS


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [
        np.sin(6 * xx * rng.uniform(0.5, 2) + 4 * yy * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(3)
    ]
    image = 127.5 + 100 * np.stack(channels, axis=-1) + rng.normal(0, 6, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


@pytest.mark.parametrize("name", AVAILABLE)
def test_round_trip_matches_codec(name):
    codec = get_coarse_codec(name)
    image = smooth_image(32, 48)
    data = codec.encode(image)
    decoded = codec.decode(data, 32, 48)
    assert decoded.shape == (32, 48, 3) and decoded.dtype == np.uint8
    assert psnr(image, decoded) > 18
    # Decoding is deterministic: the receiver sees exactly what make_coarse/round_trip give.
    np.testing.assert_array_equal(codec.decode(data, 32, 48), decoded)
    np.testing.assert_array_equal(codec.round_trip(image), decoded)


@pytest.mark.parametrize("name", AVAILABLE)
def test_quality_trades_rate_for_distortion(name):
    codec_cls = COARSE_CODECS[name]
    image = smooth_image(32, 64, 1)
    low, high = codec_cls.quality_range
    worse = codec_cls(high if not codec_cls.higher_is_better else max(low, 10))
    better = codec_cls(10 if not codec_cls.higher_is_better else 90)
    worse_data, better_data = worse.encode(image), better.encode(image)
    assert len(better_data) > len(worse_data)
    assert psnr(image, better.decode(better_data, 32, 64)) > psnr(image, worse.decode(worse_data, 32, 64))


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (15, 2), (33, 17)])
def test_hevc_odd_sizes_are_padded_and_cropped(size):
    codec = get_coarse_codec("hevc", 20)
    image = smooth_image(*size, seed=2)
    decoded = codec.decode(codec.encode(image), *size)
    assert decoded.shape == (*size, 3)
    assert psnr(image, decoded) > 20


def test_hevc_payload_is_raw_annex_b():
    data = get_coarse_codec("hevc").encode(smooth_image(16, 32))
    assert data.startswith(b"\x00\x00\x00\x01")  # start code, no file box
    assert b"x265" not in data  # the encoder's version SEI is off


def test_hevc_beats_heif_container_at_low_rate():
    image = smooth_image(64, 128, 3)
    hevc = get_coarse_codec("hevc", 35).encode(image)
    heif = get_coarse_codec("heif", 30).encode(image)
    assert len(hevc) < len(heif)


@pytest.mark.parametrize("name", AVAILABLE)
def test_wrong_size_or_garbage_is_a_bitstream_error(name):
    codec = get_coarse_codec(name)
    data = codec.encode(smooth_image(16, 24))
    with pytest.raises(BitstreamError):
        codec.decode(data, 17, 24)
    for garbage in (b"", b"\x00\x00\x00\x01garbage", bytes(range(200))):
        with pytest.raises(BitstreamError):
            codec.decode(garbage, 16, 24)


def test_bpg_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    codec = get_coarse_codec("bpg")
    assert codec.quality == 35
    with pytest.raises(CodecUnavailableError, match="bpgenc.*bellard.org/bpg"):
        codec.encode(smooth_image(8, 8))
    with pytest.raises(CodecUnavailableError, match="bpgdec"):
        codec.decode(b"BPG\xfb", 8, 8)


def test_quality_out_of_range_and_unknown_codec():
    with pytest.raises(ValueError, match="0..51"):
        get_coarse_codec("hevc", 60)
    with pytest.raises(ValueError, match="unknown coarse codec"):
        get_coarse_codec("gif")
    with pytest.raises(ValueError, match="HxWx3"):
        get_coarse_codec("jpeg").encode(np.zeros((4, 4), dtype=np.uint8))


def test_area_downsample_is_the_exact_box_mean_when_divisible():
    image = np.random.default_rng(0).integers(0, 256, (8, 12, 3)).astype(np.uint8)
    small = area_downsample(image, 4)
    assert small.shape == (2, 3, 3)
    expected = image.astype(np.float64).reshape(2, 4, 3, 4, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(small, np.floor(expected + 0.5).astype(np.uint8))


@pytest.mark.parametrize("size", [(9, 13), (5, 4), (1, 1), (3, 17)])
def test_area_downsample_matches_torch_area_interpolation(size):
    image = np.random.default_rng(1).integers(0, 256, (*size, 3)).astype(np.uint8)
    small = area_downsample(image, 4)
    assert small.shape[:2] == coarse_size(*size, 4)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].double(), size=small.shape[:2], mode="area"
    )[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(small, reference, atol=0.5 + 1e-9)


def test_make_coarse_is_downsample_then_round_trip():
    image = smooth_image(64, 96, 4)
    coarse = make_coarse(image, 4, "jpeg", 50)
    assert coarse.shape == (16, 24, 3)
    np.testing.assert_array_equal(coarse, get_coarse_codec("jpeg", 50).round_trip(area_downsample(image, 4)))
    with pytest.raises(ValueError):
        make_coarse(image[..., 0], 4, "jpeg", 50)


def test_webp_payload_has_no_riff_header():
    codec = get_coarse_codec("webp")
    data = codec.encode(smooth_image(16, 16))
    assert not data.startswith(b"RIFF")
    assert codec.decode(data, 16, 16).shape == (16, 16, 3)


def test_the_default_coarse_codec_is_hevc_at_qp_35_everywhere():
    from spic_diffusers.cli import build_parser
    from spic_diffusers.evaluation import RateSetting
    from spic_diffusers.training.arguments import build_parser as training_parser

    codec = select_coarse_codec()
    assert (codec.name, codec.quality) == ("hevc", 35)
    image, labels = smooth_image(32, 48), np.zeros((32, 48), np.uint8)
    assert decode_parts(encode(image, labels)).coarse_codec == "hevc"
    assert build_parser().parse_args(["encode", "x.png", "-o", "x.spic"]).coarse_codec is None  # = the default
    assert RateSetting().coarse_codec == "hevc"
    assert training_parser().parse_args(["--dataset_name_or_path", "d", "--output_dir", "o"]).coarse_codec is None


def test_default_codec_falls_back_in_the_measured_order_and_says_so(no_ffmpeg):
    logged = []
    codec = select_coarse_codec(log=logged.append)
    assert (codec.name, codec.quality) == COARSE_FALLBACKS[0] == ("webp", 30)
    assert len(logged) == 1 and "'hevc' is unavailable" in logged[0] and "webp, jxl" in logged[0]
    stream = encode(smooth_image(32, 48), np.zeros((32, 48), np.uint8))
    assert decode_parts(stream).coarse_codec == "webp"


def test_an_explicit_unavailable_codec_fails_before_coding(no_ffmpeg):
    with pytest.raises(CodecUnavailableError, match="imageio-ffmpeg"):
        select_coarse_codec("hevc")
    with pytest.raises(CodecUnavailableError, match="imageio-ffmpeg"):
        encode(smooth_image(32, 48), np.zeros((32, 48), np.uint8), coarse_codec="hevc")
