"""The training loop every trainer of the project shares: the receiver (`trainer.py`), the distiller (`distill.py`)
and the segmenter (`segmenter.py`) differ in their model, data and loss, not in what is below.

- `make_accelerator`: one device rule (the CPU when asked or when neither CUDA nor MPS is there) and one
  mixed-precision check, before anything is written.
- Checkpoints (`save_checkpoint`, `resume_checkpoint`): accelerate's `save_state` into `checkpoint-N.tmp`, then a
  rename, so a folder is whole or absent. Step counters and EMA ride along through accelerate's save/load state
  hooks (`register_checkpoint_state`) as JSON and safetensors, never pickled; a checkpoint holding pickled extras
  is refused before accelerate reads it.
- `TrainingRun`: the run marker and `.tmp` clean-up, the epoch loop that skips what a resumed run has already
  trained on, gradient accumulation through `accelerator.accumulate`, the optimiser step (clipping, a NaN stop
  all processes agree on, EMA) and checkpoints when due.

A trainer whose micro-batch `k` of step `s` draws its randomness from `(seed, s * accumulation + k)` and whose epoch
order depends on (seed, epoch) only (`dataset.ShardedEpochSampler`) resumes into exactly the uninterrupted run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from .arguments import TrainingInputError

logger = logging.getLogger("spic_diffusers.training")

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINING_STATE_FILE = "training_state.json"  # step counters and EMA scalars, stored as JSON (no pickle)
EMA_WEIGHTS_FILE = "ema.safetensors"


class NonFiniteLossError(TrainingInputError):
    """The loss or the gradients became NaN or infinite: training stops, keeping the last good checkpoint."""


# ------------------------------------------------------------------------------------------ accelerator


def train_on_cpu(requested: bool) -> bool:
    """The one device rule of the trainers: the CPU when asked, or when there is neither CUDA nor MPS.

    On a CPU the Accelerator must be told (`cpu=True`): under `accelerate launch --multi_gpu` a plain one would
    run independent trainings instead of ranks of one."""
    mps = getattr(torch.backends, "mps", None)
    return bool(requested) or not (torch.cuda.is_available() or (mps is not None and mps.is_available()))


def check_mixed_precision(mixed_precision: str | None, use_cpu: bool) -> None:
    """Refuse fp16 autocast on a CPU (the option's, or `accelerate launch --mixed_precision`'s), which
    Accelerate would otherwise accept without a word; bf16 is the CPU's reduced precision."""
    if mixed_precision is None:
        mixed_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if use_cpu and mixed_precision == "fp16":
        raise TrainingInputError(
            "--mixed_precision fp16 needs a CUDA GPU and this run trains on the CPU: use bf16 (fast on CPUs with "
            "AVX512-BF16 or AMX, see pipelines.pipeline_spic.native_bf16) or no"
        )


