"""The evaluation script end to end on synthetic data, a tiny random SPIC pipeline and a tiny segmenter."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spic_diffusers import evaluation, metrics
from spic_diffusers.evaluation import EvaluationError


ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 32, 64


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A saved tiny pipeline, a saved tiny SegFormer (19 labels) and a 2-image synthetic validation split."""
    from conftest import save_tiny_segformer

    from spic_diffusers import SPICPipeline, SPICUNet2DModel
    from spic_diffusers.data.synthetic import make_synthetic_dataset
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    root = tmp_path_factory.mktemp("eval_assets")
    torch.manual_seed(0)
    unet = SPICUNet2DModel(
        sample_size=(HEIGHT, WIDTH),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_downsample_factors=(2,),
        attention_head_dim=16,
    )
    SPICPipeline(unet=unet, scheduler=default_scheduler()).save_pretrained(root / "pipe")

    from spic_diffusers.data.cityscapes import ID2LABEL

    save_tiny_segformer(root / "segmenter", HEIGHT, WIDTH, {int(k): v for k, v in ID2LABEL.items()})

    make_synthetic_dataset(2, HEIGHT, WIDTH, seed=0, splits=("validation",)).save_to_disk(root / "data")
    return root


def test_scheduler_names_map_to_diffusers_classes():
    import diffusers

    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    base = default_scheduler().config
    for name, (class_name, _) in evaluation.SCHEDULER_CLASSES.items():
        scheduler = evaluation.make_scheduler(name, base)
        assert type(scheduler) is getattr(diffusers, class_name)
        assert scheduler.config.num_train_timesteps == 1000
    assert evaluation.make_scheduler("dpmsolver++", base).config.algorithm_type == "dpmsolver++"
    with pytest.raises(EvaluationError, match="unknown scheduler"):
        evaluation.make_scheduler("plms", base)


def test_sweep_parsing():
    sweep = evaluation.parse_sampler_sweep("ddpm:20, ddim:10,dpmsolver++:5", 1.5, 200, 0)
    assert [(s.scheduler, s.steps) for s in sweep] == [("ddpm", 20), ("ddim", 10), ("dpmsolver++", 5)]
    for bad in ("ddpm", "ddpm:0", "ddpm:x", "nope:3", ""):
        with pytest.raises(EvaluationError):
            evaluation.parse_sampler_sweep(bad, 1.5, 200, 0)
    with pytest.raises(EvaluationError, match="--sweep_qualities"):
        evaluation.parse_number_list("30,abc", float, "--sweep_qualities")


@pytest.mark.parametrize("codec_name", ["jpeg", "webp"])
def test_match_rate_is_closest_from_below(codec_name):
    from spic_diffusers.codec import get_coarse_codec

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    target = 900
    matched = evaluation.match_rate(codec_name, image, target)
    assert matched["bytes"] <= target and not matched["above_target"]
    assert matched["decoded"].shape == image.shape
    candidates = evaluation.quality_candidates(type(get_coarse_codec(codec_name)))
    position = candidates.index(matched["quality"])
    if position + 1 < len(candidates):  # the next larger setting overshoots the target
        assert len(get_coarse_codec(codec_name, candidates[position + 1]).encode(image)) > target
    tiny = evaluation.match_rate(codec_name, image, 1)
    assert tiny["above_target"] and tiny["quality"] == candidates[0]


