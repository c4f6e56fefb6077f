"""Synthetic street scenes: determinism, class coverage, instance convention, sizes, speed, datasets."""

import time

import numpy as np
import pytest
from PIL import Image

from spic_diffusers.data import cityscapes as cs
from spic_diffusers.data.synthetic import make_scene, make_synthetic_dataset, write_fake_cityscapes


def test_same_seed_same_scene_and_no_global_rng():
    np.random.seed(123)
    state = np.random.get_state()
    a = make_scene(64, 128, seed=7)
    b = make_scene(64, 128, seed=7)
    assert np.array_equal(np.random.get_state()[1], state[1])
    for key in ("image", "semantic_map", "instance_map"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    c = make_scene(64, 128, seed=8)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.semantic_map, c.semantic_map)


@pytest.mark.parametrize("size", [(32, 64), (64, 128), (96, 96), (256, 512), (48, 200)])
def test_shapes_dtypes_and_values(size):
    scene = make_scene(*size, seed=1)
    h, w = size
    assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
    assert scene.semantic_map.shape == (h, w) and scene.semantic_map.dtype == np.uint8
    assert scene.instance_map.shape == (h, w) and scene.instance_map.dtype == np.int32
    values = np.unique(scene.semantic_map)
    assert set(values.tolist()) <= set(range(19)) | {255}


def test_class_coverage_over_scenes():
    seen = set()
    for seed in range(24):
        seen |= set(np.unique(make_scene(128, 256, seed).semantic_map).tolist())
    assert set(range(19)) <= seen
    assert 255 in seen  # the ego vehicle appears in some scenes


def test_instance_map_follows_cityscapes_convention():
    for seed in range(6):
        scene = make_scene(128, 256, seed)
        label_ids = scene.label_ids
        # The semantic map is exactly the instance map's label ids through the official table.
        assert np.array_equal(cs.label_ids_to_train_ids(label_ids), scene.semantic_map)
        thing = scene.instance_map >= 1000
        assert np.all(np.isin(label_ids[thing], cs.INSTANCE_LABEL_IDS))
        assert not np.any(np.isin(scene.instance_map[~thing], cs.INSTANCE_LABEL_IDS))
    # Several cars in one scene get distinct ids 26000 + k.
    cars = {
        v for seed in range(6) for v in np.unique(make_scene(128, 256, seed).instance_map).tolist() if v // 1000 == 26
    }
    assert {26000, 26001} <= cars


def test_images_are_textured_not_flat():
    scene = make_scene(128, 256, 2)
    for train_id in (0, 2, 8, 10):
        pixels = scene.image[scene.semantic_map == train_id]
        if len(pixels) > 50:
            assert pixels.std(axis=0).max() > 1.5, train_id
    # Classes look different: road and vegetation means differ clearly.
    road = scene.image[scene.semantic_map == 0].mean(0)
    sky = scene.image[scene.semantic_map == 10].mean(0)
    assert np.abs(road - sky).max() > 30


def test_fast_at_256x512():
    make_scene(256, 512, 0)
    start = time.perf_counter()
    for seed in range(5):
        make_scene(256, 512, seed)
    assert (time.perf_counter() - start) / 5 < 0.2


def test_too_small_raises():
    with pytest.raises(ValueError, match="8x8"):
        make_scene(4, 64, 0)


def test_make_synthetic_dataset_format():
    dd = make_synthetic_dataset(3, 32, 64, seed=5, splits=("train", "validation"))
    assert set(dd) == {"train", "validation"}
    assert dd["train"].features == cs.dataset_features(with_instances=True)
    row = dd["validation"][2]
    assert row["image"].mode == "RGB" and row["image"].size == (64, 32)
    assert row["semantic_map"].mode == "L" and row["instance_map"].mode == "I"
    assert row["id"].startswith(row["city"] + "_") and row["id"].endswith("_000019")
    again = make_synthetic_dataset(3, 32, 64, seed=5, splits=("train", "validation"))
    assert np.array_equal(np.array(again["validation"][2]["image"]), np.array(row["image"]))
    assert not np.array_equal(np.array(dd["train"][2]["image"]), np.array(row["image"]))
    assert len({r for r in dd["train"]["id"]}) == 3
    coarse = make_synthetic_dataset({"train": 1}, 32, 64, coarse="downsample")["train"][0]["coarse"]
    assert coarse.size == (16, 8)
    # Through the project's real lossy codec: same size, but not the plain downsampled image.
    coded = make_synthetic_dataset({"train": 1}, 32, 64, coarse="webp:30")["train"][0]["coarse"]
    assert coded.size == (16, 8) and not np.array_equal(np.array(coded), np.array(coarse))
    with pytest.raises(ValueError, match="split"):
        make_synthetic_dataset(1, 32, 64, splits=("val",))


def test_write_fake_cityscapes_layout(tmp_path):
    written = write_fake_cityscapes(
        tmp_path / "cs", cities=2, per_city=2, splits=("train", "val"), height=32, width=64, with_train_ids=True
    )
    root = tmp_path / "cs"
    fid = "aachen_000001_000019"
    assert fid in written["train"]
    image = Image.open(root / "leftImg8bit/train/aachen" / f"{fid}_leftImg8bit.png")
    assert image.mode == "RGB" and image.size == (64, 32)
    label_ids = np.array(Image.open(root / "gtFine/train/aachen" / f"{fid}_gtFine_labelIds.png"))
    train_ids = np.array(Image.open(root / "gtFine/train/aachen" / f"{fid}_gtFine_labelTrainIds.png"))
    instance = Image.open(root / "gtFine/train/aachen" / f"{fid}_gtFine_instanceIds.png")
    color = Image.open(root / "gtFine/train/aachen" / f"{fid}_gtFine_color.png")
    assert 7 in label_ids and 0 not in cs.label_ids_to_train_ids(label_ids)[label_ids != 7]  # label ids, not train ids
    assert np.array_equal(cs.label_ids_to_train_ids(label_ids), train_ids)
    assert instance.mode.startswith("I") and np.array(instance).max() >= 1000
    assert color.mode == "RGBA"
    assert np.array_equal(cs.color_to_train_ids(np.array(color)), train_ids)
    scene = make_scene(32, 64, written["train"][fid])
    assert np.array_equal(np.array(image), scene.image)
    assert sorted(p.name for p in (root / "leftImg8bit/val").iterdir()) == ["frankfurt", "lindau"]
    with pytest.raises(FileExistsError):
        write_fake_cityscapes(root, cities=1, per_city=1)


def test_make_synthetic_dataset_num_proc_gives_the_same_rows():
    kwargs = dict(num_scenes={"train": 5, "validation": 2}, height=32, width=64, seed=5, coarse="jpeg:40")
    one = make_synthetic_dataset(**kwargs)
    two = make_synthetic_dataset(**kwargs, num_proc=2)
    for split in ("train", "validation"):
        assert one[split].features == two[split].features
        assert one[split].with_format("arrow")[:].equals(two[split].with_format("arrow")[:])
    with pytest.raises(ValueError, match="num_proc"):
        make_synthetic_dataset(2, 32, 64, num_proc=0)