def make_accelerator(args: argparse.Namespace, marker: str, *, log_with: str | None = None,
                     logging_dir: str | None = None, check_cpu: Callable[[int], None] | None = None):
    """The `Accelerator` of a training described by the shared options (`arguments.SHARED_OPTIONS`).

    Refuses first, before anything is written: an output folder that is neither empty nor a run of this trainer
    (recognised by its `marker` file), fp16 on a CPU, and what `check_cpu(processes on this machine)` refuses when
    training on the CPU. Seeds every generator with `args.seed`.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    check_output_dir(args.output_dir, args.overwrite_output_dir, args.resume_from_checkpoint is not None, marker)
    use_cpu = train_on_cpu(args.cpu)
    check_mixed_precision(args.mixed_precision, use_cpu)
    if use_cpu and check_cpu is not None:  # `accelerate launch` (torchrun) says how many processes share it
        check_cpu(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=getattr(args, "gradient_accumulation_steps", 1),
        cpu=use_cpu,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=logging_dir),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:  # every process would say the same
        logger.setLevel(logging.WARNING)
    set_seed(args.seed)
    return accelerator


def stop_unless_finite(accelerator, finite: bool, grad_norm, step: int, output_dir: str, what: str,
                       advice: str) -> None:
    """Stop every process together when `what` (or the clipped gradient norm) is NaN or infinite at `step`.

    A single rank raising would leave the others waiting, so the verdict is summed over processes first; the
    error names the last good checkpoint, and nothing is saved.
    """
    if grad_norm is not None:
        finite = finite and bool(torch.isfinite(torch.as_tensor(grad_norm)).all())
    bad = accelerator.reduce(torch.tensor([0.0 if finite else 1.0], device=accelerator.device), "sum")
    if bad.item() > 0:
        kept = list_checkpoints(output_dir)
        raise NonFiniteLossError(
            f"{what} became NaN or infinite at step {step}; training stopped without saving "
            + (f"(the last good checkpoint is {kept[-1][1]})" if kept else "(no checkpoint was saved yet)")
            + f"; {advice}"
        )


# ------------------------------------------------------------------------------------------ output folder


def list_checkpoints(folder: str) -> list[tuple[int, str]]:
    """Finished checkpoints in `folder`, oldest first, as (step, path)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isdir(os.path.join(folder, name)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


def check_output_dir(output_dir: str, overwrite: bool, resuming: bool, marker: str) -> None:
    """Refuse a non-empty output folder that is not a previous run of this trainer (unless told to).

    A previous run is recognised by its `marker` file (the run's arguments, written at start)."""
    if not os.path.exists(output_dir):
        return
    if not os.path.isdir(output_dir):
        raise TrainingInputError(f"--output_dir {output_dir!r} exists and is not a folder")
    entries = os.listdir(output_dir)
    if not entries or overwrite or os.path.isfile(os.path.join(output_dir, marker)):
        return
    raise TrainingInputError(
        f"--output_dir {output_dir!r} is not empty and is not a previous run of this script "
        f"(no {marker}); choose another folder or pass --overwrite_output_dir"
        + (" (resuming needs the folder of the run to resume)" if resuming else "")
    )


def write_run_marker(accelerator, output_dir: str, marker: str, args: argparse.Namespace) -> None:
    """Start (or restart) a run in `output_dir`: remove checkpoints a killed run left half-written and write the
    run's arguments into `marker`, which also tells a later run that the folder is this trainer's."""
    if accelerator.is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        for name in os.listdir(output_dir):
            if name.startswith("checkpoint-") and name.endswith(".tmp"):
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
        with open(os.path.join(output_dir, marker), "w") as f:
            json.dump({k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                       if k != "hub_token"}, f, indent=2)
    accelerator.wait_for_everyone()


# ------------------------------------------------------------------------------------------ checkpoint state


class TrainingProgress:
    """Step counters saved with every checkpoint (as JSON, through `register_checkpoint_state`)."""

    def __init__(self) -> None:
        self.global_step = 0
        self.samples_seen = 0

    def state_dict(self) -> dict[str, Any]:
        return {"global_step": self.global_step, "samples_seen": self.samples_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counters = {"global_step": state["global_step"], "samples_seen": state.get("samples_seen", 0)}
        for name, value in counters.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        self.global_step, self.samples_seen = counters["global_step"], counters["samples_seen"]


def save_training_state(folder: str, progress, ema) -> None:
    """Step counters and EMA into `folder` as JSON and safetensors, so resuming unpickles nothing."""
    from safetensors.torch import save_file

    state: dict[str, Any] = {"progress": progress.state_dict()}
    if ema is not None:
        ema_state = ema.state_dict()
        shadow = ema_state.pop("shadow_params")
        state["ema"] = {k: v for k, v in ema_state.items() if isinstance(v, (int, float, bool, str)) or v is None}
        save_file({f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(shadow)},
                  os.path.join(folder, EMA_WEIGHTS_FILE))
    with open(os.path.join(folder, TRAINING_STATE_FILE), "w") as f:
        json.dump(state, f, indent=2)


def load_training_state(folder: str, progress, ema) -> None:
    """The inverse of :func:`save_training_state`; a checkpoint without it is refused with the reason."""
    from safetensors.torch import load_file

    path = os.path.join(folder, TRAINING_STATE_FILE)
    if not os.path.isfile(path):
        raise TrainingInputError(
            f"checkpoint {folder} has no {TRAINING_STATE_FILE}: it is incomplete or from an older version whose "
            "step counters were pickled; start a new training"
        )
    try:
        with open(path) as f:
            state = json.load(f)
        progress.load_state_dict(state["progress"])
    except Exception as err:  # noqa: BLE001  (whatever the file holds, the user gets one line naming it)
        raise TrainingInputError(f"{path} is damaged ({type(err).__name__}: {err})") from None
    if ema is None:
        return
    if not isinstance(state.get("ema"), dict):
        raise TrainingInputError(f"checkpoint {folder} was saved without EMA; resume without --use_ema")
    ema_path = os.path.join(folder, EMA_WEIGHTS_FILE)
    try:
        weights = load_file(ema_path)
        shadow = [weights[f"shadow.{i}"] for i in range(len(weights))]
        expected = [tuple(p.shape) for p in ema.shadow_params]
        found = [tuple(p.shape) for p in shadow]
        if found != expected:
            first = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))
            raise ValueError(f"{len(found)} shadow tensors for {len(expected)} parameters; tensor {first} is "
                             f"{found[first] if first < len(found) else 'missing'}, the model's "
                             f"{expected[first] if first < len(expected) else 'nothing'}")
        if not all(p.is_floating_point() and bool(torch.isfinite(p).all()) for p in shadow):
            raise ValueError("it holds NaN, infinite or non-float weights")
        ema.load_state_dict({**state["ema"], "shadow_params": shadow})
    except Exception as err:  # noqa: BLE001
        raise TrainingInputError(f"{ema_path} does not fit this model ({type(err).__name__}: {err})") from None


