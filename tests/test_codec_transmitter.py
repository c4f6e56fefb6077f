"""Transmitter and receiver: image (+ map or segmenter) -> stream -> map, coarse image, SPIC image."""

import numpy as np
import pytest
import torch
from PIL import Image

from spic_diffusers.codec import (
    Segmenter,
    area_downsample,
    decode,
    decode_parts,
    encode,
    get_coarse_codec,
)


def scene(height=32, width=64, seed=0):
    try:
        from spic_diffusers.data.synthetic import make_scene

        s = make_scene(height, width, seed)
        return s.image, s.semantic_map
    except ImportError:
        rng = np.random.default_rng(seed)
        labels = np.zeros((height, width), dtype=np.uint8)
        labels[: height // 2] = 10
        labels[height // 2 :, width // 3 :] = 13
        return (rng.random((height, width, 3)) * 255).astype(np.uint8), labels


@pytest.mark.parametrize("codec, quality", [("jpeg", 30), ("hevc", 35), ("heif", None)])
@pytest.mark.parametrize("map_coder", ["context", "png"])
def test_round_trip_with_ground_truth_map(codec, quality, map_coder):
    image, labels = scene(64, 128, 1)
    stream = encode(Image.fromarray(image), labels, coarse_codec=codec, coarse_quality=quality, map_coder=map_coder)
    parts = decode_parts(stream)
    np.testing.assert_array_equal(parts.semantic_map, labels)
    expected = get_coarse_codec(codec, quality).round_trip(area_downsample(image, 4))
    np.testing.assert_array_equal(parts.coarse_image, expected)
    assert (parts.height, parts.width, parts.downsample) == (64, 128, 4)
    assert (parts.map_coder, parts.coarse_codec) == (map_coder, codec)


def test_non_divisible_size_and_other_downsample():
    image, labels = scene(37, 70, 2)
    parts = decode_parts(encode(image, labels, coarse_codec="hevc", downsample=8))
    assert parts.coarse_image.shape == (5, 9, 3)
    np.testing.assert_array_equal(parts.semantic_map, labels)


def test_encode_rejects_bad_arguments():
    image, labels = scene()
    with pytest.raises(ValueError, match="exactly one"):
        encode(image)
    with pytest.raises(ValueError, match="exactly one"):
        encode(image, labels, segmenter="some/model")
    with pytest.raises(ValueError, match="image is 32x64"):
        encode(image, labels[:16])
    with pytest.raises(ValueError, match="downsample"):
        encode(image, labels, downsample=0)
    with pytest.raises(ValueError, match="unknown coarse codec"):
        encode(image, labels, coarse_codec="gif")
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        encode(image.astype(np.float32), labels)


TRAIN_NAMES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_segformer(tmp_path_factory):
    from conftest import save_tiny_segformer

    return save_tiny_segformer(tmp_path_factory.mktemp("segformer"), 32, 64, dict(enumerate(TRAIN_NAMES)))


def test_segmenter_path_end_to_end(tiny_segformer):
    image, _ = scene(32, 64, 3)
    stream = encode(image, segmenter=str(tiny_segformer), coarse_codec="jpeg")
    parts = decode_parts(stream)
    predicted = Segmenter.from_pretrained(tiny_segformer)(image)
    assert predicted.shape == (32, 64) and predicted.max() < 19
    np.testing.assert_array_equal(parts.semantic_map, predicted)


def test_segmenter_maps_official_label_ids_to_train_ids():
    from spic_diffusers.data.cityscapes import CITYSCAPES_LABELS

    id2label = {label.id: label.name for label in CITYSCAPES_LABELS if label.id >= 0}
    lut = Segmenter._label_lut(id2label)
    assert lut[7] == 0 and lut[26] == 13 and lut[33] == 18  # road, car, bicycle
    assert lut[9] == 255 and lut[0] == 255  # parking and unlabeled are ignored
    train = Segmenter._label_lut(dict(enumerate(TRAIN_NAMES)))
    np.testing.assert_array_equal(train, np.arange(19))
    with pytest.raises(ValueError, match="Cityscapes"):
        Segmenter._label_lut({0: "cat", 1: "dog"})


def test_segmenter_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot load"):
        Segmenter.from_pretrained(tmp_path / "missing")


@pytest.fixture(scope="module")
def tiny_pipeline():
    from diffusers import DDPMScheduler

    from spic_diffusers import SPICPipeline, SPICUNet2DModel

    torch.manual_seed(0)
    unet = SPICUNet2DModel(
        sample_size=(32, 64),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_downsample_factors=(2,),
        attention_head_dim=16,
    )
    pipe = SPICPipeline(unet, DDPMScheduler(variance_type="learned_range"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_receiver_runs_the_pipeline_on_the_decoded_parts(tiny_pipeline):
    image, labels = scene(32, 64, 4)
    stream = encode(image, labels, coarse_codec="jpeg", coarse_quality=50)
    kwargs = {"num_inference_steps": 10, "max_timestep": 50, "guidance_scale": 1.0}
    out = decode(stream, tiny_pipeline, generator=torch.Generator().manual_seed(0), **kwargs)
    assert isinstance(out, Image.Image) and out.size == (64, 32)
    parts = decode_parts(stream)
    direct = tiny_pipeline(
        parts.semantic_map, parts.coarse_image, generator=torch.Generator().manual_seed(0), **kwargs
    ).images[0]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(direct))
    with pytest.raises(ValueError, match="comes from the stream"):
        decode(stream, tiny_pipeline, low_res_image=parts.coarse_image)
