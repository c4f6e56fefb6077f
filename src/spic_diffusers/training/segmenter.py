"""Train a small `transformers` SegFormer from scratch on a SPIC dataset (`training/train_segmenter.py`).

SPIC's headline metric is the mIoU of a segmentation network run on the reconstruction; with no pretrained
weights offline, the project trains its own. The model predicts only the train ids that occur in the data
(CamVid: 11 of the 19), and its ``id2label`` holds their Cityscapes names, so
:class:`spic_diffusers.codec.Segmenter` maps its outputs back to train ids.

Conventions follow `training/train_spic.py`: Accelerate, seeded steps, atomic checkpoints that resume
(``--resume_from_checkpoint latest``), a refusal to write into a foreign non-empty folder, progress bars,
``--push_to_hub``. The validation split picks the model: the weights with the best validation mIoU are the
ones saved in ``output_dir`` (with their image processor and ``segmenter_results.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.cityscapes import ID2LABEL, IGNORE_INDEX, NUM_CLASSES
from .arguments import TrainingInputError
from .trainer import check_output_dir, resume_checkpoint, save_checkpoint

logger = logging.getLogger("spic_diffusers.training.segmenter")

RUN_MARKER = "segmenter_training_args.json"
RESULTS_FILE = "segmenter_results.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZES = {  # hidden sizes, depths, heads, decoder width: MiT-b0's layout and a smaller one
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2], [1, 2, 5, 8], 256),
    "tiny": ([16, 32, 80, 128], [1, 1, 1, 1], [1, 2, 5, 8], 128),
}


def _pair(text: str) -> tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH, got {text!r}") from None
    if height < 32 or width < 32 or height % 32 or width % 32:
        raise argparse.ArgumentTypeError(f"sides must be multiples of 32 and >= 32, got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a SegFormer (from scratch) that outputs Cityscapes train ids.")
    p.add_argument("--dataset_name_or_path", required=True, help="save_to_disk folder, data files or Hub id")
    p.add_argument("--train_split", default="train")
    p.add_argument("--validation_split", default="validation", help="picks the best weights ('' for none)")
    p.add_argument("--classes", default="auto",
                   help="train ids the model predicts: 'auto' (those in the training maps), 'all' or e.g. 0,1,2")
    p.add_argument("--input_size", type=_pair, default=(192, 256), help="HEIGHT,WIDTH the processor resizes to")
    p.add_argument("--model_size", choices=sorted(SIZES), default="b0")
    p.add_argument("--low_res_fraction", type=float, default=0.5,
                   help="share of samples degraded by a random down-and-up scaling (x1/4..x1), so the model also "
                        "reads low-resolution and reconstructed images")
    p.add_argument("--min_crop", type=float, default=0.5, help="smallest crop side, as a fraction of the image")
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--max_train_steps", type=int, default=2000)
    p.add_argument("--learning_rate", type=float, default=6e-4)
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--lr_warmup_steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--output_dir", default="spic-segmenter")
    p.add_argument("--overwrite_output_dir", action="store_true")
    p.add_argument("--checkpointing_steps", type=int, default=250)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", default=None, help="`latest` or a checkpoint folder")
    p.add_argument("--validation_steps", type=int, default=250)
    p.add_argument("--max_validation_samples", type=int, default=None)
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None)
    p.add_argument("--hub_token", default=None)
    p.add_argument("--hub_private_repo", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name in ("train_batch_size", "max_train_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            raise TrainingInputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.low_res_fraction <= 1 or not 0 < args.min_crop <= 1:
        raise TrainingInputError("--low_res_fraction must be in [0, 1] and --min_crop in (0, 1]")
    if args.push_to_hub and not args.hub_model_id:
        raise TrainingInputError("--push_to_hub needs --hub_model_id")
    if args.classes not in ("auto", "all"):
        _classes(args.classes, rows=())  # a malformed list fails here, before anything is loaded
    return args


# ------------------------------------------------------------------------------------------------ data


def _classes(spec: str, rows) -> list[int]:
    if spec == "all":
        return list(range(NUM_CLASSES))
    if spec != "auto":
        try:
            ids = sorted({int(v) for v in spec.split(",")})
        except ValueError:
            raise TrainingInputError(f"--classes must be 'auto', 'all' or train ids like 0,1,2; got {spec!r}") from None
        if not ids or ids[0] < 0 or ids[-1] >= NUM_CLASSES:
            raise TrainingInputError(f"--classes must be train ids 0..{NUM_CLASSES - 1}, got {spec!r}")
        return ids
    seen = np.zeros(256, dtype=bool)
    for row in rows:
        seen[np.unique(np.asarray(row["semantic_map"]))] = True
    ids = [i for i in range(NUM_CLASSES) if seen[i]]
    if not ids:
        raise TrainingInputError("the training maps hold no train id 0..18")
    return ids


def label_lut(classes: Sequence[int]) -> np.ndarray:
    """Train id -> model label index (255 for ignore and for classes the model does not predict)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for index, train_id in enumerate(classes):
        lut[train_id] = index
    return lut