def register_checkpoint_state(accelerator, progress, ema=None) -> tuple:
    """Save `progress` (step counters: `state_dict`/`load_state_dict` of JSON values) and `ema` (a diffusers
    `EMAModel`) with every `accelerator.save_state`, and restore them in `load_state`, through accelerate's state
    hooks. Returns the hooks' handles (`.remove()` detaches them)."""

    def save(models, weights, folder: str) -> None:
        if accelerator.is_main_process:
            save_training_state(folder, progress, ema)

    def load(models, folder: str) -> None:
        load_training_state(folder, progress, ema)
        if ema is not None:
            ema.to(accelerator.device)

    return accelerator.register_save_state_pre_hook(save), accelerator.register_load_state_pre_hook(load)


# ------------------------------------------------------------------------------------------ checkpoints


def check_resumable(folder: str) -> None:
    """Refuse, before accelerate reads anything, checkpoints without our state or with pickled extras.

    accelerate unpickles ``custom_checkpoint_*.pkl`` with ``weights_only=False``; the trainers never write
    them, so one found in a checkpoint was planted or comes from another program.
    """
    pickled = sorted(name for name in os.listdir(folder) if re.fullmatch(r"custom_checkpoint_\d+\.pkl", name))
    if pickled:
        raise TrainingInputError(
            f"checkpoint {folder} holds pickled state ({', '.join(pickled)}) that this trainer never writes; "
            "refusing to unpickle it"
        )
    if not os.path.isfile(os.path.join(folder, TRAINING_STATE_FILE)):
        raise TrainingInputError(
            f"checkpoint {folder} has no {TRAINING_STATE_FILE}: it is incomplete or from an older version; "
            "start a new training"
        )


def check_checkpoint_files(accelerator, folder: str) -> None:
    """The files accelerate will read, checked first so that each failure is one line naming its file.

    Model weights (``model.safetensors``, ``model_1.safetensors``, ...) must hold exactly the prepared models'
    tensors with their shapes; ``optimizer*.bin`` must be an uncompressed ``torch.save`` archive within its
    size (accelerate ``torch.load``s it).
    """
    from safetensors import safe_open

    from ..conversion import ConversionError, check_checkpoint_archive

    for index, model in enumerate(getattr(accelerator, "_models", [])):
        path = os.path.join(folder, "model.safetensors" if index == 0 else f"model_{index}.safetensors")
        if not os.path.isfile(path):
            continue
        expected = {k: tuple(v.shape) for k, v in accelerator.unwrap_model(model).state_dict().items()}
        try:
            with safe_open(path, framework="pt") as f:
                found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as err:  # noqa: BLE001  (truncated or foreign: safetensors raises its own error types)
            raise TrainingInputError(f"{path} cannot be read ({type(err).__name__}: {err})") from None
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        if missing or extra or wrong:
            detail = (f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong)} of another shape"
                      f" (e.g. {(missing or extra or wrong)[0]})")
            raise TrainingInputError(f"{path} does not hold this model's weights: {detail}")
    for name in sorted(os.listdir(folder)):
        if re.fullmatch(r"optimizer(_\d+)?\.bin", name):
            try:
                check_checkpoint_archive(os.path.join(folder, name))
            except ConversionError as err:
                raise TrainingInputError(str(err)) from None


