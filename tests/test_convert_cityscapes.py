"""The Cityscapes -> `datasets` converter, run on a fake tree with the official layout and naming."""

import json
import os
import runpy
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from spic_diffusers.data import SPICTransform
from spic_diffusers.data.cityscapes import CityscapesLayoutError, build_cityscapes_dataset, convert_cityscapes
from spic_diffusers.data.synthetic import make_scene, write_fake_cityscapes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_cityscapes_to_datasets.py"
H, W = 32, 64


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "cityscapes"
    seeds = write_fake_cityscapes(root, cities=2, per_city=2, splits=("train", "val"), height=H, width=W)
    return root, seeds


def _gt(root, split, fid, suffix):
    return root / "gtFine" / split / fid.rsplit("_", 2)[0] / f"{fid}_gtFine_{suffix}.png"


def _img(root, split, fid):
    return root / "leftImg8bit" / split / fid.rsplit("_", 2)[0] / f"{fid}_leftImg8bit.png"


def _check_rows(dataset, seeds):
    assert sorted(dataset["id"]) == sorted(seeds)
    for row in dataset:
        scene = make_scene(H, W, seeds[row["id"]])
        assert row["city"] == row["id"].rsplit("_", 2)[0]
        assert np.array_equal(np.array(row["image"]), scene.image), row["id"]
        assert np.array_equal(np.array(row["semantic_map"]), scene.semantic_map), row["id"]
        assert np.array_equal(np.array(row["instance_map"]), scene.instance_map), row["id"]


def test_convert_computes_train_ids_from_label_ids(fake, tmp_path):
    root, seeds = fake
    out = convert_cityscapes(root, tmp_path / "out")
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation"}
    assert list(dd["train"].features) == ["image", "semantic_map", "instance_map", "city", "id"]
    assert dd["train"].features["semantic_map"].mode == "L"
    _check_rows(dd["train"], seeds["train"])
    _check_rows(dd["validation"], seeds["val"])
    assert json.loads((out / "id2label.json").read_text())["0"] == "road"
    # A training script can use it unchanged.
    train = dd["train"].with_transform(SPICTransform((H, W), use_instance_edges=True))
    assert train[0]["segmentation_map"].shape == (20, H, W)


def test_train_ids_files_used_where_present(fake, tmp_path):
    root, seeds = fake
    # Only some frames have *_labelTrainIds.png, and one of them deliberately disagrees with its
    # label ids: that frame must take the train-id file, the others the computed map. A converter
    # that zipped sorted file lists would pair maps with the wrong images here.
    fid = "bochum_000000_000019"
    custom = make_scene(H, W, seeds["train"][fid]).semantic_map.copy()
    custom[:8, :8] = 18
    Image.fromarray(custom).save(_gt(root, "train", fid, "labelTrainIds"))
    dd = build_cityscapes_dataset(root, ["train"], cache_dir=tmp_path / "cache")
    rows = {row["id"]: row for row in dd["train"]}
    assert np.array_equal(np.array(rows[fid]["semantic_map"]), custom)
    for other, seed in seeds["train"].items():
        assert np.array_equal(np.array(rows[other]["image"]), make_scene(H, W, seed).image)
        if other != fid:
            assert np.array_equal(np.array(rows[other]["semantic_map"]), make_scene(H, W, seed).semantic_map)


def test_matching_by_id_after_renames(fake, tmp_path):
    root, seeds = fake
    # The first frame keeps only a *_labelTrainIds.png, so the sorted list of *_labelIds.png is one
    # shorter than the list of images: pairing by sort order would shift every later map by one.
    first = "aachen_000000_000019"
    Image.fromarray(make_scene(H, W, seeds["train"][first]).semantic_map).save(
        _gt(root, "train", first, "labelTrainIds")
    )
    _gt(root, "train", first, "labelIds").unlink()
    # Give aachen_000001 a new id that now sorts before aachen_000000: every file of the frame is
    # renamed together, so matching by id must still pair them with the right content.
    old, new = "aachen_000001_000019", "aachen_000000_000007"
    for path in list((root / "gtFine" / "train" / "aachen").glob(f"{old}_*")) + [_img(root, "train", old)]:
        path.rename(path.with_name(path.name.replace(old, new)))
    dd = build_cityscapes_dataset(root, ["train"], cache_dir=tmp_path / "cache")
    expected = dict(seeds["train"])
    expected[new] = expected.pop(old)
    _check_rows(dd["train"], expected)


