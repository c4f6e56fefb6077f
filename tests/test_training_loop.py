"""The loop the three trainers share (training/loop.py), on a tiny real model: gradient accumulation through
`accelerator.accumulate`, EMA and counters through accelerate's state hooks, and exact resume."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from diffusers.training_utils import EMAModel

from spic_diffusers.training.arguments import add_training_arguments, check_training_args
from spic_diffusers.training.dataset import ShardedEpochSampler
from spic_diffusers.training.loop import TrainingRun, list_checkpoints, make_accelerator, step_generator

MARKER = "loop_test_args.json"
DATA = torch.linspace(-1, 1, 8 * 3).reshape(8, 3)
TARGET = DATA @ torch.tensor([[0.5, -1.0], [2.0, 0.3], [-0.7, 1.1]]) + 0.2


def _fresh_accelerate_state() -> None:
    """Each run builds its own Accelerator, as a new process would."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def leave_no_accelerate_state():
    yield
    _fresh_accelerate_state()


def _args(output_dir, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_training_arguments(parser, {"output_dir": str(output_dir)}, leave_out=("lr_scheduler",))
    args = parser.parse_args(["--cpu", *extra])
    check_training_args(args)
    return args


def _train(args, steps: int, *, optimizer: str = "sgd", ema_decay: float | None = None, noisy: bool = False):
    """Train a linear model for `steps` optimiser steps with the shared loop; returns (run, model, ema)."""
    _fresh_accelerate_state()
    accelerator = make_accelerator(args, MARKER)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMAModel(model.parameters(), decay=ema_decay) if ema_decay is not None else None
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    model, opt, schedule = accelerator.prepare(model, opt, schedule)
    run = TrainingRun(accelerator, model, opt, schedule, output_dir=args.output_dir, marker=MARKER,
                      max_train_steps=steps, checkpointing_steps=args.checkpointing_steps,
                      checkpoints_total_limit=args.checkpoints_total_limit, ema=ema)
    run.resume(args.resume_from_checkpoint)
    run.start(args)
    sampler = ShardedEpochSampler(len(DATA), 1, 0, seed=args.seed)
    size = args.train_batch_size

    def loader_for_epoch(epoch: int, skip: int):
        sampler.set_epoch(epoch, start=skip * size)
        order = list(sampler)
        return [torch.tensor(order[i:i + size]) for i in range(0, len(order) - size + 1, size)]

    steps_per_epoch = len(DATA) // size // args.gradient_accumulation_steps
    run.micro_steps, run.rows = [], []
    for micro_step, rows in ([] if run.done else run.micro_batches(loader_for_epoch, steps_per_epoch)):
        run.micro_steps.append(micro_step)
        run.rows.append(rows.tolist())
        inputs = DATA[rows]
        if noisy:  # a draw of its own per micro-batch, as the trainers' augmentations
            inputs = inputs + 0.1 * torch.randn(inputs.shape, generator=step_generator(args.seed, micro_step, 0))
        with accelerator.accumulate(model):
            accelerator.backward(torch.nn.functional.mse_loss(model(inputs), TARGET[rows]))
        if accelerator.sync_gradients:
            run.apply_gradients()
            run.end_step(size * args.gradient_accumulation_steps)
            if run.done:
                break
    return run, accelerator.unwrap_model(model), ema


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_accumulated_micro_batches_update_like_one_large_batch(tmp_path):
    run, accumulated, _ = _train(_args(tmp_path / "a", "--train_batch_size", "2", "--gradient_accumulation_steps",
                                       "2"), 2)
    assert run.global_step == 2 and run.micro_steps == [0, 1, 2, 3] and run.progress.samples_seen == 8
    large = _weights(_train(_args(tmp_path / "b", "--train_batch_size", "4"), 2)[1])
    stepwise = _weights(_train(_args(tmp_path / "c", "--train_batch_size", "2"), 4)[1])
    for a, b in zip(_weights(accumulated), large, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # An optimiser step per micro-batch lands elsewhere: the comparison above can fail.
    assert any((a - s).abs().max() > 1e-3 for a, s in zip(_weights(accumulated), stepwise, strict=True))


def test_ema_and_counters_travel_through_the_state_hooks(tmp_path):
    out = tmp_path / "run"
    run, model, ema = _train(_args(out, "--train_batch_size", "2", "--checkpointing_steps", "1"), 3, ema_decay=0.5)
    checkpoint = out / "checkpoint-3"
    assert [s for s, _ in list_checkpoints(str(out))] == [1, 2, 3] and (out / MARKER).is_file()
    assert not list(checkpoint.glob("custom_checkpoint_*.pkl")) and (checkpoint / "ema.safetensors").is_file()
    state = json.loads((checkpoint / "training_state.json").read_text())
    assert state["progress"] == {"global_step": 3, "samples_seen": 6} and state["ema"]["optimization_step"] == 3
    shadow = [p.clone() for p in ema.shadow_params]
    assert any(not torch.equal(s, w) for s, w in zip(shadow, _weights(model))), "the EMA should lag the weights"

    resumed, model2, ema2 = _train(_args(out, "--train_batch_size", "2", "--resume_from_checkpoint", "latest"), 3,
                                   ema_decay=0.5)
    assert resumed.global_step == 3 and resumed.progress.samples_seen == 6 and resumed.steps_this_run == 0
    assert ema2.optimization_step == 3
    for restored, saved in zip(ema2.shadow_params, shadow, strict=True):
        assert torch.equal(restored, saved)
    for restored, saved in zip(_weights(model2), _weights(model), strict=True):
        assert torch.equal(restored, saved)


def test_a_resumed_accumulating_run_repeats_the_uninterrupted_one(tmp_path):
    common = ("--train_batch_size", "1", "--gradient_accumulation_steps", "2", "--checkpointing_steps", "1")
    _, straight, straight_ema = _train(_args(tmp_path / "straight", *common), 6, optimizer="adamw", ema_decay=0.9,
                                       noisy=True)
    first, _, _ = _train(_args(tmp_path / "split", *common), 5, optimizer="adamw", ema_decay=0.9, noisy=True)
    assert first.micro_steps == list(range(10))
    # A run killed while saving leaves a .tmp folder: never taken for a checkpoint, removed at the restart.
    (tmp_path / "split" / "checkpoint-9.tmp").mkdir()
    run, resumed, resumed_ema = _train(_args(tmp_path / "split", *common, "--resume_from_checkpoint", "latest"), 6,
                                       optimizer="adamw", ema_decay=0.9, noisy=True)
    # An epoch is 4 steps of 2 micro-batches: step 6, the second epoch's second, trains micro-batches 10 and 11.
    assert run.micro_steps == [10, 11] and run.steps_this_run == 1
    assert not (tmp_path / "split" / "checkpoint-9.tmp").exists()
    for a, b in zip(_weights(resumed), _weights(straight), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(resumed_ema.shadow_params, straight_ema.shadow_params, strict=True):
        assert torch.equal(a, b)


def test_an_epoch_leaves_out_micro_batches_short_of_a_step(tmp_path):
    """8 rows, batches of 2, 3 per step: one step per epoch. The fourth batch of an epoch would start a step that
    the next epoch finishes, so it is left out and every epoch (and every resume) begins on a step boundary."""
    run, _, _ = _train(_args(tmp_path / "run", "--train_batch_size", "2", "--gradient_accumulation_steps", "3"), 2)
    assert run.micro_steps == list(range(6)) and run.global_step == 2
    sampler = ShardedEpochSampler(len(DATA), 1, 0, seed=0)
    sampler.set_epoch(1)
    assert run.rows[3] == list(sampler)[:2], "the second step starts with the second epoch's first batch"


def test_shared_options_are_checked(tmp_path):
    for extra, message in [(("--gradient_accumulation_steps", "0"), "gradient_accumulation_steps must be >= 1"),
                           (("--learning_rate", "0"), "learning_rate must be > 0"),
                           (("--ema_decay", "1.5"), "ema_decay must be in"),
                           (("--resume_from_checkpoint", str(tmp_path / "none")), "is not a folder")]:
        with pytest.raises(ValueError, match=message):
            _args(tmp_path, *extra)