def test_match_rate_searches_for_several_targets_share_their_encodes():
    """The evaluation matches each codec to four rates of one image: the searches reuse each other's encodes and
    choose exactly what separate searches choose."""
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(128, 40, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    encodes: dict[int, bytes] = {}
    total = 0
    for target in (1200, 1000, 900, 700):
        alone = evaluation.match_rate("webp", image, target)
        shared = evaluation.match_rate("webp", image, target, encodes)
        assert (shared["quality"], shared["bytes"]) == (alone["quality"], alone["bytes"])
        assert np.array_equal(shared["decoded"], alone["decoded"])
        assert shared["encodes"] <= alone["encodes"]
        total += shared["encodes"]
    assert total == len(encodes) < 4 * alone["encodes"]


def test_refuses_foreign_non_empty_output_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    config = evaluation.EvalConfig(model="m", dataset="d", output_dir=str(tmp_path))
    with pytest.raises(EvaluationError, match="--overwrite"):
        evaluation.prepare_output_dir(config)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sweep_schedulers", "ddpm:0"], "STEPS >= 1"),
        (["--coarse_codec", "gif"], "unknown coarse codec"),
        (["--coarse_codec", "jpeg", "--sweep_qualities", "20,500"], "quality must be in"),
        (["--map_coder", "zip"], "unknown map coder"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--coarse_codec", "jpeg"], "cannot load split"),
        (["--transmit_map", "segmenter"], "--transmit_map segmenter needs --segmenter"),
        (["--transmit_map", "sent"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_with_a_message(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        evaluation.main(["--model", str(tmp_path / "no-model"), "--dataset", str(tmp_path / "no-data"),
                         "--output_dir", str(tmp_path / "o"), *extra])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for a refused command line


def _args(assets, out, *extra):
    return [
        "--model", str(assets / "pipe"), "--dataset", str(assets / "data"), "--split", "validation",
        "--output_dir", str(out), "--segmenter", str(assets / "segmenter"),
        "--coarse_codec", "jpeg", "--coarse_quality", "20", "--steps", "5", "--max_timestep", "200",
        "--baseline_codecs", "jpeg,webp", "--quiet", *extra,
    ]


def test_end_to_end_with_sweeps_and_resume(assets, tmp_path):
    out = tmp_path / "eval"
    weights = tmp_path / "inception.pth"
    if _has_torch_fidelity():
        from test_metrics import _random_inception_weights

        _random_inception_weights(weights)
    extra = ["--sweep_qualities", "10", "--sweep_downsample", "4,8", "--sweep_schedulers", "ddim:5,dpmsolver++:5",
             "--fid_feature_dim", "64"]
    if weights.exists():
        extra += ["--inception_weights", str(weights)]
    results = evaluation.main(_args(assets, out, *extra))

    rows = results["rows"]
    spic = [r for r in rows if r["method"] == evaluation.SPIC]
    # base + 2 rate-sweep qualities + 2 sampler-sweep entries
    assert len(spic) == 5
    assert {(r["sampler"]["scheduler"], r["sampler"]["steps"]) for r in spic} == {
        ("ddpm", 5), ("ddim", 5), ("dpmsolver++", 5)}
    for row in spic:
        assert row["n"] == 2 and row["errors"] == 0
        assert row["bpp"] == pytest.approx(row["bpp_map"] + row["bpp_coarse"] + row["bpp_header"])
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["pixel_accuracy"] <= 1.0
        assert np.isfinite(row["psnr"])
        assert row["denoising_steps"] == 1  # 5 linspace steps over 1000: only t=0 is <= 200
    # rate sweep: a higher JPEG quality or a smaller downsample factor costs more bits
    by_rate = {(r["rate"]["coarse_quality"], r["rate"]["downsample"]): r["bpp"] for r in spic}
    assert set(by_rate) == {(20, 4), (10, 4), (10, 8)}
    assert by_rate[10, 8] < by_rate[10, 4] < by_rate[20, 4]
    methods = {r["method"] for r in rows}
    assert {evaluation.ORIGINAL, evaluation.COARSE_BASELINE, "jpeg (same rate)", "webp (same rate)"} <= methods
    for row in rows:
        if row["method"] == "webp (same rate)":
            spic_bpp = next(r["bpp"] for r in spic if r["rate"] == row["rate"])
            if row["above_target"] == 0:
                assert row["bpp"] <= spic_bpp + 1e-9
    if weights.exists():
        assert all(np.isfinite(r["fid"]) and "kid" in r for r in spic)
    else:
        assert "fid" in results["skipped"]
    assert "lpips" in results["skipped"]

    # per-image BPP equals the stream size exactly
    first = json.loads((out / "per_image.jsonl").read_text().splitlines()[0])
    assert first["kind"] == "spic"
    assert first["bpp"] == pytest.approx(metrics.bpp_from_bytes(
        _stream_size(first["setting"]["rate"], assets, first["id"]), HEIGHT, WIDTH))

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    stored = json.loads((out / "results.json").read_text(), parse_constant=reject)
    assert len(stored["rows"]) == len(rows) and stored["plots"]
    table = (out / "results.md").read_text()
    assert "| SPIC |" in table and "| jpeg (same rate) |" in table and "mIoU" in table
    for name in ("rate_vs_miou.png", "rate_vs_psnr.png", "sampler_sweep.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert (out / "sample_grid.png").is_file()
    from PIL import Image

    grid = Image.open(out / "sample_grid.png")
    scale = 128 // HEIGHT
    assert grid.size == (5 * WIDTH * scale + 4 * 2, 14 + 2 * HEIGHT * scale + 2)

    # resume: every per-image record is reused, nothing is recomputed
    records = sorted((out / "records").rglob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in records}
    again = evaluation.main(_args(assets, out, *extra))
    assert {p: p.stat().st_mtime_ns for p in records} == stamps
    assert [r.get("miou") for r in again["rows"]] == [r.get("miou") for r in rows]


def _has_torch_fidelity() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch_fidelity") is not None


def _stream_size(rate: dict, assets: Path, image_id: str) -> int:
    from spic_diffusers import codec

    dataset = evaluation.load_eval_dataset(str(assets / "data"), "validation")
    index = list(dataset["id"]).index(image_id)
    _, image, semantic = evaluation.example_arrays(dataset[index], index)
    return len(codec.encode(image, semantic, coarse_codec=rate["coarse_codec"],
                            coarse_quality=rate["coarse_quality"], downsample=rate["downsample"],
                            map_coder=rate["map_coder"]))


def test_missing_model_is_refused(assets, tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluation.main(["--model", str(tmp_path / "no-model"), "--dataset", str(assets / "data"),
                         "--output_dir", str(tmp_path / "o"), "--coarse_codec", "jpeg"])
    assert "cannot load the SPIC pipeline" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_segmenter_with_unknown_labels_is_refused(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    config = SegformerConfig(num_labels=19, num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8],
                             patch_sizes=[3], strides=[2], num_attention_heads=[1], mlp_ratios=[1],
                             decoder_hidden_size=8)  # id2label stays LABEL_0..LABEL_18
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "seg")
    SegformerImageProcessor().save_pretrained(tmp_path / "seg")
    with pytest.raises(EvaluationError, match="id2label"):
        evaluation.load_segmenter(str(tmp_path / "seg"))
    with pytest.raises(EvaluationError, match="cannot load"):
        evaluation.load_segmenter(str(tmp_path / "missing"))


def test_script_runs_without_segmenter(assets, tmp_path, monkeypatch, capsys):
    import runpy

    out = tmp_path / "plain"
    monkeypatch.setattr(sys, "argv", [
        "evaluate_spic.py", "--model", str(assets / "pipe"), "--dataset", str(assets / "data"),
        "--output_dir", str(out), "--num_samples", "1", "--steps", "5", "--coarse_codec", "jpeg",
        "--no_baselines", "--quiet", "--threads", "1",
    ])
    runpy.run_path(str(ROOT / "scripts" / "evaluate_spic.py"), run_name="__main__")
    assert "| SPIC |" in capsys.readouterr().out
    assert torch.get_num_threads() == 1
    results = json.loads((out / "results.json").read_text())
    assert results["skipped"]["miou"].startswith("no segmenter")
    assert [r["method"] for r in results["rows"]] == [evaluation.SPIC]
    assert results["rows"][0].get("miou") is None and results["num_images"] == 1


def _scored(row: dict) -> bool:
    return all(row.get(k) is not None for k in ("psnr", "boundary_psnr", "region_colour_error", "miou", "miou_gt"))


def test_every_candidate_is_scored_at_every_rate(assets, tmp_path):
    out = tmp_path / "scores"
    results = evaluation.main(_args(assets, out, "--sweep_qualities", "10,40", "--no_lpips"))
    original = next(r for r in results["rows"] if r["method"] == evaluation.ORIGINAL)
    assert original["miou"] == pytest.approx(original["miou_gt"]) and original["miou"] < 1.0
    rows = [r for r in results["rows"] if r["method"] != evaluation.ORIGINAL]
    # SPIC, coarse (bicubic), jpeg and webp at each of three rates (base 20, sweep 10 and 40)
    assert {(r["method"], r["rate"]["coarse_quality"]) for r in rows} == {
        (m, q) for m in (evaluation.SPIC, evaluation.COARSE_BASELINE, "jpeg (same rate)", "webp (same rate)")
        for q in (10, 20, 40)}
    assert all(_scored(r) for r in rows if r["n"])
    # with the dataset's map transmitted, both mIoUs measure against the same map
    assert all(r["miou"] == pytest.approx(r["miou_gt"]) for r in rows if r["n"])
    spic = {r["rate"]["coarse_quality"]: r for r in rows if r["method"] == evaluation.SPIC}
    assert spic[10]["bpp"] < spic[20]["bpp"] < spic[40]["bpp"]
    for line in (out / "per_image.jsonl").read_text().splitlines():
        record = json.loads(line)
        candidates = [record] if record["kind"] == "spic" else list(record["methods"].values())
        for candidate in candidates:
            assert {"psnr", "boundary_psnr", "region_colour_error"} <= set(candidate["scores"])
            assert candidate["confusion"] is not None and candidate["confusion_gt"] is not None
    table = (out / "results.md").read_text()
    assert "| mIoU GT |" in table and "| PSNR bnd. |" in table and "| Reg. col. err. |" in table


def test_a_students_saved_schedule_and_the_map_only_ablation(assets, tmp_path):
    """`--scheduler saved` runs the pipeline's own schedule (a distilled student's); `--map_only` decodes each map with
    a flat coarse image at the map's rate; every decode is timed."""
    from spic_diffusers import SPICPipeline
    from spic_diffusers.training.distill import student_pipeline

    teacher = SPICPipeline.from_pretrained(assets / "pipe")
    student = tmp_path / "student"
    student_pipeline(teacher.unet, teacher.scheduler.config, [192, 91], "forward").save_pretrained(student)
    out = tmp_path / "saved"
    args = _args(assets, out, "--scheduler", "saved", "--map_only", "--no_lpips", "--sweep_qualities", "40")
    args[args.index("--model") + 1] = str(student)
    results = evaluation.main(args)
    spic = [r for r in results["rows"] if r["method"] == evaluation.SPIC]
    assert {r["setting"].split(", ")[-1] for r in spic} == {"saved schedule"}
    assert all(r["denoising_steps"] == 2 and r["seconds"] > 0 for r in spic)
    records = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    assert all(r["timesteps"] == [192, 91] for r in records if r["kind"] == "spic")
    map_only = [r for r in results["rows"] if r["method"] == evaluation.MAP_ONLY]
    coarse = {r["rate"]["coarse_quality"]: r for r in results["rows"] if r["method"] == evaluation.COARSE_BASELINE}
    assert len(map_only) == 2 and map_only[0]["bpp"] == map_only[1]["bpp"]  # one decode per image, at every rate
    for row in map_only:
        quality = row["rate"]["coarse_quality"]
        spic_row = next(r for r in spic if r["rate"]["coarse_quality"] == quality)
        assert row["bpp"] == pytest.approx(spic_row["bpp_map"] + spic_row["bpp_header"])
        assert row["psnr"] != coarse[quality]["psnr"] and row["seconds"] > 0 and _scored(row)
    # the map-only image really ignores the coarse image: decoding from flat grey, not the stream's coarse image
    rate = next(r for r in records if r["kind"] == "rate")
    flat = np.asarray(Image.open(out / rate["methods"][evaluation.MAP_ONLY]["image"]))
    with_coarse = np.asarray(Image.open(out / next(r for r in records if r["kind"] == "spic")["image"]))
    assert not np.array_equal(flat, with_coarse)
    assert all(r["seconds"] is not None for r in results["rows"] if r["method"] not in (evaluation.ORIGINAL,))
    assert "| Decode [s] |" in (out / "results.md").read_text()


def test_transmitting_the_segmenters_map(assets, tmp_path):
    from spic_diffusers import codec

    out = tmp_path / "segmenter_map"
    results = evaluation.main(_args(assets, out, "--transmit_map", "segmenter", "--no_baselines", "--no_lpips",
                                    "--grid_images", "1"))
    original = next(r for r in results["rows"] if r["method"] == evaluation.ORIGINAL)
    assert original["miou"] == pytest.approx(1.0)  # its own prediction is what was transmitted
    assert original["miou_gt"] < 1.0  # a random segmenter against the dataset's map
    spic = next(r for r in results["rows"] if r["method"] == evaluation.SPIC)
    assert _scored(spic) and spic["miou"] != pytest.approx(spic["miou_gt"])
    # the stream codes the segmenter's map of the original, not the dataset's map
    segmenter = evaluation.load_segmenter(str(assets / "segmenter"))
    dataset = evaluation.load_eval_dataset(str(assets / "data"), "validation")
    first = json.loads((out / "per_image.jsonl").read_text().splitlines()[0])
    index = list(dataset["id"]).index(first["id"])
    _, image, truth = evaluation.example_arrays(dataset[index], index)
    predicted = segmenter(image)
    assert not np.array_equal(predicted, truth)
    stream = codec.encode(image, predicted, coarse_codec="jpeg", coarse_quality=20)
    assert first["bpp"] == pytest.approx(metrics.bpp_from_bytes(stream, HEIGHT, WIDTH))
    assert np.array_equal(codec.decode_parts(stream).semantic_map, predicted)


def test_a_segmenter_of_some_classes_is_measured_on_those(assets, tmp_path):
    from conftest import save_tiny_segformer

    from spic_diffusers.data.camvid import CAMVID_TRAIN_IDS
    from spic_diffusers.labels import ID2LABEL

    save_tiny_segformer(tmp_path / "seg11", HEIGHT, WIDTH, {i: ID2LABEL[t] for i, t in enumerate(CAMVID_TRAIN_IDS)})
    assert evaluation.load_segmenter(str(tmp_path / "seg11")).known_classes == list(CAMVID_TRAIN_IDS)
    args = _args(assets, tmp_path / "eval11", "--no_baselines", "--no_lpips")
    args[args.index("--segmenter") + 1] = str(tmp_path / "seg11")
    results = evaluation.main(args)
    spic = next(r for r in results["rows"] if r["method"] == evaluation.SPIC)
    unknown = set(range(19)) - set(CAMVID_TRAIN_IDS)
    assert all(spic["iou_per_class"][c] is None for c in unknown)  # no union: not in the mean
    known = [v for v in spic["iou_per_class"] if v is not None]
    assert known and spic["miou"] == pytest.approx(np.mean(known))
    record = json.loads((tmp_path / "eval11" / "per_image.jsonl").read_text().splitlines()[0])
    matrix = np.asarray(record["confusion"]["matrix"])
    assert matrix[sorted(unknown)].sum() == 0  # target pixels of classes it cannot predict are ignored


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _untimed(value):
    """A record without its wall-clock timings (the one thing two runs need not share)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _records(out: Path) -> dict[str, dict]:
    return {p.relative_to(out).as_posix(): _untimed(json.loads(p.read_text()))
            for p in sorted((out / "records").rglob("*.json"))}


def _untimed_table(path: Path) -> list[str]:
    return [line.rsplit("|", 2)[0] if line.startswith("|") else line for line in path.read_text().splitlines()]


def test_two_processes_write_what_one_process_writes(assets, tmp_path):
    """`accelerate launch` with 2 CPU processes: images are shared out, gathered, and reported as by 1 process."""
    import os
    import subprocess

    from spic_diffusers.data.synthetic import make_synthetic_dataset

    data = tmp_path / "data3"
    make_synthetic_dataset(3, HEIGHT, WIDTH, seed=1, splits=("validation",)).save_to_disk(data)
    extra = ["--sweep_qualities", "10", "--no_lpips", "--fid_feature_dim", "64"]
    if _has_torch_fidelity():
        from test_metrics import _random_inception_weights

        _random_inception_weights(tmp_path / "inception.pth")
        extra += ["--inception_weights", str(tmp_path / "inception.pth")]

    def args(out):
        listed = _args(assets, out, *extra)
        listed[listed.index("--dataset") + 1] = str(data)
        return listed

    single = evaluation.main(args(tmp_path / "one"))
    python_bin = Path(sys.executable).parent
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PATH=f"{python_bin}:{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [str(python_bin / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(ROOT / "scripts" / "evaluate_spic.py"), *args(tmp_path / "two")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    # both ranks worked, on disjoint shares (2 + 1 images)
    assert "rank 0 of 2: 2 of 3 images" in result.stdout and "rank 1 of 2: 1 of 3 images" in result.stdout
    assert result.stdout.count("| SPIC |") == 2  # the table is printed once (two SPIC rows)

    one, two = tmp_path / "one", tmp_path / "two"
    assert _records(one) == _records(two) and len(_records(one)) > 3 * 4
    lines = [[_untimed(json.loads(line)) for line in (out / "per_image.jsonl").read_text().splitlines()]
             for out in (one, two)]
    assert lines[0] == lines[1]
    assert _untimed_table(one / "results.md") == _untimed_table(two / "results.md")
    stored = json.loads((two / "results.json").read_text())
    assert _untimed(stored["rows"]) == _untimed(json.loads((one / "results.json").read_text())["rows"])
    assert stored["num_images"] == 3
    if _has_torch_fidelity():  # FID/KID came from features gathered from both ranks
        assert all(r.get("fid") is not None for r in stored["rows"] if r["method"] == evaluation.SPIC)
    assert single["num_images"] == 3
    assert sorted(p.name for p in (two / "plots").iterdir()) == sorted(p.name for p in (one / "plots").iterdir())
    assert (two / "sample_grid.png").is_file()


def test_a_new_map_coder_reuses_the_decodes_and_a_card_edit_keeps_the_records(assets, tmp_path):
    """The map is lossless, so a run under another map coder takes each stored decode (SPIC and map-only) with its
    scores and gives it the new coder's rate; writing a model card into the model folder keeps every record."""
    import shutil

    model = tmp_path / "pipe"
    shutil.copytree(assets / "pipe", model)
    out = tmp_path / "coders"

    def run(map_coder: str) -> dict:
        args = _args(assets, out, "--map_only", "--no_lpips", "--map_coder", map_coder)
        args[args.index("--model") + 1] = str(model)
        return evaluation.main(args)

    first = run("context")
    (model / "README.md").write_text("# a card written after the evaluation\n")
    folders = {p.name for p in (out / "images").iterdir()}
    second = run("mix")
    # no new decode: the only new image folders are the rate records' (the coarse image at the new rate)
    assert {p.name for p in (out / "images").iterdir()} - folders == {
        p.name for p in (out / "images").iterdir() if p.name.startswith("rate-")} - folders
    records = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    spic = [r for r in records if r["kind"] == "spic"]
    assert len(spic) == 2 and all(r["decoded_with_map_coder"] == "context" for r in spic)
    for record in spic:
        assert record["setting"]["rate"]["map_coder"] == "mix" and record["image"].startswith("images/spic-")
        assert record["bpp"] == pytest.approx(metrics.bpp_from_bytes(
            _stream_size(record["setting"]["rate"], assets, record["id"]), HEIGHT, WIDTH))
    for method in (evaluation.SPIC, evaluation.MAP_ONLY):
        old, new = ([r for r in results["rows"] if r["method"] == method] for results in (first, second))
        assert [r["psnr"] for r in new] == [r["psnr"] for r in old]
        assert [r["miou"] for r in new] == [r["miou"] for r in old]
        assert [r["bpp"] for r in new] != [r["bpp"] for r in old]
    map_only = next(r for r in second["rows"] if r["method"] == evaluation.MAP_ONLY)
    spic_row = next(r for r in second["rows"] if r["method"] == evaluation.SPIC)
    assert map_only["bpp"] == pytest.approx(spic_row["bpp_map"] + spic_row["bpp_header"])
