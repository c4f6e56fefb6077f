#!/usr/bin/env python
"""Package trained CamVid models into the folders that ship inside spic-diffusers, with their model cards.

    python scripts/package_shipped_models.py --receiver_run RUN --segmenter_run SEG_RUN \
        --camvid_dataset DATA [--receiver_results eval.json] [--fast_run FAST --fast_table table.json] \
        [--assets_dir src/spic_diffusers/assets] [--overwrite]

RUN is the output of scripts/train_camvid_receiver.sh (WORK_DIR/run), SEG_RUN that of
scripts/train_camvid_segmenter.sh, DATA the CamVid dataset (scripts/convert_camvid_to_datasets.py). The
segmenter's test mIoU is measured here, on DATA's test split, at the frames' own size (360x480) and at 96x128
(`spic_diffusers.evaluation.segmentation`, as `scripts/evaluate_segmenter.py` does). --receiver_results is a
JSON list of evaluation entries for the receiver's card (`spic_diffusers.hub.normalize_eval_results` format).
FAST is a distilled student (WORK_DIR/fast-K of scripts/distill_camvid_receiver.sh), shipped as the `--fast`
model; --fast_table is the JSON of `benchmarks/bench_decode.py --quality_table` with that student among its
rows, for its card. Existing asset folders are replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

RECEIVER_NAME = "spic-camvid"
SEGMENTER_NAME = "upernet-camvid"
FAST_NAME = "spic-camvid-fast"
QUALITY_KEYS = ("psnr", "boundary_psnr", "region_colour_error", "miou")
CAMVID_LICENSE = "cc-by-nc-4.0"  # the Hub id of CamVid's terms, which weights trained on it inherit
CAMVID_CREDIT = (
    "CamVid (G. J. Brostow, J. Fauqueur, R. Cipolla, *Semantic object classes in video: a high-definition ground "
    "truth database*, Pattern Recognition Letters 2009), in the SegNet tutorial's 11-class release "
    "(train 367 / val 101 / test 233 frames, 360x480), whose terms allow research and personal use only "
    "(CC BY-NC 4.0); weights trained on it inherit that restriction"
)


def segmenter_card(results: dict, training: dict, description: str, tags: list[str]) -> str:
    """The segmenter's README: Hub metadata (transformers, image-segmentation, model-index) + Markdown."""
    from huggingface_hub import EvalResult, ModelCardData

    from spic_diffusers.evaluation.segmentation import scores_table

    evals = [
        EvalResult(task_type="image-segmentation", dataset_type="camvid", dataset_name="CamVid test",
                   dataset_split="test", metric_type="mean_iou", metric_value=round(result["miou"], 4),
                   metric_name=f"mIoU, 11 CamVid classes, {name} input")
        for name, result in results.items()
    ]  # fmt: skip
    data = ModelCardData(library_name="transformers", pipeline_tag="image-segmentation", license=CAMVID_LICENSE,
                         tags=[*tags, "spic", "semantic-segmentation", "camvid", "cityscapes-train-ids"],
                         metrics=["mean_iou"], model_name=SEGMENTER_NAME, eval_results=evals)
    classes = list(next(iter(results.values()))["iou"])
    recipe = "\n".join(f"| {k} | {v} |" for k, v in training.items())
    speed = "; ".join(f"{name}: {r['seconds_per_frame']:.3f} s" for name, r in results.items())
    threads = next(iter(results.values())).get("threads", "?")
    return f"""---
{data.to_yaml()}
---

# {SEGMENTER_NAME}

{description} It labels street photographs in **Cityscapes train ids** and was trained from random weights on
CamVid. It is the segmentation network spic-diffusers measures SPIC's semantic fidelity with (the paper's mIoU
protocol: segment the reconstruction, compare with the transmitted map), and the one `spic encode` transmits
when no label map is given. It ships inside the package:

```python
from spic_diffusers.codec import Segmenter
from spic_diffusers.demo import shipped_segmenter_path

segmenter = Segmenter.from_pretrained(shipped_segmenter_path())
labels = segmenter(rgb_uint8_array)        # HxW train ids; 255 where nothing it knows applies
```

It knows the 11 classes CamVid labels ({", ".join(classes)}); the other 8 train ids (wall, traffic light,
terrain, truck, bus, train, motorcycle, bicycle) never occur in its output (CamVid counts buses and trucks as
cars). Its image processor scales every input to fit 360x480 with the aspect ratio kept (a 96x128 frame is read
at 360x480, a 256x512 one at 240x480) and the map comes back at the input's own size; a quarter of its training
samples were degraded by a random down-and-up scaling, so that it also reads coarse images and reconstructions.

## Evaluation

CamVid test split (233 frames never used in training or model selection), set-level IoU per class over the 11
classes; `96x128` resizes the frames (area) and maps (nearest) first:

{scores_table(results)}

Command: `python scripts/evaluate_segmenter.py --dataset DATA --split test --sizes native,96x128` (DATA from
`scripts/convert_camvid_to_datasets.py`); `scripts/package_shipped_models.py`, which writes this card, measures
the same. Time per frame in that run ({speed}, {threads} CPU thread(s)); `benchmarks/bench_segmenter.py`
measures it alone.

## Training

| | |
|---|---|
{recipe}

## Data and licence

{CAMVID_CREDIT}.

## Limitations

- A small model trained from scratch on 367 frames of one city: a measuring instrument for comparing codecs on
  street scenes like CamVid's, not a general-purpose segmenter. Thin and rare classes (pole, sign, fence,
  rider) score lowest.
- mIoU figures measured with it compare with each other, not with the paper's (which used InternImage, trained
  on Cityscapes, on 256x512 Cityscapes frames).
"""


