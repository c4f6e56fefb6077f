"""The operating-point evaluation end to end: the committed script on a tiny test split with the shipped models, and
the table that combines its fast-student and paper-sampler runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spic_diffusers.evaluation import COARSE_BASELINE, MAP_ONLY, EvaluationError
from spic_diffusers.evaluation.operating_point import FAST, FAST_SUBSET, PAPER, check_goals, operating_point_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """`scripts/evaluate_operating_point.sh` on three 64x96 synthetic test frames, two rates, the paper sampler on
    every second frame."""
    from spic_diffusers.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("operating_point")
    make_synthetic_dataset(3, 64, 96, seed=3, splits=("test",)).save_to_disk(root / "data")
    env = dict(os.environ, PYTHON=sys.executable, PROCS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    command = ["bash", str(ROOT / "scripts" / "evaluate_operating_point.sh"), str(root / "data"), str(root / "out"),
               "35,45", "2"]
    # in two goes, as a run split over machines or sessions is: the decoding parts, then the table where both are
    result = subprocess.run(command, env=dict(env, PARTS="paper fast"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| Rate | Candidate |" not in result.stdout and not (root / "out" / "table").exists()
    result = subprocess.run(command, env=dict(env, PARTS="table"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| Rate | Candidate |" in result.stdout
    return root / "out"


def test_the_script_names_an_unknown_part_before_it_starts(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "evaluate_operating_point.sh"), str(tmp_path / "data"),
                             str(tmp_path / "out")], env=dict(os.environ, PARTS="fast figures", PYTHON=sys.executable),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown part 'figures'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_script_writes_the_table_with_every_candidate_at_every_rate(run):
    table = json.loads((run / "table" / "operating_point.json").read_text())
    assert table["frames"] == 3 and len(table["paper_frames"]) == 2  # frames 0 and 2
    rates = list(dict.fromkeys(r["rate"] for r in table["rows"] if r["rate"]))
    assert rates == ["hevc QP 35, 4x down", "hevc QP 45, 4x down"]  # highest rate first
    for rate in rates:
        candidates = {r["candidate"] for r in table["rows"] if r["rate"] == rate}
        assert {FAST, PAPER, FAST_SUBSET, MAP_ONLY, COARSE_BASELINE, "hevc", "webp", "jxl", "avif",
                "jpeg"} <= candidates, candidates
        rows = {r["candidate"]: r for r in table["rows"] if r["rate"] == rate}
        fast = rows[FAST]
        assert fast["frames"] == 3 and rows[PAPER]["frames"] == 2 and rows[FAST_SUBSET]["frames"] == 2
        assert fast["bpp"] == pytest.approx(fast["bpp_map"] + fast["bpp_coarse"], abs=0.02)  # + the header
        assert rows[MAP_ONLY]["bpp"] < fast["bpp"] and rows[MAP_ONLY]["bpp_map"] == rows[MAP_ONLY]["bpp"]
        for row in rows.values():
            assert row["miou"] is not None and row["psnr"] is not None and row["seconds"] > 0, row
    # the student over the subset is its own records on those frames, not its whole-split figure
    fast_records = [json.loads(line) for line in (run / "fast" / "per_image.jsonl").read_text().splitlines()]
    paper_ids = set(table["paper_frames"])
    spic = [r for r in fast_records if r["kind"] == "spic" and r["id"] in paper_ids
            and r["setting"]["rate"]["coarse_quality"] == 35]
    subset = next(r for r in table["rows"] if r["candidate"] == FAST_SUBSET and r["rate"] == rates[0])
    assert subset["psnr"] == pytest.approx(sum(r["scores"]["psnr"] for r in spic) / len(spic))
    assert {g["goal"] for g in table["goals"]} >= {"mIoU within reach of the originals",
                                                   "region colour error no worse than the coarse image's",
                                                   "student PSNR close to the paper sampler's"}
    text = (run / "table" / "operating_point.md").read_text()
    assert "| Rate | Goal | Margin | Met |" in text and "SPIC, paper sampler" in text
    for name in table["plots"]:
        assert (run / "table" / name).stat().st_size > 5000


def test_goals_are_measured_against_the_best_codec_below_the_rate_bound():
    def row(candidate, rate, **values):
        return {"candidate": candidate, "rate": rate, **values}

    rows = [row("original", None, miou=0.50),
            row(FAST, "a", bpp=0.14, miou=0.48, region_colour_error=5.0, psnr=25.0),
            row(PAPER, "a", miou=0.49, psnr=25.5), row(FAST_SUBSET, "a", miou=0.485, psnr=25.0),
            row(COARSE_BASELINE, "a", region_colour_error=6.0), row("hevc", "a", miou=0.40), row("jxl", "a", miou=0.45),
            row(FAST, "b", bpp=0.20, miou=0.40, region_colour_error=7.0), row("hevc", "b", miou=0.45),
            row(COARSE_BASELINE, "b", region_colour_error=6.0)]
    goals = {(g["rate"], g["goal"]): g for g in check_goals({"rows": rows})}
    codec = goals[("a", "mIoU above the best whole-image codec")]
    assert codec["margin"] == pytest.approx(0.03) and codec["met"] is False and "jxl" in codec["detail"]
    assert ("b", "mIoU above the best whole-image codec") not in goals  # 0.20 bpp is above the 0.15 bound
    assert goals[("a", "mIoU within reach of the originals")]["met"] is True
    assert goals[("b", "mIoU within reach of the originals")]["met"] is False
    assert goals[("a", "region colour error no worse than the coarse image's")]["met"] is True
    assert goals[("b", "region colour error no worse than the coarse image's")]["met"] is False
    assert goals[("a", "student PSNR close to the paper sampler's")]["margin"] == pytest.approx(-0.2)
    assert goals[("a", "student mIoU close to the paper sampler's")]["met"] is True


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path):
    with pytest.raises(EvaluationError, match="not a finished evaluate_spic.py run"):
        operating_point_table(tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "operating_point_table.py"), "--fast_run",
                             str(tmp_path), "--output_dir", str(tmp_path / "t")], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert result.returncode == 2 and "not a finished evaluate_spic.py run" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_table_goes_into_the_shipped_models_cards(run, tmp_path):
    """`--paper_card` / `--fast_card`: the cards' Evaluation section holds the table and their model-index the model's
    own rows, one result per rate; the rest of each card is kept."""
    import shutil

    import yaml

    from spic_diffusers.demo import shipped_model_path

    cards = {}
    for flag, kind in (("--paper_card", "default"), ("--fast_card", "fast")):
        folder = tmp_path / kind
        folder.mkdir()
        shutil.copy(Path(shipped_model_path(kind)) / "README.md", folder / "README.md")
        cards[flag] = folder
    before = (cards["--fast_card"] / "README.md").read_text()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "operating_point_table.py"), "--fast_run",
                             str(run / "fast"), "--paper_run", str(run / "paper"), "--output_dir", str(tmp_path / "t"),
                             *(str(a) for pair in cards.items() for a in pair)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "t" / "operating_point.md").read_text().strip()
    for flag, candidate in (("--paper_card", PAPER), ("--fast_card", FAST)):
        text = (cards[flag] / "README.md").read_text()
        _, front, body = text.split("---\n", 2)
        assert table in body and f'this model is the row "{candidate}"' in body
        assert "No evaluation results were given" not in body and "## Limitations" in body and "## Training" in body
        (entry,) = yaml.safe_load(front)["model-index"]
        configs = [r["dataset"]["config"] for r in entry["results"]]
        assert configs == [f"coarse=hevc QP {q}, 4x down, frames={3 if flag == '--fast_card' else 2}" for q in (35, 45)]
        assert all(r["dataset"]["split"] == "test" for r in entry["results"])
    body_before = before.split("---\n", 2)[2].split("## Evaluation")[0]
    assert body_before in (cards["--fast_card"] / "README.md").read_text()  # the card's text up to its evaluation


def test_a_card_without_an_evaluation_section_is_refused(tmp_path):
    from spic_diffusers.hub import ModelCardError, set_card_evaluation

    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# A card\n\n## Usage\n")
    with pytest.raises(ModelCardError, match="no '## Evaluation' section"):
        set_card_evaluation(tmp_path, "text")
    with pytest.raises(ModelCardError, match="no model card"):
        set_card_evaluation(tmp_path / "missing", "text")
