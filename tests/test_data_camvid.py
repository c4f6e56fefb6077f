"""CamVid -> `datasets` in Cityscapes train ids, on a fake tree in SegNet's CamVid layout."""

import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from spic_diffusers.data import ID2LABEL, SPICTransform
from spic_diffusers.data.camvid import (
    CAMVID_CLASSES,
    CAMVID_TO_TRAIN_ID,
    CAMVID_TRAIN_IDS,
    CamVidLayoutError,
    build_camvid_dataset,
    camvid_to_train_ids,
    convert_camvid,
    find_camvid_files,
    sequence_of,
    write_fake_camvid,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_camvid_to_datasets.py"
H, W = 36, 48


@pytest.fixture
def fake(tmp_path):
    return write_fake_camvid(tmp_path / "CamVid", {"train": 3, "val": 1, "test": 2}, height=H, width=W)


def test_mapping_is_the_documented_one():
    expected = {
        "Sky": "sky", "Building": "building", "Pole": "pole", "Road": "road", "Pavement": "sidewalk",
        "Tree": "vegetation", "SignSymbol": "traffic sign", "Fence": "fence", "Car": "car",
        "Pedestrian": "person", "Bicyclist": "rider",
    }  # fmt: skip
    for name, target in expected.items():
        assert ID2LABEL[CAMVID_TO_TRAIN_ID[name]] == target
    assert CAMVID_TO_TRAIN_ID["Unlabelled"] == 255
    assert len(CAMVID_CLASSES) == 12 and len(CAMVID_TRAIN_IDS) == 11
    annotation = np.arange(12, dtype=np.uint8).reshape(3, 4)
    mapped = camvid_to_train_ids(annotation)
    assert mapped.dtype == np.uint8
    assert [ID2LABEL.get(int(v), "ignore") for v in mapped.ravel()] == [
        "sky", "building", "pole", "road", "sidewalk", "vegetation", "traffic sign", "fence", "car", "person",
        "rider", "ignore",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="0..11"):
        camvid_to_train_ids(np.array([[3, 12]], np.uint8))
    assert sequence_of("0016E5_07959") == "0016E5" and sequence_of("Seq05VD_f04920") == "Seq05VD"


def test_convert_writes_the_cityscapes_schema(fake, tmp_path):
    out = convert_camvid(fake, tmp_path / "out")
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation", "test"}
    assert len(dd["train"]) == 3 and len(dd["validation"]) == 1 and len(dd["test"]) == 2
    assert list(dd["train"].features) == ["image", "semantic_map", "city", "id", "sequence"]
    for row in dd["test"]:
        name = f"{row['id']}.png"
        image = np.asarray(Image.open(fake / "test" / name).convert("RGB"))
        annotation = np.asarray(Image.open(fake / "testannot" / name))
        assert np.array_equal(np.asarray(row["image"]), image)
        assert np.array_equal(np.asarray(row["semantic_map"]), camvid_to_train_ids(annotation))
        assert row["city"] == row["sequence"] == sequence_of(row["id"])
    assert (out / "id2label.json").is_file()
    # training, evaluation and the codec take it unchanged
    example = dd["train"].with_transform(SPICTransform((32, 48)))[0]
    assert example["segmentation_map"].shape == (19, 32, 48)


def test_precomputed_coarse_images_use_the_real_codec(fake, tmp_path):
    dd = build_camvid_dataset(fake, ["test"], precompute_coarse="hevc:35", coarse_image_size=(32, 48),
                              cache_dir=tmp_path / "cache")
    coarse = np.asarray(dd["test"][0]["coarse"])
    assert coarse.shape == (8, 12, 3) and coarse.std() > 0


def test_layout_problems_are_all_reported_and_nothing_is_written(fake, tmp_path):
    (fake / "trainannot" / next(p.name for p in (fake / "train").glob("*.png"))).unlink()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(fake / "valannot" / "orphan_00001.png")
    with pytest.raises(CamVidLayoutError) as info:
        convert_camvid(fake, tmp_path / "out")
    message = str(info.value)
    assert "image without an annotation" in message  # train split
    assert not (tmp_path / "out").exists()
    with pytest.raises(CamVidLayoutError, match="annotation without an image"):
        find_camvid_files(fake, "val")
    with pytest.raises(CamVidLayoutError, match="missing CamVid folder"):
        find_camvid_files(tmp_path / "nowhere", "test")


def test_bad_annotation_values_name_the_file(fake, tmp_path):
    bad = next((fake / "testannot").glob("*.png"))
    Image.fromarray(np.full((H, W), 40, np.uint8)).save(bad)
    with pytest.raises(CamVidLayoutError, match=bad.name):
        convert_camvid(fake, tmp_path / "out", splits=["test"])
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_script_refuses_to_overwrite_and_overwrites_when_asked(fake, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = [sys.executable, str(SCRIPT), "--camvid_root", str(fake), "--output_dir", str(out), "--splits", "val"]
    refused = subprocess.run(args, capture_output=True, text=True)
    assert refused.returncode == 1 and "already exists" in refused.stderr and "Traceback" not in refused.stderr
    assert (out / "mine.txt").read_text() == "keep me"
    done = subprocess.run(args + ["--overwrite"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set(datasets.load_from_disk(str(out))) == {"validation"}
    bad = subprocess.run(args[:-2] + ["--splits", "bogus", "--output_dir", str(tmp_path / "o2")], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "unknown CamVid split" in bad.stderr


def _raw_camvid(train_ids: np.ndarray) -> np.ndarray:
    """A train-id map of a CamVid frame back to CamVid's annotation values 0..11 (ignore -> Unlabelled)."""
    from spic_diffusers.data.camvid import CAMVID_CLASSES, CAMVID_TO_TRAIN_ID

    lut = np.full(256, CAMVID_CLASSES.index("Unlabelled"), dtype=np.uint8)
    for value, name in enumerate(CAMVID_CLASSES):
        if CAMVID_TO_TRAIN_ID[name] != 255:
            lut[CAMVID_TO_TRAIN_ID[name]] = value
    return lut[train_ids]


@pytest.mark.parametrize("frame", [0, 1])
def test_raw_camvid_annotations_are_told_from_train_ids(frame):
    from spic_diffusers.data.camvid import camvid_to_train_ids, looks_like_camvid_annotation
    from spic_diffusers.demo import demo_frame

    _, train_ids, _ = demo_frame(frame)
    raw = _raw_camvid(train_ids)
    assert looks_like_camvid_annotation(raw) and not looks_like_camvid_annotation(train_ids)
    assert np.array_equal(camvid_to_train_ids(raw), train_ids)
    # A train-id map with no class above 11 and road at the bottom (no car, no sky) is no CamVid annotation.
    street = np.full((40, 64), 2, dtype=np.uint8)
    street[30:] = 0
    assert not looks_like_camvid_annotation(street)


def _png_bomb(path, height, width):
    """A PNG whose header declares ``height x width`` grey pixels, with a few bytes of data: a bomb's header."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
                     + chunk(b"IEND", b""))


def test_images_over_the_pixel_budget_are_refused_from_their_headers(fake, tmp_path):
    import resource
    import time

    name = next((fake / "test").glob("*.png")).name
    _png_bomb(fake / "test" / name, 13000, 13000)
    _png_bomb(fake / "testannot" / name, 13000, 13000)
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    with pytest.raises(CamVidLayoutError, match="13000x13000.*budget"):
        convert_camvid(fake, tmp_path / "out", splits=["test"])
    assert time.monotonic() - start < 20
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < (1 << 30)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_like_a_png_is_refused_without_blocking(fake, tmp_path):
    os.mkfifo(fake / "val" / "stuck_00001.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(fake / "valannot" / "stuck_00001.png")
    with pytest.raises(CamVidLayoutError, match="not a regular file"):
        find_camvid_files(fake, "val")
    from spic_diffusers.data.dataset_files import DatasetFileError, open_dataset_image

    with pytest.raises(DatasetFileError, match="not a regular file"):
        open_dataset_image(fake / "val" / "stuck_00001.png")