class SegmentationExamples(torch.utils.data.Dataset):
    """Rows -> (normalised image, label indices) at the model's input size, with optional augmentation."""

    def __init__(self, rows, lut: np.ndarray, size: tuple[int, int], *, augment: bool, seed: int = 0,
                 low_res_fraction: float = 0.0, min_crop: float = 1.0):
        self.rows, self.lut, self.size, self.augment = rows, lut, size, augment
        self.seed, self.low_res_fraction, self.min_crop = seed, low_res_fraction, min_crop
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        image = row["image"].convert("RGB") if isinstance(row["image"], Image.Image) else Image.fromarray(
            np.asarray(row["image"], dtype=np.uint8))
        labels = np.asarray(row["semantic_map"])
        if labels.shape != (image.height, image.width):
            raise TrainingInputError(f"row {row.get('id', index)}: map {labels.shape} and image "
                                     f"{(image.height, image.width)} differ in size")
        height, width = self.size
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            side = rng.uniform(self.min_crop, 1.0)
            ch, cw = max(8, int(image.height * side)), max(8, int(image.width * side))
            y, x = int(rng.integers(0, image.height - ch + 1)), int(rng.integers(0, image.width - cw + 1))
            image, labels = image.crop((x, y, x + cw, y + ch)), labels[y:y + ch, x:x + cw]
            if rng.random() < 0.5:
                image, labels = image.transpose(Image.FLIP_LEFT_RIGHT), labels[:, ::-1]
            if rng.random() < self.low_res_fraction:
                factor = rng.uniform(1.0, 4.0)
                small = (max(4, int(width / factor)), max(4, int(height / factor)))
                image = image.resize(small, Image.BOX)
        image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        if self.augment:
            gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-0.08, 0.08)
            pixels = np.clip(pixels * gain + bias, 0.0, 1.0)
        pixels = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        rows = np.minimum(((np.arange(height) + 0.5) * labels.shape[0] / height).astype(np.int64), labels.shape[0] - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * labels.shape[1] / width).astype(np.int64), labels.shape[1] - 1)
        target = self.lut[labels[rows[:, None], cols[None, :]]]
        return {"pixel_values": torch.from_numpy(pixels.transpose(2, 0, 1).copy()),
                "labels": torch.from_numpy(target)}


# ----------------------------------------------------------------------------------------------- model


def build_model(classes: Sequence[int], size: str, input_size: tuple[int, int]):
    """A SegFormer with random weights whose labels are the Cityscapes names of `classes`, and its processor."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    hidden, depths, heads, decoder = SIZES[size]
    id2label = {i: ID2LABEL[c] for i, c in enumerate(classes)}
    config = SegformerConfig(
        num_labels=len(classes), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        hidden_sizes=hidden, depths=depths, num_attention_heads=heads, decoder_hidden_size=decoder,
        semantic_loss_ignore_index=IGNORE_INDEX,
    )  # fmt: skip
    processor = SegformerImageProcessor(
        do_resize=True, size={"height": input_size[0], "width": input_size[1]}, do_rescale=True,
        do_normalize=True, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), do_reduce_labels=False,
    )  # fmt: skip
    return SegformerForSemanticSegmentation(config), processor


def validation_confusion(model, loader, num_labels: int, device):
    """Set-level :class:`spic_diffusers.metrics.ConfusionMatrix` of the model's label indices over a loader."""
    from ..metrics import ConfusionMatrix

    confusion = ConfusionMatrix(num_labels, IGNORE_INDEX)
    model.eval()
    with torch.no_grad():
        for batch in loader:
            logits = model(pixel_values=batch["pixel_values"].to(device)).logits.float()
            labels = batch["labels"]
            logits = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear",
                                                     align_corners=False)
            for pred, truth in zip(logits.argmax(1).cpu().numpy(), labels.numpy()):
                confusion.update(pred, truth)
    model.train()
    return confusion


