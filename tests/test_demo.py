"""The demo: shipped model, end to end through the real codec, and its input/output checks."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from spic_diffusers import SPICPipeline
from spic_diffusers.cli import main
from spic_diffusers.codec import decode_parts
from spic_diffusers.data import make_scene
from spic_diffusers.demo import (
    OUTPUT_FILES,
    DemoError,
    boundary_mask,
    evaluate_held_out,
    load_pipeline,
    masked_psnr,
    region_colour_errors,
    run_demo,
    DEMO_FRAMES,
    demo_frame,
    load_shipped_segmenter,
    shipped_model_path,
    shipped_segmenter_path,
    target_size,
)

# A small, fast setting: 4 denoising steps (20-step spacing, t <= 200) on 32x64 images.
FAST = ["--steps", "20", "--max_timestep", "200", "--size", "32,64"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two OpenMP threads on a machine shared with other jobs run many times slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline():
    pipe = load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name, size", [("default", [360, 480]), ("fast", [360, 480]), ("synthetic", [64, 128])])
def test_shipped_models_are_small_safetensors_with_a_card(name, size):
    folder = shipped_model_path(name)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 32 * 2**20
    assert not list(folder.rglob("*.bin"))
    card = (folder / "README.md").read_text()
    assert "{{" not in card and "}}" not in card
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "diffusers" and "spic" in meta["tags"]
    config = json.loads((folder / "unet" / "config.json").read_text())
    assert config["sample_size"] == size
    with pytest.raises(DemoError, match="no shipped model"):
        shipped_model_path("nonexistent")


def test_shipped_segmenter_knows_camvid_classes_in_train_ids():
    from spic_diffusers.data.camvid import CAMVID_TRAIN_IDS

    segmenter = load_shipped_segmenter()
    assert tuple(segmenter.known_classes) == CAMVID_TRAIN_IDS
    card = (shipped_segmenter_path() / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["pipeline_tag"] == "image-segmentation" and meta["model-index"]
    image, labels, _ = demo_frame(1)
    prediction = segmenter(image)
    assert prediction.shape == labels.shape
    labelled = labels != 255
    assert (prediction[labelled] == labels[labelled]).mean() > 0.75  # a real photograph, mostly labelled right
    assert meta["license"] == "cc-by-nc-4.0" and "upernet" in meta["tags"]


def test_shipped_assets_fit_the_package_budget():
    """Every model and frame the package ships, together, stays under 60 MB."""
    assets = Path(shipped_segmenter_path()).parent
    total = sum(p.stat().st_size for p in assets.rglob("*") if p.is_file())
    assert total < 60e6, f"{total / 1e6:.1f} MB"


def test_demo_frames_are_real_test_frames_with_maps():
    for index in range(len(DEMO_FRAMES)):
        image, labels, source = demo_frame(index)
        assert image.shape == (360, 480, 3) and labels.shape == (360, 480) and "CamVid test frame" in source
        assert set(np.unique(labels)) <= set(range(19)) | {255} and len(np.unique(labels)) >= 8
    with pytest.raises(DemoError, match="frame must be"):
        demo_frame(len(DEMO_FRAMES))


def test_demo_end_to_end(pipeline, tmp_path):
    out = tmp_path / "demo"
    logged = []
    result = run_demo(out, pipeline=pipeline, size=(32, 64), num_inference_steps=20, log=logged.append)
    for name in OUTPUT_FILES.values():
        assert (out / name).is_file(), name
    stream = (out / "scene.spic").read_bytes()
    parts = decode_parts(stream)
    assert (parts.height, parts.width) == (32, 64) and parts.coarse_codec == "hevc"
    assert result.bytes["total"] == len(stream) and 0 < result.bpp["total"] < 24
    recon = np.asarray(Image.open(out / "reconstruction.png"))
    assert recon.shape == (32, 64, 3)
    assert recon.std() > 10  # an image, not a flat field
    grid = Image.open(out / "side_by_side.png")
    assert grid.width > 4 * 64 and grid.height > 32
    saved = json.loads((out / "metrics.json").read_text())
    for kind in ("spic", "coarse"):
        assert 5 < saved[kind]["psnr"] < 60
        assert saved[kind]["region_colour_error"] >= 0
    assert saved["spic"]["psnr"] == pytest.approx(result.spic["psnr"])
    text = "\n".join(logged)
    assert f"{len(stream)} bytes" in text and "bpp" in text and "PSNR" in text and "CamVid test frame" in text


def test_demo_cli_refuses_to_overwrite_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--output_dir", str(out), *FAST]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["demo", "--output_dir", str(out), *FAST, "--frame", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["demo", "--output_dir", str(out), *FAST, "--frame", "1", "--overwrite"]) == 0
    assert (out / "original.png").read_bytes() != before["original.png"]


def _write_inputs(folder: Path, height: int, width: int) -> tuple[Path, Path]:
    scene = make_scene(height, width, seed=11)
    image, seg = folder / "photo.png", folder / "map.png"
    Image.fromarray(scene.image).save(image)
    Image.fromarray(scene.semantic_map, mode="L").save(seg)
    return image, seg


def test_demo_on_user_files_resizes_to_a_size_the_model_accepts(pipeline, tmp_path):
    image, seg = _write_inputs(tmp_path, 50, 98)
    result = run_demo(tmp_path / "out", pipeline=pipeline, image=image, segmentation=seg, size="native",
                      num_inference_steps=20, log=lambda _: None)
    assert (result.height, result.width) == (48, 96)
    assert Image.open(tmp_path / "out" / "reconstruction.png").size == (96, 48)
    assert target_size((50, 98), pipeline, 4, "model") == (360, 480)
    with pytest.raises(DemoError, match="multiples of 4"):
        target_size((50, 98), pipeline, 4, (30, 64))
    with pytest.raises(DemoError, match="too large"):
        target_size((3000, 4000), pipeline, 4, "native")


@pytest.mark.parametrize("problem", ["missing_image", "missing_map", "garbage_image", "rgb_map", "bad_ids",
                                     "size_mismatch", "image_only"])
def test_demo_cli_reports_bad_inputs_clearly(tmp_path, capsys, problem):
    image, seg = _write_inputs(tmp_path, 32, 64)
    args = ["--image", str(image), "--segmentation", str(seg)]
    expected = {
        "missing_image": "no such image", "missing_map": "no such segmentation map",
        "garbage_image": "cannot read image", "rgb_map": "mode RGB", "bad_ids": "not train ids",
        "size_mismatch": "same size", "image_only": "pass both",
    }[problem]  # fmt: skip
    if problem == "missing_image":
        args[1] = str(tmp_path / "nope.png")
    elif problem == "missing_map":
        args[3] = str(tmp_path / "nope.png")
    elif problem == "garbage_image":
        image.write_bytes(b"\x89PNG not really")
    elif problem == "rgb_map":
        Image.new("RGB", (64, 32)).save(seg)
    elif problem == "bad_ids":
        Image.fromarray(np.full((32, 64), 40, np.uint8), mode="L").save(seg)
    elif problem == "size_mismatch":
        Image.fromarray(np.zeros((16, 64), np.uint8), mode="L").save(seg)
    elif problem == "image_only":
        args = args[:2]
    assert main(["demo", "--output_dir", str(tmp_path / "out"), *args, *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spic demo: error:") and expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_demo_falls_back_to_webp_without_ffmpeg(pipeline, tmp_path, no_ffmpeg):
    logged = []
    result = run_demo(tmp_path / "out", pipeline=pipeline, size=(32, 64), num_inference_steps=20,
                      log=logged.append)
    assert result.coarse_codec == "webp"
    assert any("'hevc' is unavailable" in line and "'webp' at quality 30" in line for line in logged)
    assert any("NOTE" in line and "webp" in line for line in logged)
    assert decode_parts((tmp_path / "out" / "scene.spic").read_bytes()).coarse_codec == "webp"


def test_semantic_consistency_figures():
    labels = np.zeros((8, 8), np.uint8)
    labels[:, 4:] = 13
    edge = boundary_mask(labels, width=2)
    assert edge[:, 2:6].all() and not edge[:, :2].any() and not edge[:, 6:].any()
    truth = np.zeros((8, 8, 3), np.uint8)
    truth[:, 4:] = 200
    shifted = truth.copy()
    shifted[:, 4:] += np.array([3, 4, 0], np.uint8)
    errors = region_colour_errors(truth, shifted, labels)
    assert errors == {"road": 0.0, "car": pytest.approx(5.0)}
    assert masked_psnr(truth, truth, edge) == float("inf")
    assert np.isnan(masked_psnr(truth, shifted, np.zeros((8, 8), bool)))


def test_held_out_check_runs(pipeline):
    import copy

    unet = copy.deepcopy(pipeline.unet)
    unet.register_to_config(sample_size=[48, 64])  # the held-out scenes come at the model's size: keep it small
    small = SPICPipeline(unet=unet, scheduler=pipeline.scheduler)
    small.set_progress_bar_config(disable=True)
    summary = evaluate_held_out(small, 1, num_inference_steps=20)
    assert summary["num_scenes"] == 1 and summary["size"] == [48, 64]
    assert set(summary["spic"]) == {"psnr", "boundary_psnr", "region_colour_error"}
    assert summary["scenes_where_spic_psnr_is_higher"] in (0, 1)


def test_demo_cli_on_the_photograph_prints_miou_with_the_shipped_segmenter(tmp_path, capsys):
    out = tmp_path / "photo"
    assert main(["demo", "--output_dir", str(out), "--frame", "1"]) == 0  # the fast student at 360x480
    printed = capsys.readouterr().out
    assert "CamVid test frame Seq05VD_f04920" in printed and "mIoU of the segmenter" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert (saved["height"], saved["width"]) == (360, 480)
    for kind in ("spic", "coarse"):
        assert 0 <= saved[kind]["miou"] <= 1 and 0 < saved[kind]["miou_original"] <= 1
    assert main(["demo", "--output_dir", str(tmp_path / "synth"), *FAST, "--synthetic", "--no_segmenter"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic street scene" in printed and "mIoU" not in printed


def test_demo_adds_miou_with_a_segmenter(tmp_path, capsys):
    from conftest import save_tiny_segformer

    save_tiny_segformer(tmp_path / "seg", 32, 64)
    out = tmp_path / "out"
    assert main(["demo", "--output_dir", str(out), *FAST, "--segmenter", str(tmp_path / "seg")]) == 0
    assert "mIoU of the segmenter" in capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    for kind in ("spic", "coarse"):
        assert 0 <= saved[kind]["miou"] <= 1


def test_demo_keeps_an_output_that_appears_while_it_runs(pipeline, tmp_path, monkeypatch):
    """Outputs are checked at the start and written atomically at the end, never replacing a newcomer."""
    import spic_diffusers.demo as demo_module

    out = tmp_path / "demo"
    real_measure = demo_module.measure

    def measure_then_someone_writes(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / OUTPUT_FILES["reconstruction"]).write_text("written meanwhile")
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(demo_module, "measure", measure_then_someone_writes)
    with pytest.raises(DemoError, match="appeared while the demo ran"):
        run_demo(out, pipeline=pipeline, size=(32, 64), num_inference_steps=20, log=lambda line: None)
    assert (out / OUTPUT_FILES["reconstruction"]).read_text() == "written meanwhile"
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_shipped_configs_name_no_build_folder():
    from spic_diffusers.demo import shipped_model_path

    assets = shipped_model_path().parent
    for path in assets.rglob("*.json"):
        assert "_name_or_path" not in json.loads(path.read_text()), path