def test_missing_label_file_reports_path(fake, tmp_path):
    root, _ = fake
    missing = _gt(root, "val", "lindau_000001_000019", "labelIds")
    missing.unlink()
    with pytest.raises(CityscapesLayoutError) as info:
        build_cityscapes_dataset(root, ["train", "val"], cache_dir=tmp_path / "cache")
    assert str(missing) in str(info.value)
    assert str(_img(root, "val", "lindau_000001_000019")) in str(info.value)


def test_missing_instance_and_orphan_files(fake, tmp_path):
    root, _ = fake
    _gt(root, "train", "aachen_000000_000019", "instanceIds").unlink()
    orphan = _img(root, "train", "bochum_000001_000019")
    orphan.unlink()
    with pytest.raises(CityscapesLayoutError) as info:
        build_cityscapes_dataset(root, ["train"], cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert str(_gt(root, "train", "aachen_000000_000019", "instanceIds")) in message
    assert str(_gt(root, "train", "bochum_000001_000019", "labelIds")) in message
    # Without instances the first problem is gone, the orphan is still reported.
    with pytest.raises(CityscapesLayoutError, match="without an image"):
        build_cityscapes_dataset(root, ["train"], with_instances=False, cache_dir=tmp_path / "cache")


def test_no_partial_output_on_failure(fake, tmp_path):
    root, _ = fake
    bad = _gt(root, "val", "lindau_000001_000019", "labelIds")
    Image.new("L", (W // 2, H // 2), 7).save(bad)  # wrong size: found only while reading
    parent = tmp_path / "outputs"
    parent.mkdir()
    with pytest.raises(CityscapesLayoutError, match="size mismatch") as info:
        convert_cityscapes(root, parent / "out")
    assert str(bad) in str(info.value)
    assert os.listdir(parent) == []
    # An existing output survives a failed overwrite.
    (parent / "out").mkdir()
    (parent / "out" / "keep.txt").write_text("old")
    with pytest.raises(CityscapesLayoutError):
        convert_cityscapes(root, parent / "out", overwrite=True)
    assert (parent / "out" / "keep.txt").read_text() == "old"
    assert sorted(os.listdir(parent)) == ["out"]


def test_bad_label_value_names_file_and_value(fake, tmp_path):
    root, _ = fake
    bad = _gt(root, "train", "aachen_000001_000019", "labelIds")
    labels = np.array(Image.open(bad))
    labels[0, 0] = 99
    Image.fromarray(labels).save(bad)
    with pytest.raises(CityscapesLayoutError, match=r"99") as info:
        build_cityscapes_dataset(root, ["train"], cache_dir=tmp_path / "cache")
    assert str(bad) in str(info.value)


def test_corrupt_image_names_file(fake, tmp_path):
    root, _ = fake
    bad = _img(root, "val", "frankfurt_000001_000019")
    bad.write_bytes(bad.read_bytes()[:-40])
    with pytest.raises(CityscapesLayoutError, match="cannot read") as info:
        build_cityscapes_dataset(root, ["val"], cache_dir=tmp_path / "cache")
    assert str(bad) in str(info.value)


def test_overwrite_protection(fake, tmp_path):
    root, seeds = fake
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_cityscapes(root, out, splits=["val"])
    convert_cityscapes(root, out, splits=["val"], overwrite=True)
    assert list(datasets.load_from_disk(str(out))) == ["validation"]


def test_script_cli(fake, tmp_path, capsys):
    root, seeds = fake
    main = runpy.run_path(str(SCRIPT))["main"]
    out = tmp_path / "out"
    assert main(["--cityscapes_root", str(root), "--output_dir", str(out), "--splits", "val", "--no_instances"]) == 0
    dd = datasets.load_from_disk(str(out))
    assert "instance_map" not in dd["validation"].features and len(dd["validation"]) == len(seeds["val"])
    assert main(["--cityscapes_root", str(root), "--output_dir", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["--cityscapes_root", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "o2")]) == 1
    assert "leftImg8bit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "PRIVATE" in help_text and "registration" in help_text


def test_precompute_coarse(fake, tmp_path):
    root, seeds = fake
    try:
        from spic_diffusers.codec import make_coarse  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="spic_diffusers.codec"):
            convert_cityscapes(root, tmp_path / "out", splits=["val"], precompute_coarse="webp:50")
        assert not (tmp_path / "out").exists()
        return
    out = convert_cityscapes(
        root,
        tmp_path / "out",
        splits=["val"],
        precompute_coarse="webp:50",
        coarse_image_size=(H, W),
        coarse_downsample=4,
    )
    row = datasets.load_from_disk(str(out))["validation"][0]
    assert row["coarse"].size == (W // 4, H // 4)


def test_bad_arguments(fake, tmp_path):
    root, _ = fake
    with pytest.raises(ValueError, match="split"):
        build_cityscapes_dataset(root, ["training"])
    with pytest.raises(ValueError, match="CODEC:QUALITY"):
        convert_cityscapes(root, tmp_path / "out", precompute_coarse="webp")


def test_num_proc_gives_same_rows(fake, tmp_path):
    root, seeds = fake
    dd = build_cityscapes_dataset(root, ["train"], num_proc=2, cache_dir=tmp_path / "cache")
    _check_rows(dd["train"], seeds["train"])
    assert dd["train"]["id"] == sorted(seeds["train"])
    # Errors found in a worker process still name the file.
    bad = _gt(root, "train", "bochum_000001_000019", "labelIds")
    Image.new("L", (8, 8), 7).save(bad)
    with pytest.raises(CityscapesLayoutError, match="size mismatch") as info:
        build_cityscapes_dataset(root, ["train"], num_proc=2, cache_dir=tmp_path / "cache2")
    assert str(bad) in str(info.value)


def test_offline_push_says_in_one_line_that_the_dataset_is_complete(fake, tmp_path, unreachable_hub, capsys):
    root, _ = fake
    main = runpy.run_path(str(SCRIPT))["main"]
    status = main(["--cityscapes_root", str(root), "--output_dir", str(tmp_path / "out"), "--splits", "val",
                   "--push_to_hub", "someone/cs", "--hub_token", "hf_x"])
    err = capsys.readouterr().err.strip()  # progress bars, then the error
    assert status == 1 and "Traceback" not in err
    assert "Hub cannot be reached" in err.splitlines()[-1] and "is complete" in err.splitlines()[-1]
    assert len(datasets.load_from_disk(str(tmp_path / "out"))["validation"]) == 4


def test_precompute_with_an_unavailable_codec_stops_before_any_work(fake, tmp_path, no_ffmpeg, capsys):
    root, _ = fake
    main = runpy.run_path(str(SCRIPT))["main"]
    status = main(["--cityscapes_root", str(root), "--output_dir", str(tmp_path / "out"),
                   "--precompute_coarse", "hevc:35"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and err.count("\n") == 0 and "hevc coarse codec needs ffmpeg" in err
    assert not (tmp_path / "out").exists()


def test_maps_over_the_pixel_budget_are_refused_from_their_headers(fake, tmp_path):
    from test_data_camvid import _png_bomb

    root, _ = fake
    bomb = _gt(root, "val", "frankfurt_000001_000019", "labelIds")
    _png_bomb(bomb, 13000, 13000)
    with pytest.raises(CityscapesLayoutError, match="13000x13000.*budget") as info:
        build_cityscapes_dataset(root, ["val"], cache_dir=tmp_path / "cache")
    assert str(bomb) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_an_image_is_refused_without_blocking(fake, tmp_path):
    root, _ = fake
    image = _img(root, "val", "frankfurt_000001_000019")
    image.unlink()
    os.mkfifo(image)
    with pytest.raises(CityscapesLayoutError, match="not a regular file"):
        build_cityscapes_dataset(root, ["val"], cache_dir=tmp_path / "cache")