def _save_model(model, processor, folder: str, extra: dict[str, Any]) -> None:
    """Write model + processor + results into `folder` atomically (a temporary sibling, then a rename)."""
    parent = os.path.dirname(os.path.abspath(folder))
    tmp = tempfile.mkdtemp(prefix=".segmenter-", dir=parent)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        with open(os.path.join(tmp, RESULTS_FILE), "w") as f:
            json.dump(extra, f, indent=2)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _Progress:
    def __init__(self) -> None:
        self.global_step, self.best_miou, self.best_step = 0, -1.0, 0

    def state_dict(self) -> dict[str, float]:
        return {"global_step": self.global_step, "best_miou": self.best_miou, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.global_step = int(state["global_step"])
        self.best_miou, self.best_step = float(state["best_miou"]), int(state["best_step"])


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train; returns the summary written to ``output_dir/segmenter_results.json``."""
    check_output_dir(args.output_dir, args.overwrite_output_dir, args.resume_from_checkpoint is not None,
                     marker=RUN_MARKER)
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_polynomial_decay_schedule_with_warmup

    from .dataset import load_split

    use_cpu = args.cpu or not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=use_cpu)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)

    train_rows = load_split(args.dataset_name_or_path, args.train_split)
    for column in ("image", "semantic_map"):
        if column not in train_rows.column_names:
            raise TrainingInputError(f"the dataset lacks the {column!r} column (it has {train_rows.column_names})")
    classes = _classes(args.classes, train_rows.select_columns(["semantic_map"]))
    lut = label_lut(classes)
    val_rows = load_split(args.dataset_name_or_path, args.validation_split) if args.validation_split else None
    if val_rows is not None and args.max_validation_samples:
        val_rows = val_rows.select(range(min(args.max_validation_samples, len(val_rows))))

    model, processor = build_model(classes, args.model_size, args.input_size)
    train_set = SegmentationExamples(train_rows, lut, args.input_size, augment=True, seed=args.seed,
                                     low_res_fraction=args.low_res_fraction, min_crop=args.min_crop)
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         generator=generator)
    if len(loader) == 0:
        raise TrainingInputError(f"{len(train_set)} training rows give no batch of {args.train_batch_size}")
    val_loader = None
    if val_rows is not None:
        val_loader = torch.utils.data.DataLoader(
            SegmentationExamples(val_rows, lut, args.input_size, augment=False), batch_size=args.train_batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    schedule = get_polynomial_decay_schedule_with_warmup(optimizer, args.lr_warmup_steps, args.max_train_steps,
                                                         lr_end=args.learning_rate * 0.01, power=1.0)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    progress = _Progress()  # saved as JSON beside accelerate's state (no pickle)
    resume_checkpoint(accelerator, args.resume_from_checkpoint, args.output_dir, progress)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, RUN_MARKER), "w") as f:
        json.dump({k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k != "hub_token"},
                  f, indent=2)

    best_dir = os.path.join(args.output_dir, "best")
    step = progress.global_step
    bar = tqdm(total=args.max_train_steps, initial=step, desc="segmenter steps",
               disable=not accelerator.is_local_main_process)
    started, steps_run, last_loss = time.perf_counter(), 0, float("nan")
    epoch = step // len(loader)
    skip = step - epoch * len(loader)
    while step < args.max_train_steps:
        train_set.epoch = epoch
        generator.manual_seed(args.seed + epoch)  # the epoch's order depends on (seed, epoch) only: exact resume
        for batch_index, batch in enumerate(loader):
            if batch_index < skip:
                continue
            outputs = model(pixel_values=batch["pixel_values"].to(accelerator.device),
                            labels=batch["labels"].to(accelerator.device))
            if not torch.isfinite(outputs.loss):
                raise TrainingInputError(f"the loss is {outputs.loss.item()} at step {step + 1}; the last good "
                                         "checkpoint is kept (lower --learning_rate)")
            accelerator.backward(outputs.loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_run += 1
            progress.global_step = step
            last_loss = outputs.loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", best_miou=f"{max(progress.best_miou, 0):.3f}")
            if val_loader is not None and (step % args.validation_steps == 0 or step == args.max_train_steps):
                confusion = validation_confusion(model, val_loader, len(classes), accelerator.device)
                ious, miou = confusion.iou_per_class(), confusion.miou()
                miou = miou if np.isfinite(miou) else 0.0
                logger.info("step %d: validation mIoU %.4f", step, miou)
                if miou > progress.best_miou and accelerator.is_main_process:
                    progress.best_miou, progress.best_step = miou, step
                    _save_model(accelerator.unwrap_model(model), processor, best_dir,
                                {"validation_miou": miou, "step": step, "classes": classes,
                                 "validation_iou": {ID2LABEL[c]: _nan_none(v) for c, v in zip(classes, ious)}})
            if step % args.checkpointing_steps == 0 or step == args.max_train_steps:
                save_checkpoint(accelerator, args.output_dir, step, args.checkpoints_total_limit, progress)
            if step >= args.max_train_steps:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    elapsed = time.perf_counter() - started

    summary: dict[str, Any] = {"global_step": step, "classes": classes, "last_loss": last_loss,
                               "steps_per_second": steps_run / elapsed if elapsed > 0 else None,
                               "best_validation_miou": progress.best_miou if val_loader is not None else None,
                               "best_step": progress.best_step if val_loader is not None else step}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        if val_loader is not None and os.path.isdir(best_dir):
            from transformers import SegformerForSemanticSegmentation

            final = SegformerForSemanticSegmentation.from_pretrained(best_dir)
            with open(os.path.join(best_dir, RESULTS_FILE)) as f:
                summary["validation"] = json.load(f)
        final.save_pretrained(args.output_dir)
        processor.save_pretrained(args.output_dir)
        with open(os.path.join(args.output_dir, RESULTS_FILE), "w") as f:
            json.dump(summary, f, indent=2)
        if args.push_to_hub:
            from ..hub import push_folder_to_hub

            push_folder_to_hub(args.output_dir, args.hub_model_id, private=args.hub_private_repo, token=args.hub_token,
                               ignore_patterns=["checkpoint-*", "best/*", ".segmenter-*"])
    accelerator.wait_for_everyone()
    return summary


def _nan_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: input problems print one clear line and exit with status 2."""
    import sys

    try:
        train(parse_args(argv))
    except TrainingInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