def resume_checkpoint(accelerator, resume_from: str | None, output_dir: str) -> str | None:
    """Restore a run from `resume_from` (a checkpoint folder, or ``"latest"`` in `output_dir`; None: nothing).

    An explicit resume that finds nothing fails, pickled state is refused before accelerate reads anything, and
    what `register_checkpoint_state` registered comes back with the models, optimiser and random states.
    Returns the checkpoint used.
    """
    if not resume_from:
        return None
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise TrainingInputError(
                f"--resume_from_checkpoint latest: no checkpoint in {output_dir}; drop the option to start anew"
            )
        resume_from = found[-1][1]
    if not os.path.isdir(resume_from):
        raise TrainingInputError(f"--resume_from_checkpoint {resume_from!r} is not a checkpoint folder")
    logger.info("resuming from %s", resume_from)
    check_resumable(resume_from)
    check_checkpoint_files(accelerator, resume_from)
    try:
        accelerator.load_state(resume_from)
    except TrainingInputError:  # our state hooks name the file themselves
        raise
    except Exception as err:  # noqa: BLE001  (accelerate and torch report damaged files many ways)
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise TrainingInputError(
            f"checkpoint {resume_from} cannot be restored (optimizer, scheduler or random states; "
            f"{type(err).__name__}: {detail})"
        ) from None
    return resume_from


def save_checkpoint(accelerator, output_dir: str, step: int, total_limit: int | None) -> str:
    """`save_state` into `checkpoint-N.tmp`, then rename: a checkpoint folder is either whole or absent.

    Older checkpoints beyond `total_limit` are removed only once the new one is complete, so a run killed
    while saving keeps its previous checkpoint.
    """
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = final + ".tmp"
    if accelerator.is_main_process and os.path.exists(tmp):
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit is not None:
            existing = [c for c in list_checkpoints(output_dir) if c[0] != step]
            for _, old in existing[: max(len(existing) - (total_limit - 1), 0)]:
                logger.info("removing old checkpoint %s", old)
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# ------------------------------------------------------------------------------------------ the loop


