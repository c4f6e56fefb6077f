"""Train a semantic-segmentation network from scratch on a SPIC dataset (`training/train_segmenter.py`).

SPIC's headline metric is the mIoU of a segmentation network run on the reconstruction; with no pretrained
weights offline, the project trains its own: a `transformers` UperNet on a small ResNet (convolutions and batch
norm train well from scratch on a few hundred frames) or a SegFormer. Training follows what made ENet work on
CamVid: crops of full-resolution frames at random scales (0.5-2x), flips and colour jitter, class weights for the
rare classes and a long polynomial schedule. The model predicts only the train ids that occur in the data
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
from ..sizes import as_hw
from .arguments import TrainingInputError, add_training_arguments, check_training_args
from .loop import TrainingProgress, TrainingRun, epoch_sampler, make_accelerator

logger = logging.getLogger("spic_diffusers.training.segmenter")

RUN_MARKER = "segmenter_training_args.json"
RESULTS_FILE = "segmenter_results.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURES = ("upernet", "segformer")
SEGFORMER_SIZES = {  # hidden sizes, depths, heads, decoder width: MiT-b0's layout and a smaller one
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2], [1, 2, 5, 8], 256),
    "tiny": ([16, 32, 80, 128], [1, 1, 1, 1], [1, 2, 5, 8], 128),
}
UPERNET_SIZES = {  # ResNet stem width, stage widths, basic blocks per stage, UperNet width
    "r18-half": (32, [32, 64, 128, 256], [2, 2, 2, 2], 64),  # ResNet-18's layout at half its width
    "tiny": (16, [16, 32, 64, 128], [1, 1, 1, 1], 32),
}
SIZES = {"segformer": SEGFORMER_SIZES, "upernet": UPERNET_SIZES}
ENET_WEIGHT_C = 1.02  # w_c = 1 / ln(c + p_c) (Paszke et al., 2016): bounded weights that lift rare classes


def _pair(text: str) -> tuple[int, int]:
    return as_hw(text, minimum=32, maximum=4096)


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if not 0.1 <= low <= high <= 8.0:
        raise argparse.ArgumentTypeError(f"need 0.1 <= LOW <= HIGH <= 8, got {text!r}")
    return low, high


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a SegFormer (from scratch) that outputs Cityscapes train ids.")
    p.add_argument("--dataset_name_or_path", required=True, help="save_to_disk folder, data files or Hub id")
    p.add_argument("--train_split", default="train")
    p.add_argument("--validation_split", default="validation", help="picks the best weights ('' for none)")
    p.add_argument("--classes", default="auto",
                   help="train ids the model predicts: 'auto' (those in the training maps), 'all' or e.g. 0,1,2")
    p.add_argument("--input_size", type=_pair, default=(360, 480),
                   help="HEIGHT,WIDTH of the frames the model reads: the processor scales every image to fit it "
                        "(aspect kept), and training frames are brought to it before augmentation")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="upernet")
    p.add_argument("--model_size", default=None,
                   help=f"upernet: {sorted(UPERNET_SIZES)} (default r18-half); segformer: {sorted(SEGFORMER_SIZES)} "
                        "(default b0)")
    p.add_argument("--crop_size", type=_pair, default=None,
                   help="HEIGHT,WIDTH of the training crops, cut from the scaled frame (default: --input_size)")
    p.add_argument("--scale_range", type=_range, default=(0.5, 2.0),
                   help="random scale of each training frame before the crop, relative to --input_size")
    p.add_argument("--aspect_jitter", type=float, default=1.25,
                   help="largest random stretch of one side against the other (1 for none)")
    p.add_argument("--colour_jitter", type=float, default=0.25,
                   help="largest relative change of brightness, contrast and saturation")
    p.add_argument("--low_res_fraction", type=float, default=0.25,
                   help="share of samples degraded by a random down-and-up scaling (x1/4..x1), so the model also "
                        "reads low-resolution and reconstructed images")
    p.add_argument("--class_weighting", choices=("enet", "none"), default="enet",
                   help="enet: weight class c by 1/ln(1.02 + p_c), p_c its share of the training pixels")
    p.add_argument("--lr_power", type=float, default=0.9, help="power of the polynomial learning-rate decay")
    p.add_argument("--validation_steps", type=int, default=250)
    p.add_argument("--max_validation_samples", type=int, default=None)
    add_training_arguments(p, {
        "max_train_steps": 2000, "learning_rate": 2e-3, "adam_weight_decay": 0.01, "lr_warmup_steps": 200,
        "output_dir": "spic-segmenter", "checkpointing_steps": 250, "checkpoints_total_limit": 2,
    }, leave_out=("lr_scheduler", "use_ema", "ema_decay"))
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_training_args(args)
    if not 0 <= args.low_res_fraction <= 1:
        raise TrainingInputError(f"--low_res_fraction must be in [0, 1], got {args.low_res_fraction}")
    if not 1 <= args.aspect_jitter <= 2 or not 0 <= args.colour_jitter < 1:
        raise TrainingInputError("--aspect_jitter must be in [1, 2] and --colour_jitter in [0, 1)")
    if not 0 < args.lr_power <= 4:
        raise TrainingInputError(f"--lr_power must be in (0, 4], got {args.lr_power}")
    sizes = SIZES[args.architecture]
    if args.model_size is None:
        args.model_size = "r18-half" if args.architecture == "upernet" else "b0"
    if args.model_size not in sizes:
        raise TrainingInputError(f"--model_size {args.model_size!r} is not a {args.architecture} size; "
                                 f"choose one of {sorted(sizes)}")
    if args.crop_size is None:
        args.crop_size = args.input_size
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


def class_weights(rows, lut: np.ndarray, num_labels: int, scheme: str) -> torch.Tensor | None:
    """Per-label loss weights from the training maps' pixel shares (None for ``scheme="none"``)."""
    if scheme == "none":
        return None
    counts = np.zeros(256, dtype=np.int64)
    for row in rows:
        counts += np.bincount(lut[np.asarray(row["semantic_map"])].ravel(), minlength=256)[:256]
    shares = counts[:num_labels] / max(1, counts[:num_labels].sum())
    return torch.tensor(1.0 / np.log(ENET_WEIGHT_C + shares), dtype=torch.float32)


