"""training/train_segmenter.py: real (tiny) UperNet and SegFormer trainings on a real `datasets` folder, resume,
loading, and the augmentation that keeps image and labels aligned."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spic_diffusers.codec import Segmenter
from spic_diffusers.data import make_synthetic_dataset
from spic_diffusers.training.segmenter import label_lut

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_segmenter.py"
FAST = ["--cpu", "--model_size", "tiny", "--input_size", "32,64", "--crop_size", "32,48",
        "--train_batch_size", "2", "--lr_warmup_steps", "1", "--max_validation_samples", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg") / "data"
    make_synthetic_dataset({"train": 4, "validation": 2}, 32, 64, seed=5).save_to_disk(str(folder))
    return folder


def _run(*args, env_threads=True):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, **env})


def test_train_resume_and_load_as_a_segmenter(data, tmp_path):
    out = tmp_path / "seg"
    first = _run("--dataset_name_or_path", str(data), "--output_dir", str(out), "--max_train_steps", "2",
                 "--validation_steps", "1", "--checkpointing_steps", "1", *FAST)
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((out / "segmenter_results.json").read_text())
    assert results["global_step"] == 2 and results["best_validation_miou"] >= 0
    classes = results["classes"]
    present = set(np.unique(np.concatenate([np.asarray(m).ravel() for m in
                                            __import__("datasets").load_from_disk(str(data))["train"]["semantic_map"]])))
    assert set(classes) == {int(c) for c in present if c != 255} and len(classes) < 19
    assert (out / "checkpoint-2" / "training_state.json").is_file()
    assert not list((out / "checkpoint-2").glob("custom_checkpoint_*.pkl"))  # counters as JSON, never pickled

    resumed = _run("--dataset_name_or_path", str(data), "--output_dir", str(out), "--max_train_steps", "3",
                   "--validation_steps", "1", "--checkpointing_steps", "1", "--resume_from_checkpoint", "latest",
                   *FAST)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "segmenter_results.json").read_text())["global_step"] == 3

    segmenter = Segmenter.from_pretrained(out)  # a model that knows a subset of the train classes
    assert segmenter.known_classes == sorted(classes)
    prediction = segmenter(np.zeros((40, 70, 3), np.uint8))
    assert prediction.shape == (40, 70) and set(np.unique(prediction)) <= set(classes)


def test_refuses_a_foreign_output_folder_and_bad_options(data, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    run = _run("--dataset_name_or_path", str(data), "--output_dir", str(foreign), *FAST)
    assert run.returncode == 2 and "is not empty" in run.stderr and "Traceback" not in run.stderr
    assert (foreign / "notes.txt").read_text() == "keep"
    run = _run("--dataset_name_or_path", str(data), "--output_dir", str(tmp_path / "x"), "--classes", "3,99", *FAST)
    assert run.returncode == 2 and "--classes" in run.stderr


def test_label_lut_maps_known_classes_and_ignores_the_rest():
    lut = label_lut([0, 2, 13])
    assert lut[0] == 0 and lut[2] == 1 and lut[13] == 2
    assert lut[1] == 255 and lut[255] == 255


def test_a_segformer_trains_too_and_bad_sizes_are_refused(data, tmp_path):
    out = tmp_path / "segformer"
    run = _run("--dataset_name_or_path", str(data), "--output_dir", str(out), "--max_train_steps", "1",
               "--validation_steps", "1", "--architecture", "segformer", *FAST)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["model_type"] == "segformer"
    assert Segmenter.from_pretrained(out)(np.zeros((32, 64, 3), np.uint8)).shape == (32, 64)
    run = _run("--dataset_name_or_path", str(data), "--output_dir", str(tmp_path / "y"), "--architecture",
               "upernet", *[a if a != "tiny" else "b0" for a in FAST])
    assert run.returncode == 2 and "not a upernet size" in run.stderr and "Traceback" not in run.stderr


def test_the_trained_upernet_is_what_transformers_loads(data, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    out = tmp_path / "upernet"
    run = _run("--dataset_name_or_path", str(data), "--output_dir", str(out), "--max_train_steps", "1",
               "--validation_split", "", *FAST)
    assert run.returncode == 0, run.stderr[-2000:]
    model = AutoModelForSemanticSegmentation.from_pretrained(out)
    assert model.config.model_type == "upernet" and model.config.backbone_config.model_type == "resnet"
    processor = AutoImageProcessor.from_pretrained(out)
    # the processor keeps the aspect ratio: a 2:1 frame is scaled, not stretched to the 1:2 training size
    shape = processor(images=Image.fromarray(np.zeros((64, 32, 3), np.uint8)), return_tensors="pt")["pixel_values"]
    assert tuple(shape.shape[-2:]) == (32, 16)
    shape = processor(images=Image.fromarray(np.zeros((8, 16, 3), np.uint8)), return_tensors="pt")["pixel_values"]
    assert tuple(shape.shape[-2:]) == (32, 64)
    segmenter = Segmenter.from_pretrained(out)
    assert segmenter(np.zeros((50, 30, 3), np.uint8)).shape == (50, 30)


def _striped_row(height=60, width=80):
    """A frame of vertical stripes whose colour tells its label: 0 red, 1 green, 2 blue, 3 white."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    labels = (np.arange(width)[None, :] * 4 // width).repeat(height, 0).astype(np.uint8)
    return {"image": Image.fromarray(colours[labels]), "semantic_map": labels}, colours


