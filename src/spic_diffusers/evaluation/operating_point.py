"""The claim at SPIC's operating point, as one table: a fast-student run over a whole split and a paper-sampler run
over a subset of its frames (`scripts/evaluate_operating_point.sh` makes both, then `operating_point_table`).

Both runs are ordinary `evaluate_spic.py` output folders. The fast run carries the baselines (the upsampled coarse
image, the map-only ablation, whole-image codecs at SPIC's rate); the paper run carries SPIC alone, on the frames
its sampler could afford. The fast student's figures are also given over that subset, so the student and the
reference sampler are compared on the same frames. mIoU is set-level against the dataset's map.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import aggregate
from .records import finite, json_default
from .report import save_rate_plot
from .settings import COARSE_BASELINE, MAP_ONLY, ORIGINAL, SPIC, EvaluationError

FAST, PAPER, FAST_SUBSET = "SPIC, fast student", "SPIC, paper sampler", "SPIC, fast student (subset)"
SAME_RATE = " (same rate)"
COLUMNS = (("bpp", "bpp", 4), ("bpp_map", "map", 4), ("bpp_coarse", "coarse", 4), ("miou", "mIoU", 3),
           ("psnr", "PSNR [dB]", 2), ("boundary_psnr", "boundary PSNR [dB]", 2),
           ("region_colour_error", "region colour error", 2), ("seconds", "decode [s]", 2))
# The goals: margins over the best whole-image codec and to the originals, and the student's tolerance.
GOALS = {"max_bpp": 0.15, "codec_margin": 0.05, "original_gap": 0.03, "student_psnr": 0.3, "student_miou": 0.01}
CARD_DATASET = {"name": "CamVid", "type": "camvid", "split": "test"}
CARD_METRICS = ("bpp", "miou", "psnr", "boundary_psnr", "region_colour_error")


def load_run(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`results.json` and the per-image records of an evaluation folder."""
    folder = Path(folder)
    try:
        results = json.loads((folder / "results.json").read_text())
        records = [json.loads(line) for line in (folder / "per_image.jsonl").read_text().splitlines() if line]
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{folder}: not a finished evaluate_spic.py run ({error})") from None
    return results, records


def _rate_key(rate: dict[str, Any]) -> tuple:
    return rate["coarse_codec"], rate["coarse_quality"], rate["downsample"], rate["map_coder"]


def _rate_label(rate: dict[str, Any]) -> str:
    return f"{rate['coarse_codec']} QP {rate['coarse_quality']:g}, {rate['downsample']}x down"


def _subset_row(records: list[dict], ids: set[str], rate: dict[str, Any]) -> dict[str, Any] | None:
    """The fast student's SPIC figures over the frames `ids` at `rate`, from its per-image records."""
    entries = [r for r in records if r.get("kind") == "spic" and r["id"] in ids
               and _rate_key(r["setting"]["rate"]) == _rate_key(rate)]
    if not entries:
        return None
    return aggregate.row(FAST_SUBSET, _rate_label(rate), entries, lambda paths: {}, {})


def _entry(candidate: str, row: dict[str, Any], rate: dict[str, Any] | None, frames: int | None = None) -> dict:
    out = {"candidate": candidate, "rate": None if rate is None else _rate_label(rate),
           "frames": row.get("n") if frames is None else frames}
    for key, _, _ in COLUMNS:
        out[key] = row.get(key)
    out["miou"] = row.get("miou_gt", row.get("miou"))
    if rate is not None:
        out["coarse_quality"], out["downsample"] = rate["coarse_quality"], rate["downsample"]
    return out


