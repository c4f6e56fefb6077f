"""training/train_segmenter.py: a real (tiny) SegFormer training on a real `datasets` folder, resume, loading."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spic_diffusers.codec import Segmenter
from spic_diffusers.data import make_synthetic_dataset
from spic_diffusers.training.segmenter import label_lut

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_segmenter.py"
FAST = ["--cpu", "--model_size", "tiny", "--input_size", "32,64", "--train_batch_size", "2",
        "--lr_warmup_steps", "1", "--max_validation_samples", "2"]  # fmt: skip


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
