"""Training never loses finished work, never runs pickled code on resume, and stops on a NaN loss."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from spic_diffusers.training import TrainingInputError, main
from spic_diffusers.training.loop import (
    NonFiniteLossError,
    TrainingProgress,
    list_checkpoints,
    register_checkpoint_state,
    save_checkpoint,
)

from test_training import _args, dataset_dir, one_thread  # noqa: F401  (shared fixtures)

ONE_STEP = ("--checkpointing_steps", "1", "--train_batch_size", "1", "--max_train_steps", "1")


class _FailingState:
    """A state accelerate saves with the checkpoint, failing like a process killed half-way through saving."""

    def state_dict(self):
        raise KeyboardInterrupt("killed while saving")

    def load_state_dict(self, state):
        pass


def test_old_checkpoint_is_removed_only_after_the_new_one_is_complete(tmp_path):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    progress = TrainingProgress()
    progress.global_step = 1
    register_checkpoint_state(accelerator, progress)
    first = save_checkpoint(accelerator, str(tmp_path), 1, total_limit=1)
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [1]
    accelerator.register_for_checkpointing(_FailingState())
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, str(tmp_path), 2, total_limit=1)
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [1], "the only finished checkpoint was deleted"
    assert (Path(first) / "training_state.json").is_file()
    assert model is not None


def test_explicit_resume_that_finds_nothing_fails(dataset_dir, tmp_path):  # noqa: F811
    with pytest.raises(TrainingInputError, match="no checkpoint"):
        main(_args(dataset_dir, tmp_path / "empty", *ONE_STEP, "--resume_from_checkpoint", "latest"))


class _Planted:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):  # unpickling this creates the marker file: proof that code ran
        return (open, (self.marker, "w"))


def test_resume_unpickles_nothing_and_continues(dataset_dir, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    main(_args(dataset_dir, out, *ONE_STEP))
    checkpoint = out / "checkpoint-1"
    assert not list(checkpoint.glob("custom_checkpoint_*.pkl")), "training state must not be pickled"
    assert json.loads((checkpoint / "training_state.json").read_text())["progress"]["global_step"] == 1
    marker = tmp_path / "code-ran"
    for index in range(2):
        (checkpoint / f"custom_checkpoint_{index}.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))
    resume = ("--checkpointing_steps", "1", "--train_batch_size", "1", "--max_train_steps", "2",
              "--resume_from_checkpoint", "latest")
    with pytest.raises(TrainingInputError, match="pickled"):
        main(_args(dataset_dir, out, *resume))
    assert not marker.exists(), "resuming ran code planted in a checkpoint"
    for planted in checkpoint.glob("custom_checkpoint_*.pkl"):
        planted.unlink()
    summary = main(_args(dataset_dir, out, *resume))
    assert summary["global_step"] == 2 and summary["ranks"][0]["steps_this_run"] == 1


def test_checkpoint_without_its_training_state_is_refused(dataset_dir, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    main(_args(dataset_dir, out, *ONE_STEP))
    (out / "checkpoint-1" / "training_state.json").unlink()
    with pytest.raises(TrainingInputError, match="training_state.json"):
        main(_args(dataset_dir, out, "--checkpointing_steps", "1", "--train_batch_size", "1",
                   "--max_train_steps", "2", "--resume_from_checkpoint", "latest"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(dataset_dir, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    # A learning rate no model survives: step 1's loss is finite, its update overflows the weights, and
    # step 2's loss is not a number.
    with pytest.raises(NonFiniteLossError, match="step 2.*checkpoint-1"):
        main(_args(dataset_dir, out, "--checkpointing_steps", "1", "--train_batch_size", "1",
                   "--max_train_steps", "4", "--learning_rate", "1e30"))
    assert [s for s, _ in list_checkpoints(str(out))] == [1]
    assert not (out / "model_index.json").exists(), "a diverged run must not save a pipeline"


def test_fp16_on_a_cpu_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """Accelerate would take fp16 autocast on a CPU without a word; the option or `accelerate launch`'s."""
    from spic_diffusers.training import cli

    argv = ["--dataset_name_or_path", str(tmp_path / "data"), "--output_dir", str(tmp_path / "run"), "--cpu"]
    assert cli(argv + ["--mixed_precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --mixed_precision fp16 needs a CUDA GPU") and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert cli(argv) == 2 and "bf16" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# --------------------------------------------------------------- damaged checkpoints, one line each


RESUME = ("--checkpointing_steps", "1", "--train_batch_size", "1", "--max_train_steps", "2",
          "--resume_from_checkpoint", "latest")


@pytest.fixture()
def finished_run(dataset_dir, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    main(_args(dataset_dir, out, *ONE_STEP, "--use_ema"))
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign_weights(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"classifier.weight": torch.zeros(3, 3)}, str(path))


def _negative_step(path: Path) -> None:
    state = json.loads(path.read_text())
    state["progress"]["global_step"] = -5
    path.write_text(json.dumps(state))


def _wrong_ema_shape(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    weights["shadow.0"] = torch.zeros(7, 7)
    save_file(weights, str(path))


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("model.safetensors", _truncate, "model.safetensors cannot be read"),
        ("model.safetensors", _foreign_weights, "model.safetensors does not hold this model's weights"),
        ("optimizer.bin", lambda path: path.write_bytes(b"garbage" * 100), "optimizer.bin is not a zip-format"),
        ("optimizer.bin", _truncate, "optimizer.bin"),
        ("training_state.json", _negative_step, "training_state.json is damaged.*global_step"),
        ("training_state.json", lambda path: path.write_text("[1, 2]"), "training_state.json is damaged"),
        ("ema.safetensors", _wrong_ema_shape, "ema.safetensors does not fit this model"),
        ("ema.safetensors", _truncate, "ema.safetensors does not fit this model"),
    ],
)
def test_every_resume_failure_is_one_line_naming_the_file(finished_run, dataset_dir, name, damage, message):  # noqa: F811
    damage(finished_run / "checkpoint-1" / name)
    with pytest.raises(TrainingInputError, match=message):
        main(_args(dataset_dir, finished_run, *RESUME, "--use_ema"))
    assert [s for s, _ in list_checkpoints(str(finished_run))] == [1], "a failed resume must not save anything"