def test_augmented_crops_keep_image_and_labels_aligned():
    from spic_diffusers.training.segmenter import IMAGENET_MEAN, IMAGENET_STD, SegmentationExamples

    row, colours = _striped_row()
    lut = label_lut([0, 1, 2, 3])
    examples = SegmentationExamples([row] * 24, lut, (60, 80), augment=True, crop_size=(48, 64),
                                    scale_range=(0.5, 2.0), aspect_jitter=1.25, low_res_fraction=0.0)
    mean, std = np.array(IMAGENET_MEAN).reshape(3, 1, 1), np.array(IMAGENET_STD).reshape(3, 1, 1)
    padded = flipped = 0
    for index in range(24):
        sample = examples[index]
        pixels = sample["pixel_values"].numpy() * std + mean
        target = sample["labels"].numpy()
        assert pixels.shape == (3, 48, 64) and target.shape == (48, 64)
        padded += int((target == 255).any())
        inside = target != 255
        # away from stripe edges, every labelled pixel has its label's colour
        interior = inside.copy()
        interior[:, 1:] &= target[:, 1:] == target[:, :-1]
        interior[:, :-1] &= target[:, :-1] == target[:, 1:]
        colour = np.rint(pixels.transpose(1, 2, 0)[interior] * 255)
        assert np.abs(colour - colours[target[interior]]).max() <= 40
        labelled = target[inside]
        if labelled.size:
            flipped += int(labelled[0] > labelled[-1])
    assert padded and flipped  # scales below 1 pad with ignored pixels; some crops are mirrored


def test_class_weights_lift_rare_classes():
    from spic_diffusers.training.segmenter import class_weights

    rows = [{"semantic_map": np.array([[0] * 98 + [1] * 2], np.uint8)}]
    weights = class_weights(rows, label_lut([0, 1]), 2, "enet")
    assert weights[1] > 10 * weights[0]
    np.testing.assert_allclose(weights.numpy(), 1 / np.log(1.02 + np.array([0.98, 0.02])), rtol=1e-5)
    assert class_weights(rows, label_lut([0, 1]), 2, "none") is None


def test_fp16_on_a_cpu_is_refused_in_one_line(data, tmp_path):
    run = _run("--dataset_name_or_path", str(data), "--output_dir", str(tmp_path / "fp16"), "--mixed_precision",
               "fp16", *FAST)
    assert run.returncode == 2 and "fp16" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "fp16").exists()
