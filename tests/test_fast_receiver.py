"""The fast receiver: the quality-against-time table, packaging a student, and the shipped `--fast` model."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_UNET

from spic_diffusers import SPICPipeline, SPICUNet2DModel, metrics
from spic_diffusers.pipelines.pipeline_spic import default_scheduler
from spic_diffusers.training import distill

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import decode_quality  # noqa: E402


def _package_script():
    spec = importlib.util.spec_from_file_location("package_shipped_models",
                                                  REPO_ROOT / "scripts" / "package_shipped_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny teacher, a 2-step student distilled from it, and frames with a test split."""
    from spic_diffusers.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("fast")
    torch.manual_seed(0)
    teacher = root / "teacher"
    SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), default_scheduler()).save_pretrained(teacher)
    data = root / "frames"
    make_synthetic_dataset({"train": 4, "test": 5}, 32, 64, seed=0, splits={"train": 4, "test": 5}).save_to_disk(
        str(data))
    student = root / "fast-2"
    distill.main(["--teacher", str(teacher), "--dataset_name_or_path", str(data), "--output_dir", str(student),
                  "--cpu", "--cache_teacher", "--coarse_codec", "none", "--num_student_steps", "2",
                  "--train_batch_size", "2", "--max_train_steps", "2", "--lr_warmup_steps", "0",
                  "--max_train_samples", "4", "--no-random_flip"])
    return {"teacher": str(teacher), "data": str(data), "student": str(student)}


@pytest.fixture(scope="module")
def report(chain):
    from spic_diffusers.demo import shipped_segmenter_path

    return decode_quality.run(chain["teacher"], chain["data"], students=[chain["student"]], num_frames=1,
                              student_steps=(2, 1), segmenter_path=str(shipped_segmenter_path()),
                              coarse_codec="jpeg", dtypes=("fp32", "bf16"), slow_dtype_ratio=0.0,
                              log=lambda line: None)


def test_quality_table_runs_every_sampler_and_student_in_one_run(report):
    assert torch.is_grad_enabled(), "the benchmark leaves autograd as it found it"
    rows = {(r["sampler"], r["dtype"]): r for r in report["rows"]}
    assert report["num_frames"] == 1 and report["size"] == [32, 64]
    # A precision slower than `slow_dtype_ratio` x fp32 is left out with its measured ratio (0.0: always).
    assert list(report["skipped_dtypes"]) == ["bf16"] and "the time of fp32" in report["skipped_dtypes"]["bf16"]
    assert len(report["rows"]) == 1 + 1 + len(decode_quality.BASELINES) + 2
    assert {r["dtype"] for r in report["rows"]} == {"fp32"}
    paper = rows[(decode_quality.PAPER[0], "fp32")]
    assert report["rows"][0] is paper and paper["speedup_vs_paper"] == 1.0
    assert paper["unet_evaluations"] == 40, "20 guided steps from t <= 200, two passes each"
    teacher = rows[("DDIM-20 (distillation teacher, forward-noised start)", "fp32")]
    assert teacher["unet_evaluations"] == 40, "the students' teacher, started as they were taught"
    assert rows[("DDIM-5", "fp32")]["unet_evaluations"] == 10
    own = rows[("student-2 (fast-2)", "fp32")]
    assert own["unet_evaluations"] == 2, "the student's own schedule: two single-pass steps"
    assert rows[("student-1 (fast-2, not its own K)", "fp32")]["unet_evaluations"] == 1
    for row in report["rows"]:
        assert all(np.isfinite(row[k]) for k in ("psnr", "boundary_psnr", "region_colour_error", "miou"))
        assert row["seconds_per_image"] > 0 and np.isclose(row["psnr_vs_paper"], row["psnr"] - paper["psnr"])
    table = decode_quality.markdown(report)
    assert table.count("\n| ") == len(report["rows"]) + 1 and "mIoU" in table and "| 1.0x |" in table
    assert "bf16: " in table, "the table says why a precision is missing"


def test_frames_are_spread_over_the_split(chain):
    import datasets

    ids = [f["id"] for f in decode_quality.load_frames(chain["data"], "test", 2, (32, 64))]
    test_ids = datasets.load_from_disk(chain["data"])["test"]["id"]
    assert ids == [str(test_ids[0]), str(test_ids[4])], "the first and the last of 5 rows, not the first two"
    with pytest.raises(SystemExit, match="no 'validation' split"):
        decode_quality.load_frames(chain["data"], "validation", 2, (32, 64))