def _describe_segmenter(model) -> tuple[str, str, list[str]]:
    """(card sentence, model row, Hub tags) of a trained segmenter, from its config."""
    config, params = model.config, sum(p.numel() for p in model.parameters()) / 1e6
    if config.model_type == "upernet":
        backbone = config.backbone_config
        body = (f"UperNet (width {config.hidden_size}, pooling {config.pool_scales}) on a ResNet with basic blocks, "
                f"stem {backbone.embedding_size}, stages {backbone.hidden_sizes}, depths {backbone.depths}")
        return (f"A UperNet on a small ResNet ({params:.1f} M parameters).", f"{body} ({params:.2f} M parameters), "
                "random init", ["upernet", "resnet"])
    body = f"SegFormer, MiT stages {config.hidden_sizes}, depths {config.depths}, decoder {config.decoder_hidden_size}"
    return (f"A small SegFormer ({params:.1f} M parameters).", f"{body} ({params:.2f} M parameters), random init",
            ["segformer"])


def package_segmenter(run: Path, dataset_dir: Path, target: Path) -> dict:
    import datasets
    import torch
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    from spic_diffusers.codec import Segmenter
    from spic_diffusers.evaluation.segmentation import segmenter_scores

    model = AutoModelForSemanticSegmentation.from_pretrained(run, dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(run)
    # The weights ship in fp16 (half the size) and run in fp32: measure them as they will be loaded.
    model = model.half().float()
    segmenter = Segmenter(model, processor)
    test = datasets.load_from_disk(str(dataset_dir))["test"]
    started = time.perf_counter()
    results = {}
    for size in (None, (96, 128)):
        scores = segmenter_scores(segmenter, test, size)
        results[scores["size"]] = {**scores, "threads": torch.get_num_threads()}
    print(json.dumps({k: {"miou": v["miou"]} for k, v in results.items()}), f"({time.perf_counter() - started:.0f} s)")
    args = json.loads((run / "segmenter_training_args.json").read_text())
    summary = json.loads((run / "segmenter_results.json").read_text())
    description, body, tags = _describe_segmenter(model)
    scale, crop = args.get("scale_range", [1, 1]), args.get("crop_size") or args["input_size"]
    minutes = summary["global_step"] / summary["steps_per_second"] / 60 if summary.get("steps_per_second") else None
    decay = args.get("adam_weight_decay", args.get("weight_decay"))  # runs before the shared option names: weight_decay
    training = {
        "Data": "CamVid train (367 frames) in Cityscapes train ids; validation (101 frames) picks the weights",
        "Model": body,
        "Input": f"frames at {args['input_size'][0]}x{args['input_size'][1]} scaled by {scale[0]:g}-{scale[1]:g}x "
                 f"(one side stretched up to {args.get('aspect_jitter', 1):g}x), {crop[0]}x{crop[1]} crops, flips, "
                 f"brightness/contrast/saturation jitter of {args.get('colour_jitter', 0):.0%}, "
                 f"{args['low_res_fraction']:.0%} of samples down- and up-scaled by a random factor of 1-4",
        "Loss": ("cross-entropy, class c weighted by 1/ln(1.02 + p_c) (p_c: its share of the training pixels)"
                 if args.get("class_weighting") == "enet" else "cross-entropy"),
        "Optimiser": f"AdamW lr {args['learning_rate']:g}, weight decay {decay}, "
                     f"{args['lr_warmup_steps']} warm-up steps then polynomial decay (power "
                     f"{args.get('lr_power', 1.0):g}), batch {args['train_batch_size']}",
        "Steps": f"{summary['global_step']}" + (f" at {60 * minutes / summary['global_step']:.2f} s per step on a "
                                                 f"2-core CPU (about {minutes:.0f} minutes)" if minutes else "")
                 + f"; best validation mIoU {summary['best_validation_miou']:.3f} at step {summary['best_step']}",
        "Command": "`bash scripts/train_camvid_segmenter.sh DATA` (training/train_segmenter.py)",
    }
    model.half().save_pretrained(target)
    processor.save_pretrained(target)
    (target / "README.md").write_text(segmenter_card(results, training, description, tags), encoding="utf-8")
    (target / "test_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


# Stage 1 of scripts/train_camvid_receiver.sh (the 96x128 receiver that stage 2 starts from), for the card.
STAGE_ONE = ("3500 steps on CamVid train frames resized to 96x128 (48x64 crops, coarse images made once by the "
             "converter: 24x32 area downsample + HEVC QP 35), lr 0.0004, batch 8; about 95 minutes on one CPU thread")
SHIPPED_SIZE = [360, 480]  # CamVid's native frame size, the size both shipped receivers were trained for


def _coarse_recipe(args: dict) -> str:
    qualities = args.get("coarse_qualities") or [args.get("coarse_quality") or 35]
    return (f"made on the fly as the transmitter makes them: {args['coarse_downsample']}x area downsample of the "
            f"whole {args['resolution'][0]}x{args['resolution'][1]} frame + HEVC (x265) at a QP drawn per sample "
            f"from {', '.join(f'{q:g}' for q in qualities)}")


def package_receiver(run: Path, target: Path, eval_results) -> None:
    from spic_diffusers import SPICPipeline
    from spic_diffusers.hub import save_for_hub

    pipe = SPICPipeline.from_pretrained(run)
    args = json.loads((run / "spic_training_args.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())
    minutes = summary["global_step"] / summary["steps_per_second"] / 60 if summary.get("steps_per_second") else None
    crop = args["random_crop"]
    training = {
        "Data": "CamVid train (367 real street photographs) at their native 360x480, maps in Cityscapes train ids",
        "Stage 1": STAGE_ONE,
        "Stage 2 (native scale)": f"{summary['global_step']} steps from stage 1's weights on random "
                                  f"{crop[0]}x{crop[1]} crops (on the coarse grid) of the full frames, flips"
                                  + (f"; {minutes:.0f} minutes on one CPU thread" if minutes else ""),
        "Coarse images": _coarse_recipe(args),
        "Objective": "hybrid loss (noise MSE + variational bound on the learned variance), linear betas, 1000 steps",
        "Timesteps": f"{args['timestep_bias_fraction']:.0%} drawn from t < {args['timestep_bias_max']}, "
                     "the rest from 0..999",
        "Guidance drop": f"{args['cfg_drop_rate']:.0%} of samples with an all-zero map",
        "Optimiser": f"AdamW, lr {args['learning_rate']:g} ({args['lr_warmup_steps']} warm-up steps), batch "
                     f"{args['train_batch_size']}, gradient clipping {args['max_grad_norm']}, bf16 autocast, "
                     "channels-last",
        "EMA": f"decay {args['ema_decay']} (the EMA weights ship)",
        "Command": "`bash scripts/train_camvid_receiver.sh CAMVID_ROOT` (training/train_spic.py; both stages)",
    }
    pipe.unet.register_to_config(sample_size=SHIPPED_SIZE)
    pipe.register_to_config(default_unet_dtype="bf16")
    pipe.unet.half()
    save_for_hub(
        pipe, target, overwrite=True, model_id=f"src/spic_diffusers/assets/{RECEIVER_NAME}", title=RECEIVER_NAME,
        summary=("A SPIC receiver trained on real street photographs (CamVid) at their native 360x480. It ships "
                 "inside the `spic-diffusers` package as the default model of the codec and the reference of the "
                 "demo's `--paper_sampler`: `SPICPipeline.from_pretrained(spic_diffusers.demo.shipped_model_path())`."
                 " On CPUs with native bf16 (AVX512-BF16, AMX) its UNet runs under bf16 autocast by default "
                 "(`default_unet_dtype`); pass `unet_dtype=\"fp32\"` for full precision."),
        source="trained from scratch by spic-diffusers on CamVid with training/train_spic.py",
        eval_results=eval_results, training=training, datasets=["camvid"], license=CAMVID_LICENSE,
        limitations=("- Trained on 367 CamVid frames (Cambridge, 2007-2008, 360x480) on a CPU budget: it restores "
                     "edges, colours and coarse textures that the map and the coarse image imply, not fine detail. "
                     "Other cities and sizes decode (the UNet is convolutional; 256x512 Cityscapes-shaped frames "
                     "are tested), with less fidelity.\n"
                     "- Its figures against whole-image codecs at the paper's operating point are in the "
                     "spic-diffusers README (the operating-point table, `scripts/evaluate_operating_point.sh`).\n"
                     f"- {CAMVID_CREDIT}."),
    )  # fmt: skip


def fast_rows(table: dict, run: Path, steps: int | None = None) -> tuple[dict, list[dict]]:
    """The paper sampler's row and the rows of the student `run` at `steps` steps (default: its own count), from a
    quality table."""
    name = run.resolve().name
    if steps is None:  # decode_quality labels a student's own count "student-K (NAME)"
        rows = [r for r in table["rows"] if r["sampler"].startswith("student-") and f"({name})" in r["sampler"]]
    else:  # ... and another count "student-K (NAME, not its own K)"
        rows = [r for r in table["rows"] if r["sampler"].startswith((f"student-{steps} ({name})",
                                                                      f"student-{steps} ({name}, "))]
    if not rows:
        raise SystemExit(f"--fast_table has no row of the student {name!r} at "
                         f"{'its own step count' if steps is None else f'{steps} step(s)'}; run "
                         "benchmarks/bench_decode.py --quality_table with --student pointing at it")
    return table["rows"][0], rows


def package_fast(run: Path, target: Path, table: dict | None, num_steps: int | None = None) -> None:
    from spic_diffusers import SPICPipeline
    from spic_diffusers.hub import save_for_hub
    from spic_diffusers.training.distill import student_timesteps

    pipe = SPICPipeline.from_pretrained(run)
    args = json.loads((run / "spic_distill_args.json").read_text())
    summary = json.loads((run / "distill_summary.json").read_text())
    trained = list(pipe.config.default_timesteps or [])
    steps = trained
    if num_steps is not None and num_steps != len(trained):
        # Shipped with fewer steps than it was trained for, where the quality table measured it better.
        try:
            steps = student_timesteps(summary["teacher_timesteps"], num_steps)
        except ValueError as err:
            raise SystemExit(f"--fast_steps {num_steps}: {err}") from None
        pipe.register_to_config(default_timesteps=steps)
    training = {
        "Teacher": f"`{RECEIVER_NAME}` with its sampler made deterministic: DDIM (eta = 0), guidance "
                   f"{args['guidance_scale']:g}, {len(summary['teacher_timesteps'])} steps from t = "
                   f"{summary['teacher_timesteps'][0]} (40 UNet evaluations), "
                   + ("starting from the upsampled coarse image noised to that timestep (fresh Gaussian noise; the "
                      "student keeps this start)" if args.get("start_noise", "none") == "forward"
                      else "starting from the upsampled coarse image as is"),
        "Student": f"{len(trained)} single-pass step(s) at t = {trained}, initialised from "
                   + (f"a student with more steps (`{Path(args['student_init']).name}`)" if args.get("student_init")
                      else "the teacher")
                   + ("" if steps == trained else f"; shipped with {len(steps)} step(s) at t = {steps} as its "
                      "default, which measured better on the quality table (pass `timesteps=` to run the "
                      "trained schedule)"),
        "Objective": "progressive distillation's x0 target (the x0 whose DDIM step lands on the teacher's state), "
                     "max(SNR, 1) weighting; guidance and step count distilled together",
        "Data": f"{'the first ' + str(args['max_train_samples']) if args.get('max_train_samples') else 'all'} "
                f"CamVid train frames at {args['resolution'][0]}x{args['resolution'][1]}; teacher trajectories on "
                + (f"one {args['teacher_crop'][0]}x{args['teacher_crop'][1]} crop per frame (fixed per frame)"
                   if args.get("teacher_crop") else "whole frames")
                + ", the student on "
                + (f"{args['random_crop'][0]}x{args['random_crop'][1]} crops of them" if args.get("random_crop")
                   else "the same"),
        "Coarse images": (_coarse_recipe(args).replace("per sample", "per frame")
                          if args.get("coarse_qualities") else f"HEVC at QP {args['coarse_quality']:g}"),
        "Optimiser": f"AdamW, lr {args['learning_rate']:g} ({args['lr_warmup_steps']} warm-up steps), batch "
                     f"{args['train_batch_size']}, {summary['global_step']} steps, EMA {args['ema_decay']}",
        "Command": f"`bash scripts/distill_camvid_receiver.sh DATA WORK {len(trained)} \"\" {summary['global_step']} "
                   f"{args.get('max_train_samples') or ''}` (training/distill_spic.py)"
                   + (f"; the teacher took {summary['teacher_seconds_this_run'] / 60:.0f} minutes and the whole run "
                      f"{summary['seconds_this_run'] / 60:.0f} minutes on 2 CPU threads"
                      if summary.get("teacher_seconds_this_run") else ""),
    }
    results, comparison = None, ""
    if table is not None:
        paper, rows = fast_rows(table, run, None if steps == trained else len(steps))
        dataset = {"name": f"CamVid test, {table['num_frames']} frames spread over the split "
                           f"({table['size'][0]}x{table['size'][1]})", "type": "camvid", "split": "test"}
        results = [{"dataset": dataset, "metrics": {k: r[k] for k in QUALITY_KEYS if k in r},
                    "settings": {"steps": len(steps), "UNet": r["dtype"]}} for r in rows]
        lines = [f"- {r['dtype']}: {r['speedup_vs_paper']:.1f}x faster than the paper sampler (fp32) in the same "
                 f"run; PSNR {r.get('psnr_vs_paper', float('nan')):+.2f} dB, boundary PSNR "
                 f"{r.get('boundary_psnr_vs_paper', float('nan')):+.2f} dB, region colour error "
                 f"{100 * r.get('region_colour_error_vs_paper', float('nan')) / paper['region_colour_error']:+.1f} %"
                 + (f", mIoU {100 * r['miou_vs_paper']:+.1f} points" if "miou_vs_paper" in r else "")
                 for r in rows]
        comparison = ("\n- Against the teacher's paper sampler (DDPM, 40 UNet evaluations) on the same frames "
                      f"({table['threads']} CPU thread(s), `benchmarks/bench_decode.py --quality_table`):\n  "
                      + "\n  ".join(lines))
    pipe.unet.register_to_config(sample_size=SHIPPED_SIZE)
    pipe.register_to_config(default_unet_dtype="bf16")
    pipe.unet.half()
    save_for_hub(
        pipe, target, overwrite=True, model_id=f"src/spic_diffusers/assets/{FAST_NAME}", title=FAST_NAME,
        summary=(f"The fast receiver of `spic-diffusers`: `{RECEIVER_NAME}` distilled into {len(trained)} single-pass "
                 f"step(s)" + ("" if steps == trained else f" and shipped running {len(steps)} of them") +
                 f" ({len(steps)} UNet evaluation(s) instead of the paper sampler's 40) at CamVid's native 360x480. "
                 "It ships inside the package as the demo's decoder and the `--fast` model: `spic demo`, "
                 "`spic decode --fast`, or `SPICPipeline.from_pretrained(spic_diffusers.demo.shipped_model_path("
                 "\"fast\"))`, whose plain call runs the saved schedule, under bf16 autocast on CPUs with native "
                 "bf16 (`default_unet_dtype`)."),
        source=f"distilled by spic-diffusers from {RECEIVER_NAME} with training/distill_spic.py",
        eval_results=results, training=training, datasets=["camvid"], license=CAMVID_LICENSE,
        limitations=("- Distilled for the teacher's settings: 360x480 CamVid-like frames, HEVC QP 30-45 coarse "
                     f"images (4x down), the start at t = {steps[0] if steps else 192}. Timesteps outside "
                     f"{trained} or a guidance scale above 1 leave what it was trained for. Fewer steps give a "
                     "smoother image (the model's estimate of the mean), which distortion metrics reward; the "
                     "distortion and mIoU figures do not measure texture." + comparison + f"\n- {CAMVID_CREDIT}."),
    )  # fmt: skip


def _drop_key(value, key: str) -> bool:
    """Remove `key` from every object nested in `value`; whether any held it."""
    if isinstance(value, dict):
        found = key in value
        value.pop(key, None)
        return any([found, *[_drop_key(v, key) for v in value.values()]])
    if isinstance(value, list):
        return any([_drop_key(v, key) for v in value])
    return False


def strip_build_paths(folder: Path) -> None:
    """Drop every ``_name_or_path`` entry (transformers also writes one inside a segmenter's ``backbone_config``):
    a shipped config names no build machine's folder."""
    for path in folder.rglob("*.json"):
        config = json.loads(path.read_text())
        if _drop_key(config, "_name_or_path"):
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receiver_run", type=Path, default=None)
    parser.add_argument("--segmenter_run", type=Path, default=None)
    parser.add_argument("--camvid_dataset", type=Path, default=None, help="needed with --segmenter_run")
    parser.add_argument("--receiver_results", type=Path, default=None, help="JSON evaluation entries for the card")
    parser.add_argument("--fast_run", type=Path, default=None, help="a distilled student to ship as --fast")
    parser.add_argument("--fast_steps", type=int, default=None,
                        help="ship the student with this many steps as its default (fewer than it was trained for; "
                             "default: its own); the table must hold its rows at that count")
    parser.add_argument("--fast_table", type=Path, default=None,
                        help="bench_decode.py --quality_table JSON holding the student's rows (for its card)")
    parser.add_argument("--assets_dir", type=Path, default=Path(__file__).resolve().parents[1] / "src" /
                        "spic_diffusers" / "assets")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace existing shipped folders")
    args = parser.parse_args(argv)
    targets = []
    if args.segmenter_run:
        if args.camvid_dataset is None:
            parser.error("--segmenter_run needs --camvid_dataset (its test split measures the segmenter)")
        targets.append(args.assets_dir / SEGMENTER_NAME)
    if args.receiver_run:
        targets.append(args.assets_dir / RECEIVER_NAME)
    if args.fast_run:
        targets.append(args.assets_dir / FAST_NAME)
    if not targets:
        parser.error("nothing to package: pass --receiver_run, --segmenter_run and/or --fast_run")
    existing = [str(t) for t in targets if t.exists() and any(t.iterdir())]
    if existing and not args.overwrite:
        print(f"error: {', '.join(existing)} already exist; pass --overwrite to replace them", file=sys.stderr)
        return 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    staged = {}
    try:  # build every folder beside its target, then swap them in: a failure leaves the shipped ones as they were
        for target in targets:
            staged[target] = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            staged[target].chmod(0o755)  # mkdtemp's folders are private; a package's are not
        if args.segmenter_run:
            package_segmenter(args.segmenter_run, args.camvid_dataset, staged[args.assets_dir / SEGMENTER_NAME])
        if args.receiver_run:
            results = json.loads(args.receiver_results.read_text()) if args.receiver_results else None
            package_receiver(args.receiver_run, staged[args.assets_dir / RECEIVER_NAME], results)
        if args.fast_run:
            table = json.loads(args.fast_table.read_text()) if args.fast_table else None
            package_fast(args.fast_run, staged[args.assets_dir / FAST_NAME], table, args.fast_steps)
        for folder in staged.values():
            strip_build_paths(folder)
        for target, folder in staged.items():
            if target.exists():
                shutil.rmtree(target)
            os.replace(folder, target)
    finally:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
    print("wrote", ", ".join(str(t) for t in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