def operating_point_table(fast_dir: str | Path, paper_dir: str | Path | None = None) -> dict[str, Any]:
    """Rows per rate (SPIC fast, SPIC paper on the subset, the fast student on the subset, map only, coarse image,
    each codec), the originals' mIoU, and the goals checked."""
    fast, fast_records = load_run(fast_dir)
    paper, paper_records = load_run(paper_dir) if paper_dir else (None, [])
    paper_ids = {r["id"] for r in paper_records if r.get("kind") == "spic"}
    rows: list[dict[str, Any]] = []
    original = next((r for r in fast["rows"] if r["method"] == ORIGINAL), None)
    if original is not None:
        rows.append(_entry("original", original, None))
    rates = []
    for row in fast["rows"]:
        if row["method"] == SPIC and row.get("rate") and _rate_key(row["rate"]) not in [_rate_key(r) for r in rates]:
            rates.append(row["rate"])
    rates.sort(key=lambda rate: -next(r["bpp"] for r in fast["rows"] if r["method"] == SPIC
                                      and _rate_key(r["rate"]) == _rate_key(rate)))
    for rate in rates:
        at_rate = [r for r in fast["rows"] if r.get("rate") and _rate_key(r["rate"]) == _rate_key(rate)]
        spic = next(r for r in at_rate if r["method"] == SPIC)
        rows.append(_entry(FAST, spic, rate))
        if paper is not None:
            reference = next((r for r in paper["rows"] if r["method"] == SPIC and r.get("rate")
                              and _rate_key(r["rate"]) == _rate_key(rate)), None)
            if reference is not None:
                rows.append(_entry(PAPER, reference, rate))
                subset = _subset_row(fast_records, paper_ids, rate)
                if subset is not None:
                    rows.append(_entry(FAST_SUBSET, dict(subset, bpp_map=reference.get("bpp_map"),
                                                         bpp_coarse=reference.get("bpp_coarse")), rate))
        for row in at_rate:
            if row["method"] == SPIC:
                continue
            entry = _entry(row["method"].replace(SAME_RATE, ""), row, rate)
            if row["method"] == MAP_ONLY:
                entry["bpp_map"] = row.get("bpp")
            elif row["method"] == COARSE_BASELINE:
                entry["bpp_coarse"] = row.get("bpp")
            rows.append(entry)
    table = {"fast_run": str(fast_dir), "paper_run": None if paper_dir is None else str(paper_dir),
             "frames": fast.get("num_images"), "paper_frames": sorted(paper_ids), "rows": rows}
    table["goals"] = check_goals(table)
    return table


def _value(rows: list[dict], candidate: str, rate: str | None, key: str) -> float | None:
    for row in rows:
        if row["candidate"] == candidate and row["rate"] == rate:
            value = row.get(key)
            return value if value is not None and math.isfinite(value) else None
    return None