def _resize(tensor: torch.Tensor, size: tuple[int, int], *, labels: bool = False) -> torch.Tensor:
    """Resize a (C, H, W) float image (antialiased when shrinking) or an (H, W) label map (nearest)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    if labels:
        return torch.nn.functional.interpolate(tensor[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    shrink = size[0] < tensor.shape[-2] or size[1] < tensor.shape[-1]
    return torch.nn.functional.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False,
                                           antialias=shrink)[0]


class SegmentationExamples(torch.utils.data.Dataset):
    """Rows -> (normalised image, label indices).

    Every frame is first brought to ``size`` (what the image processor feeds the model). Without augmentation
    that is the sample. With it, the frame is scaled by a random factor in ``scale_range`` (one side stretched
    by up to ``aspect_jitter``), a ``crop_size`` window is cut (padded with ignored pixels where the scaled
    frame is smaller), flipped, colour-jittered, and a share of samples is degraded by a down-and-up scaling.
    """

    def __init__(self, rows, lut: np.ndarray, size: tuple[int, int], *, augment: bool, seed: int = 0,
                 crop_size: tuple[int, int] | None = None, scale_range: tuple[float, float] = (1.0, 1.0),
                 aspect_jitter: float = 1.0, colour_jitter: float = 0.0, low_res_fraction: float = 0.0):
        self.rows, self.lut, self.size, self.augment = rows, lut, size, augment
        self.crop_size = crop_size or size
        self.seed, self.scale_range, self.aspect_jitter = seed, scale_range, aspect_jitter
        self.colour_jitter, self.low_res_fraction = colour_jitter, low_res_fraction
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
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        target = torch.from_numpy(self.lut[labels])
        pixels, target = _resize(pixels, self.size), _resize(target, self.size, labels=True)
        if self.augment:
            pixels, target = self._augment(pixels, target, np.random.default_rng([self.seed, self.epoch, index]))
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return {"pixel_values": ((pixels - mean) / std).contiguous(), "labels": target.contiguous()}

    def _augment(self, pixels: torch.Tensor, target: torch.Tensor, rng: np.random.Generator):
        height, width = self.size
        scale = rng.uniform(*self.scale_range)
        stretch = float(np.exp(rng.uniform(-1.0, 1.0) * np.log(self.aspect_jitter)))
        scaled = (max(8, round(height * scale * stretch ** 0.5)), max(8, round(width * scale / stretch ** 0.5)))
        pixels, target = _resize(pixels, scaled), _resize(target, scaled, labels=True)
        ch, cw = self.crop_size
        pad_h, pad_w = max(0, ch - scaled[0]), max(0, cw - scaled[1])
        if pad_h or pad_w:  # grey image, ignored labels around a frame smaller than the crop
            grey = torch.tensor(IMAGENET_MEAN).view(3, 1, 1).expand(3, scaled[0] + pad_h, scaled[1] + pad_w).clone()
            grey[:, :scaled[0], :scaled[1]] = pixels
            padded = torch.full((scaled[0] + pad_h, scaled[1] + pad_w), IGNORE_INDEX, dtype=target.dtype)
            padded[:scaled[0], :scaled[1]] = target
            pixels, target = grey, padded
        y = int(rng.integers(0, pixels.shape[1] - ch + 1))
        x = int(rng.integers(0, pixels.shape[2] - cw + 1))
        pixels, target = pixels[:, y:y + ch, x:x + cw], target[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            pixels, target = pixels.flip(-1), target.flip(-1)
        if self.colour_jitter:
            j = self.colour_jitter
            gain, contrast, saturation = (1.0 + rng.uniform(-j, j) for _ in range(3))
            grey = pixels.mean(0, keepdim=True)
            pixels = grey + (pixels - grey) * saturation
            pixels = (pixels - pixels.mean()) * contrast + pixels.mean()
            pixels = (pixels * gain).clamp(0.0, 1.0)
        if rng.random() < self.low_res_fraction:
            factor = rng.uniform(1.0, 4.0)
            small = (max(4, round(ch / factor)), max(4, round(cw / factor)))
            pixels = _resize(_resize(pixels, small), (ch, cw))
        return pixels, target


# ----------------------------------------------------------------------------------------------- model


def build_processor(input_size: tuple[int, int]):
    """The image processor saved with the model: scale to fit ``input_size`` with the aspect kept, normalise.

    A 96x128 frame is read at 360x480 as the model was trained, a 256x512 one at 240x480 rather than stretched.
    """
    from transformers import DPTImageProcessor

    return DPTImageProcessor(
        do_resize=True, size={"height": input_size[0], "width": input_size[1]}, keep_aspect_ratio=True,
        ensure_multiple_of=1, resample=Image.BILINEAR, do_rescale=True, do_normalize=True,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), do_pad=False,
    )  # fmt: skip


def build_model(classes: Sequence[int], architecture: str, size: str, input_size: tuple[int, int]):
    """A model with random weights whose labels are the Cityscapes names of `classes`, and its processor."""
    id2label = {i: ID2LABEL[c] for i, c in enumerate(classes)}
    labels = {"num_labels": len(classes), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if architecture == "upernet":
        from transformers import ResNetConfig, UperNetConfig, UperNetForSemanticSegmentation

        stem, hidden, depths, decoder = UPERNET_SIZES[size]
        backbone = ResNetConfig(embedding_size=stem, hidden_sizes=hidden, depths=depths, layer_type="basic",
                                out_features=["stage1", "stage2", "stage3", "stage4"])
        config = UperNetConfig(backbone_config=backbone, hidden_size=decoder, use_auxiliary_head=False,
                               loss_ignore_index=IGNORE_INDEX, **labels)
        return UperNetForSemanticSegmentation(config), build_processor(input_size)
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    hidden, depths, heads, decoder = SEGFORMER_SIZES[size]
    config = SegformerConfig(hidden_sizes=hidden, depths=depths, num_attention_heads=heads,
                             decoder_hidden_size=decoder, semantic_loss_ignore_index=IGNORE_INDEX, **labels)
    return SegformerForSemanticSegmentation(config), build_processor(input_size)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy at the labels' resolution (logits upsampled bilinearly), ignored pixels left out."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    weight = None if weight is None else weight.to(logits.device, logits.dtype)
    return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE_INDEX)


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


class SegmenterProgress(TrainingProgress):
    """The step counters, and the best validation mIoU so far with its step (which weights `best/` holds)."""

    def __init__(self) -> None:
        super().__init__()
        self.best_miou, self.best_step = -1.0, 0

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_miou": self.best_miou, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best_miou, self.best_step = float(state["best_miou"]), int(state["best_step"])


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train; returns the summary written to ``output_dir/segmenter_results.json``."""
    from tqdm.auto import tqdm
    from transformers import get_polynomial_decay_schedule_with_warmup

    from .dataset import load_split

    accelerator = make_accelerator(args, RUN_MARKER)
    world, rank = accelerator.num_processes, accelerator.process_index

    train_rows = load_split(args.dataset_name_or_path, args.train_split)
    for column in ("image", "semantic_map"):
        if column not in train_rows.column_names:
            raise TrainingInputError(f"the dataset lacks the {column!r} column (it has {train_rows.column_names})")
    classes = _classes(args.classes, train_rows.select_columns(["semantic_map"]))
    lut = label_lut(classes)
    val_rows = load_split(args.dataset_name_or_path, args.validation_split) if args.validation_split else None
    if val_rows is not None and args.max_validation_samples:
        val_rows = val_rows.select(range(min(args.max_validation_samples, len(val_rows))))

    model, processor = build_model(classes, args.architecture, args.model_size, args.input_size)
    weight = class_weights(train_rows.select_columns(["semantic_map"]), lut, len(classes), args.class_weighting)
    if weight is not None:
        logger.info("class weights: %s", {ID2LABEL[c]: round(float(w), 2) for c, w in zip(classes, weight)})
    train_set = SegmentationExamples(train_rows, lut, args.input_size, augment=True, seed=args.seed,
                                     crop_size=args.crop_size, scale_range=args.scale_range,
                                     aspect_jitter=args.aspect_jitter, colour_jitter=args.colour_jitter,
                                     low_res_fraction=args.low_res_fraction)
    ga = args.gradient_accumulation_steps
    sampler, steps_per_epoch = epoch_sampler(len(train_set), world, rank, args.seed, args.train_batch_size, ga)

    def loader_for_epoch(epoch: int, skip: int):
        train_set.epoch = epoch  # augmentation depends on (seed, epoch, row) only, as the order: exact resume
        sampler.set_epoch(epoch, start=skip * args.train_batch_size)
        return torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, sampler=sampler,
                                           drop_last=True, num_workers=args.dataloader_num_workers)

    val_loader = None
    if val_rows is not None:
        val_loader = torch.utils.data.DataLoader(
            SegmentationExamples(val_rows, lut, args.input_size, augment=False), batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    warmup = min(args.lr_warmup_steps, args.max_train_steps - 1)  # the decay needs at least one step
    # A prepared scheduler steps once per process at each optimiser step.
    schedule = get_polynomial_decay_schedule_with_warmup(optimizer, warmup * world, args.max_train_steps * world,
                                                         lr_end=args.learning_rate * 0.01, power=args.lr_power)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    progress = SegmenterProgress()
    run = TrainingRun(accelerator, model, optimizer, schedule, output_dir=args.output_dir, marker=RUN_MARKER,
                      max_train_steps=args.max_train_steps, checkpointing_steps=args.checkpointing_steps,
                      checkpoints_total_limit=args.checkpoints_total_limit, max_grad_norm=args.max_grad_norm,
                      progress=progress)
    run.resume(args.resume_from_checkpoint)
    run.start(args)

    best_dir = os.path.join(args.output_dir, "best")
    bar = tqdm(total=args.max_train_steps, initial=run.global_step, desc="segmenter steps",
               disable=not accelerator.is_local_main_process)
    started, last_loss = time.perf_counter(), float("nan")
    for _, batch in ([] if run.done else run.micro_batches(loader_for_epoch, steps_per_epoch)):
        with accelerator.accumulate(model):
            logits = model(pixel_values=batch["pixel_values"].to(accelerator.device)).logits
            loss = segmentation_loss(logits, batch["labels"].to(accelerator.device), weight)
            accelerator.backward(loss)
        closed = run.accumulate_loss(loss, what="the segmentation loss",
                                     advice="lower --learning_rate or set --max_grad_norm")
        if closed is None:
            continue
        last_loss = closed
        step = run.global_step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.3f}", best_miou=f"{max(progress.best_miou, 0):.3f}")
        if step % args.logging_steps == 0:
            logger.info("step %d loss %.4f", step, last_loss)
        if val_loader is not None and (step % args.validation_steps == 0 or step == args.max_train_steps):
            confusion = validation_confusion(model, val_loader, len(classes), accelerator.device)
            ious, miou = confusion.iou_per_class(), confusion.miou()
            miou = miou if np.isfinite(miou) else 0.0
            logger.info("step %d: validation mIoU %.4f", step, miou)
            if miou > progress.best_miou:  # every process, so that their checkpoints agree
                progress.best_miou, progress.best_step = miou, step
                if accelerator.is_main_process:
                    _save_model(accelerator.unwrap_model(model), processor, best_dir,
                                {"validation_miou": miou, "step": step, "classes": classes,
                                 "validation_iou": {ID2LABEL[c]: _nan_none(v) for c, v in zip(classes, ious)}})
        run.end_step(args.train_batch_size * ga * world)  # the checkpoint holds the best mIoU just found
        if run.done:
            break
    bar.close()
    elapsed = time.perf_counter() - started

    summary: dict[str, Any] = {"global_step": run.global_step, "classes": classes, "last_loss": last_loss,
                               "steps_per_second": run.steps_this_run / elapsed if elapsed > 0 else None,
                               "best_validation_miou": progress.best_miou if val_loader is not None else None,
                               "best_step": progress.best_step if val_loader is not None else run.global_step}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        if val_loader is not None and os.path.isdir(best_dir):
            from transformers import AutoModelForSemanticSegmentation

            final = AutoModelForSemanticSegmentation.from_pretrained(best_dir)
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