def test_packaging_a_student_writes_a_loadable_fast_folder_with_its_card(chain, report, tmp_path, capsys):
    from safetensors.torch import load_file

    table = tmp_path / "table.json"
    table.write_text(json.dumps(report))
    script = _package_script()
    assets = tmp_path / "assets"
    target = assets / script.FAST_NAME
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("mine")
    args = ["--fast_run", chain["student"], "--fast_table", str(table), "--assets_dir", str(assets)]
    assert script.main(args) == 1, "an existing folder is replaced only with --overwrite"
    assert "--overwrite" in capsys.readouterr().err and (target / "keep.txt").read_text() == "mine"
    assert script.main([*args, "--overwrite"]) == 0
    assert not (target / "keep.txt").exists()
    card = (target / "README.md").read_text()
    assert "2 single-pass step(s)" in card and "faster than the paper sampler" in card
    assert "\nlicense: cc-by-nc-4.0\n" in card, "weights trained on CamVid carry CamVid's licence"
    assert "guidance_scale=1.5" not in card.split("image = decode(", 1)[1].split("```")[0]
    pipe = SPICPipeline.from_pretrained(target)
    weights = load_file(target / "unet" / "diffusion_pytorch_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float16}, "shipped in half precision"
    assert pipe.config.default_guidance_scale == 1.0
    assert pipe.config.default_timesteps == SPICPipeline.from_pretrained(chain["student"]).config.default_timesteps

    # Shipped with fewer steps than it was trained for: the default schedule and the card's rows follow.
    assert script.main([*args, "--overwrite", "--fast_steps", "1"]) == 0
    pipe = SPICPipeline.from_pretrained(target)
    assert pipe.config.default_timesteps == SPICPipeline.from_pretrained(chain["student"]).config.default_timesteps[:1]
    card = (target / "README.md").read_text()
    assert "shipped with 1 step(s)" in card and "distilled into 2 single-pass step(s) and shipped running 1" in card
    with pytest.raises(SystemExit, match="no row of the student .fast-2. at 3 step"):
        script.main([*args, "--overwrite", "--fast_steps", "3"])

    table.write_text(json.dumps({**report, "rows": report["rows"][:3]}))  # a table without the student
    with pytest.raises(SystemExit, match="no row of the student"):
        script.main([*args, "--overwrite"])
    assert SPICPipeline.from_pretrained(target).config.default_timesteps, "the shipped folder is left as it was"


# ------------------------------------------------------------------------------------------ the shipped model


# Measured on demo frame 1: the shipped student 36.7 dB from its teacher's output, the coarse image 26.5 dB.
MARGIN_DB = 5.0


@pytest.fixture(scope="module")
def fast():
    from spic_diffusers.demo import shipped_model_path

    pipe = SPICPipeline.from_pretrained(shipped_model_path("fast"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_shipped_fast_model_runs_its_few_single_pass_steps_and_lands_near_its_teacher(fast):
    """From the same start noise, the student's few single-pass steps land near the guided 20-step DDIM teacher's
    output: much nearer than the coarse image it started from."""
    from diffusers import DDIMScheduler
    from PIL import Image

    from spic_diffusers import metrics
    from spic_diffusers.codec import make_coarse
    from spic_diffusers.demo import demo_frame, shipped_model_path

    steps = fast.config.default_timesteps
    assert 1 <= len(steps) <= 4 and steps[0] <= 200 and fast.config.default_guidance_scale == 1.0
    assert fast.config.default_start_noise == "forward"
    teacher = SPICPipeline.from_pretrained(shipped_model_path())
    def architecture(unet):
        return {k: v for k, v in unet.config.items() if not k.startswith("_")}

    assert architecture(fast.unet) == architecture(teacher.unet), "the student keeps the teacher's architecture"
    teacher.scheduler = DDIMScheduler.from_config(teacher.scheduler.config)
    teacher.set_progress_bar_config(disable=True)
    image, labels, _ = demo_frame(1)
    image, labels = image[96:224, 144:336], labels[96:224, 144:336]  # 128x192: the teacher makes 40 passes
    coarse = make_coarse(image, 4, "jpeg", 40)
    calls = []
    handle = fast.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    out = fast(labels, coarse, output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    handle.remove()
    assert calls == [1] * len(steps), "one single-pass UNet evaluation per step"
    target = teacher(labels, coarse, output_type="np", num_inference_steps=100, guidance_scale=1.5,
                     start_noise="forward", generator=torch.Generator().manual_seed(0)).images[0]
    recon, target = (np.round(x * 255).astype(np.uint8) for x in (out, target))
    upsampled = np.asarray(Image.fromarray(coarse).resize(image.shape[1::-1], Image.BILINEAR))
    assert recon.shape == image.shape
    near, coarse_only = metrics.psnr(target, recon), metrics.psnr(target, upsampled)
    assert near > coarse_only + MARGIN_DB


def test_fast_flag_decodes_and_demos_with_the_shipped_student(tmp_path, capsys):
    from PIL import Image

    from spic_diffusers.cli import main
    from spic_diffusers.demo import demo_frame

    image, labels, _ = demo_frame(0)
    Image.fromarray(image).save(tmp_path / "frame.png")
    Image.fromarray(labels).save(tmp_path / "map.png")
    stream = tmp_path / "frame.spic"
    assert main(["encode", str(tmp_path / "frame.png"), "--segmentation", str(tmp_path / "map.png"),
                 "--coarse_codec", "jpeg", "-o", str(stream)]) == 0
    assert main(["decode", str(stream), "--fast", "-o", str(tmp_path / "out.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == image.shape
    capsys.readouterr()
    for flags in (["--fast"], []):  # the student is the demo's default decoder; --fast says so explicitly
        assert main(["demo", *flags, "--output_dir", str(tmp_path / "demo"), "--no_segmenter", "--overwrite",
                     "--size", "96,128"]) == 0
        out = capsys.readouterr().out
        assert "decoding with SPICDDIMScheduler: timesteps [" in out and "guidance 1.0" in out, "the student's schedule"
        assert "UNet evaluations at" not in out  # a short decode is not announced


def test_the_paper_sampler_demo_says_how_long_it_will_take_before_it_starts(tmp_path, capsys):
    from spic_diffusers.cli import main

    assert main(["demo", "--paper_sampler", "--output_dir", str(tmp_path / "demo"), "--no_segmenter",
                 "--size", "48,64"]) == 0
    out = capsys.readouterr().out
    announced = out.index("40 UNet evaluations at 48x64: about ")
    assert announced < out.index("PSNR [dB]") and "guidance 1.5" in out  # said before the decode's figures
    sampler = json.loads((tmp_path / "demo" / "metrics.json").read_text())["sampler"]
    assert sampler["expected_seconds"] > 0 and sampler["scheduler"] == "DDPMScheduler"
    assert main(["demo", "--paper_sampler", "--fast", "--output_dir", str(tmp_path / "x")]) == 1
    assert "--paper_sampler decodes with the shipped receiver" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["fast", "default"])
def test_the_shipped_models_decode_cityscapes_shaped_streams(name):
    """A 256x512 stream (Cityscapes' shape, 2:1) decodes with the 360x480 CamVid models without retraining: the
    reconstruction has the stream's size and keeps the coarse image's content: boundary PSNR within 1 dB of the
    upsampled coarse image's for the student, within 2 dB for the receiver's paper-style sampler, which starts from
    the clean coarse image and drifts in colour (as it does at 360x480: the operating-point table)."""
    from spic_diffusers import SPICPipeline
    from spic_diffusers.codec import decode, decode_parts, encode
    from spic_diffusers.data import resize_image, resize_map
    from spic_diffusers.demo import demo_frame, shipped_model_path
    from spic_diffusers.image_processing import upsample_bicubic

    image, labels, _ = demo_frame(0)
    band = slice(60, 300)  # the 2:1 band of the 360x480 frame, scaled to 256x512
    image, labels = resize_image(image[band], (256, 512)), resize_map(labels[band], (256, 512))
    stream = encode(image, labels, coarse_codec="hevc", coarse_quality=35, downsample=4)
    pipe = SPICPipeline.from_pretrained(shipped_model_path(name))
    pipe.set_progress_bar_config(disable=True)
    kwargs = {} if name == "fast" else {"num_inference_steps": 50}  # the receiver: a shorter paper-style schedule
    recon = np.asarray(decode(stream, pipe, generator=torch.Generator().manual_seed(0), **kwargs).convert("RGB"))
    assert recon.shape == (256, 512, 3)
    coarse = upsample_bicubic(np.asarray(decode_parts(stream).coarse_image), 256, 512)
    edges = metrics.boundary_mask(labels)
    margin = 1.0 if name == "fast" else 2.0
    assert metrics.masked_psnr(image, recon, edges) > metrics.masked_psnr(image, coarse, edges) - margin
    assert metrics.psnr(image, recon) > 20


def test_python_callers_of_the_demo_and_held_out_evaluation_get_the_students_saved_schedule(fast, tmp_path):
    """run_demo / evaluate_held_out called from Python without sampling settings run what the model saved."""
    from spic_diffusers.demo import evaluate_held_out, run_demo

    calls = []
    handle = fast.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    result = run_demo(tmp_path / "demo", pipeline=fast, log=lambda _: None)
    assert calls == [1] * len(fast.config.default_timesteps), "the student's single-pass steps, no guidance"
    sampler = json.loads((tmp_path / "demo" / "metrics.json").read_text())["sampler"]
    assert sampler["timesteps"] == list(fast.config.default_timesteps) and sampler["guidance_scale"] == 1.0
    assert result.bytes["total"] > 0
    calls.clear()
    evaluate_held_out(fast, num_scenes=1)
    handle.remove()
    assert calls == [1] * len(fast.config.default_timesteps)
