"""Quality against time of the receiver's samplers on held-out frames (`bench_decode.py --quality_table`).

Every row runs in the same process on the same frames, coarse images and seeds: the paper sampler (DDPM, 100-step
spacing from t <= 200, guidance 1.5: 40 UNet evaluations), with students the deterministic sampler they learn from
(DDIM on the same 20 steps, started as they were), DDIM and DPM-Solver++ at 10 and 5 steps (guided), and distilled
students at 4 / 2 / 1 single-pass steps, each with the UNet in fp32 and in bf16 (autocast; latents and sampler in
fp32). A precision that runs slower than fp32 on the machine (bf16 on a CPU without native bf16) is left out, with
the measured ratio in the report. Reported per row: UNet evaluations and seconds per image, the speed-up over the
paper sampler in fp32, PSNR, boundary PSNR and region colour error against the original, and mIoU with
`--segmenter`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

PAPER = ("paper (DDPM-100, t<=200, s=1.5)", "DDPMScheduler", 100, {})
# The deterministic form of the paper sampler the students are distilled from (training/distill.py).
TEACHER = ("DDIM-20 (distillation teacher)", "DDIMScheduler", 100, {})
BASELINES = [
    ("DDIM-10", "DDIMScheduler", 50, {}),
    ("DDIM-5", "DDIMScheduler", 25, {}),
    ("DPM-Solver++-10", "DPMSolverMultistepScheduler", 50, {"algorithm_type": "dpmsolver++"}),
    ("DPM-Solver++-5", "DPMSolverMultistepScheduler", 25, {"algorithm_type": "dpmsolver++"}),
]
DTYPES = {"fp32": None, "bf16": "bf16"}
METRICS = ("psnr", "boundary_psnr", "region_colour_error", "miou")


def load_frames(path: str, split: str, num_frames: int, size: tuple[int, int]) -> list[dict[str, Any]]:
    """`num_frames` rows spread evenly over a `datasets` split (image + semantic_map), resized to the model's size.

    Spread, not the first rows (see `spread_indices`)."""
    import datasets
    from PIL import Image

    from spic_diffusers.evaluation.inputs import spread_indices

    data = datasets.load_from_disk(path)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise SystemExit(f"--frames {path!r} has no {split!r} split (it has {sorted(data)})")
        data = data[split]
    missing = {"image", "semantic_map"} - set(data.column_names)
    if missing:
        raise SystemExit(f"--frames {path!r} lacks the columns {sorted(missing)}")
    height, width = size
    frames = []
    for row in data.select(spread_indices(len(data), num_frames)):
        image = row["image"].convert("RGB").resize((width, height), Image.BICUBIC)
        labels = row["semantic_map"].resize((width, height), Image.NEAREST)
        frames.append({"id": str(row.get("id", len(frames))), "image": np.asarray(image),
                       "labels": np.asarray(labels).astype(np.int64)})
    return frames


def _warm_up(pipe, frame, dtypes) -> dict[str, float]:
    """Two short calls per precision, so the timed rows pay no one-off start-up costs; returns the seconds of
    the second (two UNet evaluations) per precision."""
    seconds = {}
    for dtype in dtypes:
        for _ in range(2):
            start = time.perf_counter()
            pipe(frame["labels"], frame["coarse"], output_type="np", unet_dtype=DTYPES[dtype], timesteps=[10],
                 guidance_scale=1.5)
            seconds[dtype] = time.perf_counter() - start
    return seconds


def _drop_slow_dtypes(seconds: dict[str, float], ratio: float | None, log) -> dict[str, str]:
    """Reduced precisions that run slower than fp32 by more than `ratio` on this machine (bf16 on a CPU without
    native bf16 instructions: tens of times slower) are left out of the table, with the reason recorded."""
    skipped = {}
    if ratio is None or "fp32" not in seconds:
        return skipped
    for dtype, value in seconds.items():
        if dtype != "fp32" and value > ratio * seconds["fp32"]:
            skipped[dtype] = (f"{value / seconds['fp32']:.1f}x the time of fp32 per UNet evaluation on this machine "
                              f"(over the {ratio:g}x limit; no native support): left out")
            log(f"{dtype}: {skipped[dtype]}")
    return skipped


def _row(pipe, frames, name: str, dtype: str, call: dict, segmenter, counted: list) -> dict[str, Any]:
    import torch

    from spic_diffusers.demo import measure

    scores, seconds, evaluations = [], [], []
    for index, frame in enumerate(frames):
        counted.clear()
        generator = torch.Generator().manual_seed(index)
        start = time.perf_counter()
        image = pipe(frame["labels"], frame["coarse"], output_type="np", generator=generator,
                     unet_dtype=DTYPES[dtype], **call).images[0]
        seconds.append(time.perf_counter() - start)
        evaluations.append(sum(counted))
        recon = np.round(image * 255).astype(np.uint8)
        scores.append(measure(frame["image"], recon, frame["labels"], segmenter))
    row = {"sampler": name, "dtype": dtype, "unet_evaluations": float(np.mean(evaluations)),
           "seconds_per_image": float(np.mean(seconds))}
    for key in METRICS:
        values = [s[key] for s in scores if key in s and math.isfinite(s[key])]
        if values:
            row[key] = float(np.mean(values))
    return row


def _students_start_noise(students: list[str]) -> str:
    """The start the students were distilled from; they must agree, the teacher row has one."""
    from spic_diffusers import SPICPipeline

    starts = {SPICPipeline.load_config(path).get("default_start_noise") or "none" for path in students}
    if len(starts) > 1:
        raise SystemExit(f"the students were distilled from different starts ({sorted(starts)}): compare them "
                         "in separate runs, each against its own teacher")
    return starts.pop() if starts else "none"


def run(model: str, frames_path: str, **kwargs) -> dict[str, Any]:
    """The table's report (see the module docstring); `kwargs` as `_run`. Gradients stay off only inside."""
    import torch

    with torch.no_grad():
        return _run(model, frames_path, **kwargs)