def check_goals(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal at each rate: the measured margin and whether it holds (None where a figure is missing)."""
    rows, checks = table["rows"], []
    original = _value(rows, "original", None, "miou")
    codecs = sorted({r["candidate"] for r in rows if r["rate"] is not None} - {FAST, PAPER, FAST_SUBSET, MAP_ONLY,
                                                                                COARSE_BASELINE})
    for rate in dict.fromkeys(r["rate"] for r in rows if r["candidate"] == FAST):
        spic, bpp = _value(rows, FAST, rate, "miou"), _value(rows, FAST, rate, "bpp")
        scores = {c: _value(rows, c, rate, "miou") for c in codecs}
        scores = {c: v for c, v in scores.items() if v is not None}

        def check(goal: str, margin: float | None, limit: float, detail: str) -> None:
            checks.append({"rate": rate, "goal": goal, "margin": margin, "limit": limit,
                           "met": None if margin is None else margin >= limit - 1e-12, "detail": detail})

        if bpp is not None and bpp <= GOALS["max_bpp"] and scores and spic is not None:
            best = max(scores, key=scores.get)
            check("mIoU above the best whole-image codec", spic - scores[best], GOALS["codec_margin"],
                  f"best codec: {best} ({scores[best]:.3f})")
        if original is not None and spic is not None:
            check("mIoU within reach of the originals", GOALS["original_gap"] - (original - spic), 0.0,
                  f"originals {original:.3f}")
        colour, coarse = _value(rows, FAST, rate, "region_colour_error"), _value(rows, COARSE_BASELINE, rate,
                                                                                  "region_colour_error")
        check("region colour error no worse than the coarse image's",
              None if colour is None or coarse is None else coarse - colour, 0.0,
              "" if coarse is None else f"coarse image {coarse:.2f}")
        for key, goal, tolerance in (("psnr", "student PSNR close to the paper sampler's", GOALS["student_psnr"]),
                                     ("miou", "student mIoU close to the paper sampler's", GOALS["student_miou"])):
            reference, student = _value(rows, PAPER, rate, key), _value(rows, FAST_SUBSET, rate, key)
            if reference is not None and student is not None:
                check(goal, tolerance - (reference - student), 0.0, f"paper sampler {reference:.3f} on the subset")
    return checks


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(table: dict[str, Any]) -> str:
    """The table (one block per rate) and the goals."""
    head = ["Rate", "Candidate", "Frames", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in table["rows"]:
        cells = [row["rate"] or "–", row["candidate"], _fmt(row["frames"], 0)]
        cells += [_fmt(row.get(key), digits) for key, _, digits in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| Rate | Goal | Margin | Met | |", "|---|---|---:|---|---|"]
    for goal in table["goals"]:
        met = {True: "yes", False: "**no**", None: "–"}[goal["met"]]
        lines.append(f"| {goal['rate']} | {goal['goal']} | {_fmt(goal['margin'], 3)} | {met} | {goal['detail']} |")
    return "\n".join(lines) + "\n"


def plot(table: dict[str, Any], out_dir: str | Path) -> list[str]:
    """Rate against mIoU and against PSNR for every candidate (the originals' mIoU as a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, title in (("miou", "mIoU (segmenter vs ground truth)"), ("psnr", "PSNR [dB]")):
        series: dict[str, list[tuple[float, float]]] = {}
        for row in table["rows"]:
            if row["rate"] is None or row.get("bpp") is None or row.get(key) is None:
                continue
            series.setdefault(row["candidate"], []).append((row["bpp"], row[key]))
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for name, points in series.items():
            xs, ys = zip(*sorted(set(points)))
            style = {"linewidth": 2.5} if name.startswith("SPIC") and name != MAP_ONLY else {"linewidth": 1}
            ax.plot(xs, ys, marker="o", label=name, **style)
        original = _value(table["rows"], "original", None, key)
        if original is not None:
            ax.axhline(original, color="black", linestyle="--", linewidth=1, label="original photographs")
        written.append(save_rate_plot(fig, ax, title, out_dir / f"operating_point_rate_vs_{key}.png", dpi=110))
    return written


def write_table(fast_dir: str | Path, paper_dir: str | Path | None, out_dir: str | Path) -> dict[str, Any]:
    """Write `operating_point.{md,json}` and the two plots into `out_dir`; returns the table."""
    table = operating_point_table(fast_dir, paper_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table["plots"] = [Path(p).name for p in plot(table, out_dir)]
    (out_dir / "operating_point.md").write_text(markdown(table))
    (out_dir / "operating_point.json").write_text(json.dumps(finite(table), indent=2, default=json_default))
    return table


def card_results(table: dict[str, Any], candidate: str) -> list[dict[str, Any]]:
    """The ``candidate``'s figures at each rate as model-card evaluation entries (``hub.normalize_eval_results``)."""
    entries = []
    for row in table["rows"]:
        if row["candidate"] != candidate:
            continue
        metrics = {key: row[key] for key in CARD_METRICS if row.get(key) is not None and math.isfinite(row[key])}
        entries.append({"dataset": dict(CARD_DATASET), "settings": {"coarse": row["rate"], "frames": row["frames"]},
                        "metrics": metrics})
    return entries


def update_card(card: str | Path, table: dict[str, Any], candidate: str, command: str) -> Path:
    """Write the table into a shipped model's card: its Evaluation section and, for ``candidate``, its model-index."""
    from ..hub import set_card_evaluation

    entries = card_results(table, candidate)
    if not entries:
        raise EvaluationError(f"the table has no rows for {candidate!r}; cannot fill {card}'s evaluation")
    text = (f"At the paper's operating point, CamVid test frames at 360x480 (`{command}`): this model is the row "
            f"\"{candidate}\". {table['frames']} frames; the paper sampler decodes {len(table['paper_frames'])} of "
            "them, and the fast student's figures on those frames are given beside it. mIoU is the shipped "
            "segmenter's (upernet-camvid), set-level, against the ground truth; the whole-image codecs are coded "
            "at SPIC's rate (the quality whose stream is closest below).\n\n" + markdown(table))
    return set_card_evaluation(card, text, entries, CARD_DATASET["name"])
