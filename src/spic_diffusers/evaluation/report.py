"""The report of a run: `results.json`, `per_image.jsonl`, the Markdown table, rate and sampler plots, a grid."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import train_ids_to_color
from .inputs import example_arrays
from .records import RecordStore, finite, json_default
from .settings import COARSE_BASELINE, SAVED_SAMPLER, SPIC, EvalConfig


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


TABLE_COLUMNS = (
    ("method", "Method", None),
    ("setting", "Setting", None),
    ("n", "N", None),
    ("bpp", "BPP", 4),
    ("bpp_map", "BPP map", 4),
    ("bpp_coarse", "BPP coarse", 4),
    ("denoising_steps", "Steps run", 1),
    ("miou", "mIoU", 3),
    ("miou_gt", "mIoU GT", 3),
    ("pixel_accuracy", "Pix. acc.", 3),
    ("fid", "FID", 2),
    ("kid", "KID", 4),
    ("psnr", "PSNR", 2),
    ("boundary_psnr", "PSNR bnd.", 2),
    ("region_colour_error", "Reg. col. err.", 2),
    ("ssim", "SSIM", 3),
    ("ms_ssim", "MS-SSIM", 3),
    ("lpips", "LPIPS", 3),
    ("seconds", "Decode [s]", 2),
)


def markdown_table(results: dict[str, Any]) -> str:
    """The aggregate rows as a Markdown table, followed by the reasons for skipped metrics."""
    lines = ["| " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if key in ("method", "setting") else "---:" for key, _, _ in TABLE_COLUMNS) + "|")
    for row in results["rows"]:
        cells = [_fmt(row.get(key), digits) if digits else _fmt(row.get(key)) for key, _, digits in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    text = [f"# SPIC evaluation ({results['num_images']} images)", "", *lines, ""]
    text.append("BPP of baselines: whole-image codec at the quality whose size is closest to SPIC's stream from below;"
                " coarse (bicubic): coarse image bytes plus the stream header. mIoU: set-level (summed intersections"
                " over summed unions; ignore pixels and classes the segmenter does not know excluded, as are classes"
                " with an empty union) of the segmenter's map of each image against the transmitted map"
                f" ({results['config']['transmit_map'].replace('_', ' ')}); mIoU GT: the same against the dataset's"
                " map. PSNR bnd.: pixels within 2 px of a class edge of the dataset's map; Reg. col. err.: per class"
                " region, the RGB distance (0-255) of its mean colour to the original's, averaged over classes.")
    if results["skipped"]:
        text += ["", "Skipped or unavailable:", ""]
        text += [f"- {name}: {reason}" for name, reason in sorted(results["skipped"].items())]
    above = [row for row in results["rows"] if row.get("above_target")]
    if above:
        text += ["", "Above the target rate even at the lowest quality: " + ", ".join(
            f"{r['method']} / {r['setting']}: {r['above_target']} image(s)" for r in above)]
    errors = [row for row in results["rows"] if row.get("errors")]
    if errors:
        text += ["", "Failures: " + ", ".join(f"{r['method']} / {r['setting']}: {r['errors']} image(s)"
                                              for r in errors)]
    return "\n".join(text) + "\n"


def plot_rate_curves(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Rate vs FID / mIoU / PSNR for SPIC (one curve per sampler) and each baseline method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("bpp") is not None]
    factors = {r["rate"]["downsample"] for r in rows if r["method"] == SPIC}
    written = []
    for metric, title in (("fid", "FID (lower is better)"), ("miou", "mIoU"), ("psnr", "PSNR [dB]"),
                          ("boundary_psnr", "boundary PSNR [dB]"), ("region_colour_error", "region colour error")):
        series: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            value = row.get(metric)
            if value is None or not math.isfinite(value):
                continue
            name = row["method"]
            if row["method"] == SPIC:
                sampler = row["sampler"]
                name = ("SPIC, saved schedule" if sampler["scheduler"] == SAVED_SAMPLER
                        else f"SPIC {sampler['scheduler']} x{sampler['steps']}")
                if len(factors) > 1:
                    name += f" d={row['rate']['downsample']}"
            series.setdefault(name, []).append((row["bpp"], value))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for name, points in sorted(series.items()):
            points.sort()
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=name)
        written.append(save_rate_plot(fig, ax, title, out_dir / f"rate_vs_{metric}.png", dpi=120))
    return written


def save_rate_plot(fig, ax, ylabel: str, path: Path, dpi: int = 120) -> str:
    """Label a rate plot (bits per pixel on x), add its grid and legend, write it and close the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("bits per pixel")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def plot_sampler_sweep(results: dict[str, Any], out_dir: Path) -> str | None:
    """Quality against the number of sampling steps, one line per scheduler, at the base rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base_rate = results["config"]["rate"]
    rows = [r for r in results["rows"] if r["method"] == SPIC and r.get("rate") == base_rate]
    if len({(r["sampler"]["scheduler"], r["sampler"]["steps"]) for r in rows}) < 2:
        return None
    metrics_shown = [m for m in ("fid", "miou", "psnr") if any(r.get(m) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(metrics_shown), figsize=(4.5 * len(metrics_shown), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics_shown):
        by_scheduler: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            value = row.get(metric)
            if value is not None and math.isfinite(value):
                steps = row.get("denoising_steps", row["sampler"]["steps"])
                by_scheduler.setdefault(row["sampler"]["scheduler"], []).append((steps, value))
        for name, points in sorted(by_scheduler.items()):
            points.sort()
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel("denoising steps run (t <= max_timestep)")
        ax.set_ylabel(metric.upper() if metric != "miou" else "mIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "sampler_sweep.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def sample_grid(
    store: RecordStore,
    dataset,
    bundles: list[dict],
    path: Path,
    max_images: int = 4,
    transmitted_prediction: bool = False,
) -> str | None:
    """Rows of truth / colourised transmitted map / coarse (bicubic) / SPIC / first codec at the same rate,
    labelled; small images are enlarged (nearest neighbour) so that the grid stays readable."""
    from PIL import Image, ImageDraw

    rows, titles = [], ["truth", "map", "coarse (bicubic)", "SPIC"]
    n = min(max_images, len(bundles))
    for bundle in bundles[:n]:
        index = bundle["index"]
        _, image, semantic = example_arrays(dataset[index], index)
        if transmitted_prediction:
            semantic = np.asarray(Image.open(store.out / bundle["original"]["prediction"]), dtype=np.uint8)
        rate = bundle["rates"][0]["methods"]
        panels = [image, train_ids_to_color(semantic), store.load_rgb(rate[COARSE_BASELINE]["image"]),
                  store.load_rgb(bundle["spic"][0]["image"])]
        codec_names = [m for m in rate if m != COARSE_BASELINE and "image" in rate[m]]
        if codec_names:
            panels.append(store.load_rgb(rate[codec_names[0]]["image"]))
            if len(titles) == 4:
                titles.append(codec_names[0])
        rows.append(panels)
    if not rows:
        return None
    columns = max(len(r) for r in rows)
    height, width = rows[0][0].shape[:2]
    scale = max(1, 128 // height)
    height, width = height * scale, width * scale
    pad, header = 2, 14
    canvas = Image.new("RGB", (columns * (width + pad) - pad, header + n * (height + pad) - pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles[:columns]):
        draw.text((j * (width + pad) + 2, 1), title, fill=(0, 0, 0))
    for i, panels in enumerate(rows):
        for j, panel in enumerate(panels):
            tile = Image.fromarray(panel).resize((width, height), Image.NEAREST)
            canvas.paste(tile, (j * (width + pad), header + i * (height + pad)))
    canvas.save(path)
    return str(path)


def write_outputs(
    store: RecordStore, results: dict[str, Any], config: EvalConfig, bundles: list[dict], dataset
) -> None:
    out = store.out
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    results["plots"] = plot_rate_curves(results, plots)
    sweep = plot_sampler_sweep(results, plots)
    if sweep:
        results["plots"].append(sweep)
    results["sample_grid"] = sample_grid(store, dataset, bundles, out / "sample_grid.png", config.grid_images,
                                         transmitted_prediction=config.transmit_map == "segmenter")
    with open(out / "per_image.jsonl", "w") as handle:
        for s in range(len(config.settings())):
            for bundle in bundles:
                handle.write(json.dumps(finite({"kind": "spic", **bundle["spic"][s]}), default=json_default) + "\n")
        for r in range(len(config.rates())):
            for bundle in bundles:
                handle.write(json.dumps(finite({"kind": "rate", **bundle["rates"][r]}), default=json_default) + "\n")
    (out / "results.json").write_text(json.dumps(finite(results), indent=2, default=json_default, allow_nan=False))
    (out / "results.md").write_text(markdown_table(results))