def step_generator(seed: int, micro_step: int, rank: int) -> torch.Generator:
    """The random stream of one micro-batch on one process (independent of anything drawn before): seeded by the
    micro-step index `micro_batches` gives, a resumed run draws what the uninterrupted one drew."""
    state = np.random.SeedSequence([int(seed), int(micro_step), int(rank)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def resume_position(global_step: int, steps_per_epoch: int | None, accumulation: int = 1) -> tuple[int, int]:
    """(epoch, micro-batches of it already trained on) of a run at `global_step`. Over a stream of unknown length
    (`steps_per_epoch` None) a resumed run restarts the stream and skips what it consumed (exact in the first pass).
    """
    if steps_per_epoch is None:
        return 0, global_step * accumulation
    epoch = global_step // steps_per_epoch
    return epoch, (global_step - epoch * steps_per_epoch) * accumulation


class TrainingRun:
    """One training's shared machinery around a prepared model, optimiser and learning-rate scheduler.

    Built after `accelerator.prepare`: registers `progress` (a `TrainingProgress` or a subclass) and `ema` for
    checkpointing. A trainer then calls `resume`, `start`, and loops over `micro_batches`, running its forward
    and backward in `accelerator.accumulate(model)` and, when `accelerator.sync_gradients`, `apply_gradients`
    and `end_step`.
    """

    def __init__(self, accelerator, model, optimizer, lr_scheduler, *, output_dir: str, marker: str,
                 max_train_steps: int, checkpointing_steps: int, checkpoints_total_limit: int | None = None,
                 max_grad_norm: float | None = None, progress: TrainingProgress | None = None, ema=None):
        self.accelerator, self.model, self.optimizer, self.lr_scheduler = accelerator, model, optimizer, lr_scheduler
        self.output_dir, self.marker = output_dir, marker
        self.max_train_steps, self.checkpointing_steps = max_train_steps, checkpointing_steps
        self.checkpoints_total_limit, self.max_grad_norm = checkpoints_total_limit, max_grad_norm
        self.progress = progress if progress is not None else TrainingProgress()
        self.ema = ema
        if ema is not None:
            ema.to(accelerator.device)
        self.steps_this_run = 0
        self._step_loss, self._step_finite = 0.0, True
        register_checkpoint_state(accelerator, self.progress, ema)

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    @property
    def done(self) -> bool:
        return self.progress.global_step >= self.max_train_steps

    def resume(self, resume_from: str | None) -> str | None:
        """Restore the checkpoint `resume_from` names (see `resume_checkpoint`); returns it."""
        found = resume_checkpoint(self.accelerator, resume_from, self.output_dir)
        if found is not None and self.done:
            logger.warning("the checkpoint is at step %d >= max_train_steps %d: nothing to train",
                           self.global_step, self.max_train_steps)
        return found

    def start(self, args: argparse.Namespace) -> None:
        """Write the run marker (the arguments) and remove half-written checkpoints of a killed run."""
        write_run_marker(self.accelerator, self.output_dir, self.marker, args)

    def micro_batches(self, loader_for_epoch: Callable[[int, int], Iterable],
                      steps_per_epoch: int | None) -> Iterator[tuple[int, Any]]:
        """(micro-step index, batch) from where the run stands, epoch after epoch, without end.

        `loader_for_epoch(epoch, skip)` gives the epoch's micro-batches from its `skip`-th on. An epoch yields
        `steps_per_epoch` whole optimiser steps (a remainder of fewer micro-batches than one step is left out,
        so that every step, resumed or not, sums the same micro-batches); `None` is a stream, read to its end.
        The micro-step index `global_step * accumulation + k` is what a trainer seeds micro-batch k's draws with.
        """
        accumulation = self.accelerator.gradient_accumulation_steps
        epoch, skip = resume_position(self.global_step, steps_per_epoch, accumulation)
        micro_step = self.global_step * accumulation
        while True:
            length = None if steps_per_epoch is None else steps_per_epoch * accumulation - skip
            produced = 0
            for batch in itertools.islice(loader_for_epoch(epoch, skip), length):
                produced += 1
                yield micro_step, batch
                micro_step += 1
            if produced == 0 and skip == 0:
                raise TrainingInputError("the training data produced no batch")
            epoch, skip = epoch + 1, 0

    def accumulate_loss(self, loss, *, what: str = "the loss", advice: str = "") -> float | None:
        """Add one micro-batch's (scalar) loss, after its backward, to the step's mean. When the micro-batch closes
        an accumulation (`accelerator.sync_gradients`), apply the gradients (`apply_gradients`: a non-finite loss of
        any micro-batch stops the run) and return the step's loss; otherwise None."""
        value = float(loss.detach().item())  # one host sync per micro-batch: the value also says if it is finite
        self._step_finite = self._step_finite and math.isfinite(value)
        self._step_loss += value / self.accelerator.gradient_accumulation_steps
        if not self.accelerator.sync_gradients:
            return None
        value, finite = self._step_loss, self._step_finite
        self._step_loss, self._step_finite = 0.0, True
        self.apply_gradients(finite=finite, what=what, advice=advice)
        return value

    def apply_gradients(self, *, finite: bool = True, what: str = "the loss", advice: str = ""):
        """The optimiser step closing an accumulation (call when `accelerator.sync_gradients`): clip, stop every
        process when the loss (`finite` False) or the gradients are not finite, step, zero, update the EMA.
        Returns the gradient norm before clipping (None without `max_grad_norm`)."""
        accelerator = self.accelerator
        grad_norm = None
        if self.max_grad_norm:
            grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        stop_unless_finite(accelerator, finite, grad_norm, self.global_step + 1, self.output_dir, what, advice)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(accelerator.unwrap_model(self.model).parameters())
        return grad_norm

    def end_step(self, samples: int) -> str | None:
        """Count the step (and the `samples` all processes trained it on); save a checkpoint every
        `checkpointing_steps` and at the last step. Returns the checkpoint saved, if any."""
        self.progress.global_step += 1
        self.progress.samples_seen += samples
        self.steps_this_run += 1
        step = self.progress.global_step
        if step % self.checkpointing_steps == 0 or step == self.max_train_steps:
            path = save_checkpoint(self.accelerator, self.output_dir, step, self.checkpoints_total_limit)
            logger.info("saved %s", path)
            return path
        return None


def epoch_sampler(rows: int, world: int, rank: int, seed: int, batch_size: int, accumulation: int):
    """This process's shuffled share of `rows` (`dataset.ShardedEpochSampler`) and how many whole optimiser steps
    an epoch of it gives; refuses data too small for one step."""
    from .dataset import ShardedEpochSampler

    sampler = ShardedEpochSampler(rows, world, rank, seed)
    steps_per_epoch = sampler.share // batch_size // accumulation
    if steps_per_epoch == 0:
        raise TrainingInputError(f"{rows} training rows give no full step of {batch_size} x {accumulation} "
                                 f"(accumulation) x {world} (processes)")
    return sampler, steps_per_epoch