def _run(model: str, frames_path: str, *, students: list[str] | None = None, split: str = "test",
        num_frames: int = 8, student_steps: tuple[int, ...] = (4, 2, 1), segmenter_path: str | None = None,
        coarse_codec: str = "hevc", coarse_quality: float = 35, downsample: int = 4,
        dtypes: tuple[str, ...] = ("fp32", "bf16"), slow_dtype_ratio: float | None = 2.0,
        log=print) -> dict[str, Any]:
    import diffusers
    import torch

    from spic_diffusers import SPICPipeline
    from spic_diffusers.codec import area_downsample, make_coarse
    from spic_diffusers.sizes import as_hw
    from spic_diffusers.training import distill

    pipe = SPICPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    size = as_hw(pipe.unet.config.sample_size, "sample_size")
    frames = load_frames(frames_path, split, num_frames, size)
    for frame in frames:
        try:
            frame["coarse"] = make_coarse(frame["image"], downsample, coarse_codec, coarse_quality)
        except Exception as err:  # no HEVC encoder on this machine: area downsampling alone
            log(f"coarse codec {coarse_codec} unavailable ({err}); using area downsampling")
            frame["coarse"] = area_downsample(frame["image"], downsample)
    segmenter = None
    if segmenter_path:
        from spic_diffusers.codec import Segmenter

        segmenter = Segmenter.from_pretrained(segmenter_path)

    # The teacher row starts as the students were taught to (their saved `default_start_noise`).
    teacher_start = _students_start_noise(students or [])
    teacher_row = (f"{TEACHER[0][:-1]}, {teacher_start}-noised start)" if teacher_start != "none" else TEACHER[0],
                   *TEACHER[1:])
    counted: list[int] = []
    rows = []
    paper_scheduler = pipe.scheduler
    skipped = _drop_slow_dtypes(_warm_up(pipe, frames[0], dtypes), slow_dtype_ratio, log)
    dtypes = tuple(d for d in dtypes if d not in skipped)
    handle = pipe.unet.register_forward_hook(lambda module, args, out: counted.append(1))
    for dtype in dtypes:
        for name, cls, spacing, extra in [PAPER, *([teacher_row] if students else []), *BASELINES]:
            pipe.scheduler = getattr(diffusers, cls).from_config(paper_scheduler.config, **extra)
            call = {"num_inference_steps": spacing, "guidance_scale": 1.5}
            if name == teacher_row[0]:
                call["start_noise"] = teacher_start
            rows.append(_row(pipe, frames, name, dtype, call, segmenter, counted))
            log(f"{rows[-1]}")
    handle.remove()
    pipe.scheduler = paper_scheduler

    for path in students or []:
        student = SPICPipeline.from_pretrained(path)
        student.set_progress_bar_config(disable=True)
        grid = distill.teacher_timesteps(student, 100, 200)
        _warm_up(student, frames[0], dtypes)
        handle = student.unet.register_forward_hook(lambda module, args, out: counted.append(1))
        for dtype in dtypes:
            for k in student_steps:
                ts = distill.student_timesteps(grid, k)
                own = list(student.config.default_timesteps or []) == ts
                call = {} if own else {"timesteps": ts, "guidance_scale": 1.0}
                label = f"student-{k} ({path.rstrip('/').split('/')[-1]}{'' if own else ', not its own K'})"
                rows.append(_row(student, frames, label, dtype, call, segmenter, counted))
                log(f"{rows[-1]}")
        handle.remove()

    reference = rows[0]
    for row in rows:
        row["speedup_vs_paper"] = reference["seconds_per_image"] / row["seconds_per_image"]
        for key in ("psnr", "boundary_psnr", "region_colour_error", "miou"):
            if key in row and key in reference:
                row[f"{key}_vs_paper"] = row[key] - reference[key]
    return {"benchmark": "decode_quality", "model": model, "students": students or [], "frames": frames_path,
            "split": split, "num_frames": len(frames), "size": list(size), "coarse_codec": coarse_codec,
            "threads": torch.get_num_threads(), "skipped_dtypes": skipped, "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    """The table as Markdown (speed-up and differences against the paper sampler in fp32)."""
    has_miou = any("miou" in r for r in report["rows"])
    head = ["sampler", "UNet", "evals", "s/image", "speed-up", "PSNR", "boundary PSNR", "region colour err"]
    head += ["mIoU"] if has_miou else []
    lines = [f"{report['num_frames']} frames of `{report['frames']}` ({report['split']}), "
             f"{report['size'][0]}x{report['size'][1]}, {report['threads']} threads",
             *[f"\n{dtype}: {why}" for dtype, why in report.get("skipped_dtypes", {}).items()],
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(row, key, digits=2):
        return f"{row[key]:.{digits}f}" if key in row else "-"

    for r in report["rows"]:
        cells = [r["sampler"], r["dtype"], f"{r['unet_evaluations']:.0f}", f"{r['seconds_per_image']:.3f}",
                 f"{r['speedup_vs_paper']:.1f}x", fmt(r, "psnr"), fmt(r, "boundary_psnr"),
                 fmt(r, "region_colour_error")]
        cells += [fmt(r, "miou", 3)] if has_miou else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
