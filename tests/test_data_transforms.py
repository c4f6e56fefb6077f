"""SPICTransform: resizing, flips, one-hot with ignore, instance edges, `datasets` integration."""

import numpy as np
import pytest
import torch
from PIL import Image

from spic_diffusers.data import SPICTransform, instance_edges, make_synthetic_dataset, resize_image, resize_map


def _example(height=64, width=128, seed=0, coarse=True):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 4] = 0  # flat extremes survive resizing: checks the [-1, 1] mapping
    image[height // 2 :, -width // 4 :] = 255
    labels = rng.integers(0, 19, size=(height, width)).astype(np.uint8)
    labels[:4, :] = 255
    instances = np.repeat(np.arange(width, dtype=np.int32)[None] // 8, height, 0) + 26000
    example = {
        "image": Image.fromarray(image),
        "semantic_map": Image.fromarray(labels),
        "instance_map": Image.fromarray(instances),
        "id": "aachen_000000_000019",
        "city": "aachen",
    }
    if coarse:
        example["coarse"] = Image.fromarray(rng.integers(0, 256, size=(height // 4, width // 4, 3), dtype=np.uint8))
    return example


def test_resize_image_box_halving_then_bicubic():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(128, 256, 3), dtype=np.uint8)
    out = resize_image(image, (24, 48))
    pil = Image.fromarray(image).resize((128, 64), Image.BOX).resize((64, 32), Image.BOX)
    expected = np.asarray(pil.resize((48, 24), Image.BICUBIC))
    assert out.shape == (24, 48, 3)
    assert np.array_equal(out, expected)
    # Exactly 2x -> pure box halving; non-square targets of other aspect still hit the exact size.
    assert np.array_equal(
        resize_image(image, (64, 128)), np.asarray(Image.fromarray(image).resize((128, 64), Image.BOX))
    )
    assert resize_image(image, (32, 32)).shape == (32, 32, 3)


def test_resize_map_nearest_keeps_values():
    labels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert np.array_equal(resize_map(labels, (2, 2)), np.array([[5, 7], [13, 15]]))
    assert np.array_equal(resize_map(labels, (8, 8))[::2, ::2], labels)
    big = np.arange(12, dtype=np.int32).reshape(3, 4) * 1000 + 26000
    assert set(np.unique(resize_map(big, (7, 9)))) <= set(np.unique(big))


@pytest.mark.parametrize("size", [(32, 64), (16, 16), (64, 32)])
def test_output_sizes_and_ranges(size):
    transform = SPICTransform(size)
    out = transform.transform_example(_example())
    h, w = size
    assert out["pixel_values"].shape == (3, h, w) and out["pixel_values"].dtype == torch.float32
    assert out["pixel_values"].min() >= -1 and out["pixel_values"].max() <= 1
    assert out["pixel_values"].min() < -0.9 and out["pixel_values"].max() > 0.9
    assert out["segmentation_map"].shape == (19, h, w)
    assert out["labels"].shape == (h, w) and out["labels"].dtype == torch.long
    assert out["low_res_image"].shape == (3, h // 4, w // 4)
    assert out["low_res_image"].min() >= -1 and out["low_res_image"].max() <= 1
    assert out["id"] == "aachen_000000_000019"


def test_one_hot_and_ignore_is_zero_vector():
    out = SPICTransform((64, 128)).transform_example(_example())
    seg, labels = out["segmentation_map"], out["labels"]
    ignore = labels == 255
    assert ignore.any()
    assert torch.all(seg[:, ignore] == 0)
    sums = seg.sum(0)
    assert torch.all(sums[~ignore] == 1)
    assert torch.equal(seg.argmax(0)[~ignore], labels[~ignore])


def test_flip_is_identical_for_all_inputs():
    transform = SPICTransform((32, 64), use_instance_edges=True)
    example = _example()
    plain = transform.transform_example(example, flip=False)
    flipped = transform.transform_example(example, flip=True)
    for key in ("pixel_values", "segmentation_map", "low_res_image"):
        assert torch.equal(flipped[key], plain[key].flip(-1)), key
    assert torch.equal(flipped["labels"], plain["labels"].flip(-1))
    assert not torch.equal(flipped["pixel_values"], plain["pixel_values"])


def test_random_flip_is_seeded_and_consistent():
    example = _example(coarse=True)
    reference = SPICTransform((32, 64), use_instance_edges=True).transform_example(example, flip=False)
    state = np.random.get_state()
    decisions = []
    for seed in (0, 0, 1):
        transform = SPICTransform((32, 64), random_flip=True, use_instance_edges=True, seed=seed)
        run = []
        for _ in range(16):
            out = transform.transform_example(example)
            flipped = torch.equal(out["pixel_values"], reference["pixel_values"].flip(-1))
            same = torch.equal(out["pixel_values"], reference["pixel_values"])
            assert flipped != same
            for key in ("segmentation_map", "low_res_image", "labels"):
                expected = reference[key].flip(-1) if flipped else reference[key]
                assert torch.equal(out[key], expected), key
            run.append(flipped)
        decisions.append(run)
    assert decisions[0] == decisions[1] and decisions[0] != decisions[2]
    assert 0 < sum(decisions[0]) < 16
    assert np.array_equal(np.random.get_state()[1], state[1])


def test_instance_edges_channel():
    t = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    expected = np.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=bool)
    assert np.array_equal(instance_edges(t), expected)
    assert not instance_edges(np.full((4, 5), 7)).any()
    example = _example(height=32, width=64)
    out = SPICTransform((32, 64), use_instance_edges=True).transform_example(example)
    assert out["segmentation_map"].shape == (20, 32, 64)
    edge = out["segmentation_map"][19]
    # Instance stripes are 8 px wide: columns 7 and 8, 15 and 16, ... are edges, others not.
    cols = edge.sum(0) > 0
    assert cols.nonzero().flatten().tolist() == [c for c in range(64) if c % 8 in (0, 7) and 0 < c < 63]
    with pytest.raises(ValueError, match="instance_map"):
        SPICTransform((32, 64), use_instance_edges=True).transform_example(
            {k: v for k, v in example.items() if k != "instance_map"}
        )


def test_bad_label_values_raise_naming_them():
    example = _example()
    labels = np.array(example["semantic_map"])
    labels[5, 5] = 19
    labels[6, 6] = 77
    example["semantic_map"] = Image.fromarray(labels)
    with pytest.raises(ValueError, match=r"\[19, 77\]"):
        SPICTransform((32, 64)).transform_example(example)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="divisible"):
        SPICTransform((30, 64))
    with pytest.raises(ValueError, match="mode"):
        SPICTransform((32, 64)).transform_example({**_example(), "semantic_map": Image.new("RGB", (128, 64))})


def test_set_transform_on_dataset():
    ds = make_synthetic_dataset(3, 32, 64, seed=0, splits=("train",), coarse="downsample")["train"]
    ds.set_transform(SPICTransform((32, 64), use_instance_edges=True))
    row = ds[1]
    assert row["pixel_values"].shape == (3, 32, 64)
    assert row["segmentation_map"].shape == (20, 32, 64)
    assert row["low_res_image"].shape == (3, 8, 16)
    batch = ds[0:3]
    assert len(batch["pixel_values"]) == 3
    raw = make_synthetic_dataset(3, 32, 64, seed=0, splits=("train",))["train"][1]
    assert torch.equal(row["labels"], torch.from_numpy(np.array(raw["semantic_map"])).long())


def test_streaming_map_on_iterable_dataset():
    ds = make_synthetic_dataset(4, 32, 64, seed=3, splits=("train",), coarse="downsample")["train"]
    transform = SPICTransform((16, 32), random_flip=True, seed=0)
    stream = ds.to_iterable_dataset(num_shards=2).map(
        transform, remove_columns=["image", "semantic_map", "instance_map", "coarse"]
    )
    rows = list(stream)
    assert len(rows) == 4
    for row in rows:
        assert set(row) >= {"pixel_values", "segmentation_map", "labels", "low_res_image", "id"}
        assert tuple(torch.as_tensor(row["pixel_values"]).shape) == (3, 16, 32)
        assert tuple(torch.as_tensor(row["segmentation_map"]).shape) == (19, 16, 32)
    batched = list(
        ds.to_iterable_dataset().map(
            SPICTransform((16, 32)),
            batched=True,
            batch_size=2,
            remove_columns=["image", "semantic_map", "instance_map", "coarse"],
        )
    )
    assert len(batched) == 4 and tuple(torch.as_tensor(batched[0]["low_res_image"]).shape) == (3, 4, 8)


def test_on_the_fly_coarse_image():
    example = _example(coarse=False)
    assert "low_res_image" not in SPICTransform((32, 64)).transform_example(example)
    plain = SPICTransform((32, 64), coarse="downsample").transform_example(example)
    coded = SPICTransform((32, 64), coarse="webp:20").transform_example(example)
    assert plain["low_res_image"].shape == coded["low_res_image"].shape == (3, 8, 16)
    expected = resize_image(resize_image(np.array(example["image"]), (32, 64)), (8, 16))
    assert torch.equal(
        plain["low_res_image"], torch.from_numpy(expected.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    )
    assert not torch.equal(plain["low_res_image"], coded["low_res_image"])  # the lossy round trip changed it
    flipped = SPICTransform((32, 64), coarse="downsample").transform_example(example, flip=True)
    assert torch.equal(flipped["low_res_image"], plain["low_res_image"].flip(-1))
    with pytest.raises(ValueError, match="CODEC:QUALITY"):
        SPICTransform((32, 64), coarse="webp")
