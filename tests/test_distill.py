"""Guidance + few-step distillation at tiny size, and the reduced-precision / guidance options of the pipeline."""

import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.pipelines.pipeline_spic import default_scheduler
from spic_diffusers.training import distill

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_UNET  # noqa: E402

TEACHER_SPACING = ["--teacher_num_inference_steps", "20", "--max_timestep", "200"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "pipe"
    SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), default_scheduler()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> str:
    from spic_diffusers.data import make_synthetic_dataset

    path = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic_dataset(4, 32, 64, seed=0, splits={"train": 4}).save_to_disk(str(path))
    return str(path)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 19, (1, 32, 64), generator=g), torch.rand(1, 3, 8, 16, generator=g) * 2 - 1


def _count_calls(unet):
    calls = []
    handle = unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls, handle


def _distill(teacher, data, out, *extra):
    return distill.main(["--teacher", teacher, "--dataset_name_or_path", data, "--output_dir", str(out), "--cpu",
                         "--cache_teacher", "--random_crop", "16,32",
                         "--coarse_codec", "none", "--num_student_steps", "2", "--train_batch_size", "2",
                         "--checkpointing_steps", "1", "--checkpoints_total_limit", "5", "--lr_warmup_steps", "0",
                         "--learning_rate", "1e-4", *TEACHER_SPACING, *extra])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return SPICUNet2DModel.from_pretrained(folder, subfolder="unet").state_dict()


def test_distillation_runs_resumes_exactly_and_saves_a_plain_few_step_student(teacher_dir, dataset_dir, tmp_path):
    whole = _distill(teacher_dir, dataset_dir, tmp_path / "whole", "--max_train_steps", "2")
    teacher_ts = whole["teacher_timesteps"]
    assert len(teacher_ts) == 4 and teacher_ts[0] <= 200, "the 20-step spacing below t = 200"
    assert whole["global_step"] == 2 and whole["student_timesteps"] == teacher_ts[::2]
    _distill(teacher_dir, dataset_dir, tmp_path / "split", "--max_train_steps", "1")
    resumed = _distill(teacher_dir, dataset_dir, tmp_path / "split", "--max_train_steps", "2",
                       "--resume_from_checkpoint", "latest")
    assert resumed["global_step"] == 2 and resumed["samples_seen"] == 4
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    teacher = _weights(Path(teacher_dir))
    assert any(not torch.equal(a[k], teacher[k]) for k in a), "the student did not train"

    student = DiffusionPipeline.from_pretrained(tmp_path / "whole")  # diffusers' own loader builds the student
    assert type(student) is SPICPipeline and isinstance(student.scheduler, DDIMScheduler)
    assert student.config.default_timesteps == teacher_ts[::2] and student.config.default_guidance_scale == 1.0
    student.set_progress_bar_config(disable=True)
    calls, handle = _count_calls(student.unet)
    labels, coarse = _inputs()
    image = student(labels, coarse, output_type="pt").images
    handle.remove()
    assert calls == [1, 1], "two single-pass steps"
    assert image.shape == (1, 3, 32, 64) and torch.isfinite(image).all()
    # Distilled from the forward-noised start (the default), the student keeps it: seeded, like the paper sampler.
    assert student.config.default_start_noise == "forward"
    seeded = [student(labels, coarse, output_type="pt", generator=torch.Generator().manual_seed(s)).images
              for s in (0, 0, 1)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])
    explicit = student(labels, coarse, output_type="pt", generator=torch.Generator().manual_seed(0),
                       start_noise="forward").images
    assert torch.equal(seeded[0], explicit)


def test_teacher_states_follow_the_pipelines_forward_noised_guided_ddim(tiny_unet):
    """The trajectory the student learns is the one `SPICPipeline` samples with DDIM, guidance 1.5 and
    `start_noise="forward"` on the same noise."""
    pipe = SPICPipeline(tiny_unet, DDIMScheduler.from_config(default_scheduler().config))
    pipe.set_progress_bar_config(disable=True)
    ts = distill.teacher_timesteps(pipe, 20, 200)
    labels, coarse = _inputs()
    segmap = pipe.prepare_segmentation_map(labels)
    noise = torch.randn((1, 3, 32, 64), generator=torch.Generator().manual_seed(5))
    states = distill.teacher_states(pipe, segmap, coarse, ts, ts[:1], guidance_scale=1.5, noise=noise)
    start = torch.nn.functional.interpolate(coarse, size=(32, 64), mode="bilinear", align_corners=False)
    assert not torch.allclose(states[0], start, atol=1e-2), "the start is noised"
    image = pipe(labels, coarse, output_type="pt", timesteps=ts, guidance_scale=1.5, start_noise="forward",
                 generator=torch.Generator().manual_seed(5)).images
    assert torch.allclose(image, (states[-1] / 2 + 0.5).clamp(0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="default_start_noise"):
        SPICPipeline(tiny_unet, default_scheduler(), default_start_noise="sometimes")


def test_foreign_output_folder_is_refused(teacher_dir, dataset_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(distill.TrainingInputError, match="not a previous run"):
        _distill(teacher_dir, dataset_dir, out, "--max_train_steps", "1")
    assert (out / "notes.txt").read_text() == "keep"


def test_x0_target_is_exact_when_the_student_is_the_teacher():
    """Unguided teacher, student = teacher at the teacher's own steps: the loss must vanish."""
    torch.manual_seed(0)
    scheduler = DDIMScheduler.from_config(default_scheduler().config, clip_sample=False)
    pipe = SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), scheduler)
    ts = distill.teacher_timesteps(pipe, 50, 200)
    labels, coarse = _inputs()
    segmap = pipe.prepare_segmentation_map(labels)
    states = distill.teacher_states(pipe, segmap, coarse, ts, ts, guidance_scale=1.0)
    with torch.no_grad():
        exact = distill.distillation_loss(pipe.unet, pipe.scheduler, states, ts, segmap, coarse)
        short = distill.student_timesteps(ts, 2)
        coarse_states = distill.teacher_states(pipe, segmap, coarse, ts, short, guidance_scale=1.0)
        off = distill.distillation_loss(pipe.unet, pipe.scheduler, coarse_states, short, segmap, coarse)
    assert exact.item() < 1e-8
    assert off.item() > 1e-4


def test_student_schedule_is_validated():
    assert distill.student_timesteps(list(range(190, -1, -10)), 4) == [190, 140, 90, 40]
    assert distill.student_timesteps([192, 92], 1) == [192]
    with pytest.raises(distill.TrainingInputError, match="1..2"):
        distill.student_timesteps([192, 92], 3)


def test_paper_pipeline_is_unchanged_by_the_new_defaults(tiny_unet):
    pipe = SPICPipeline(tiny_unet, default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.default_timesteps is None and pipe.config.default_guidance_scale is None
    assert pipe.config.default_start_noise is None, "the paper starts from the coarse image as is"
    calls, handle = _count_calls(pipe.unet)
    labels, coarse = _inputs()
    pipe(labels, coarse, output_type="pt", num_inference_steps=20)
    handle.remove()
    assert calls == [1, 1] * 4, "guided (two passes), 4 steps of the 20-step spacing below t = 200, sequential on CPU"


def test_sequential_and_batched_guidance_agree(tiny_unet):
    pipe = SPICPipeline(tiny_unet, default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    assert pipe.resolve_guidance_batching("auto") == "sequential"
    labels, coarse = _inputs()
    out = {}
    for mode in ("batched", "sequential"):
        calls, handle = _count_calls(pipe.unet)
        out[mode] = pipe(labels, coarse, output_type="pt", num_inference_steps=20, guidance_batching=mode,
                         generator=torch.Generator().manual_seed(0)).images
        handle.remove()
        assert calls == ([2] * 4 if mode == "batched" else [1, 1] * 4)
    # One batch of two and two batches of one round differently only in the last float bits.
    torch.testing.assert_close(out["batched"], out["sequential"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="guidance_batching"):
        pipe(labels, coarse, guidance_batching="parallel")


def test_bf16_unet_with_fp32_latents_is_close_to_fp32(tiny_unet, tmp_path):
    pipe = SPICPipeline(tiny_unet, default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    labels, coarse = _inputs()
    kwargs = dict(output_type="pt", num_inference_steps=20)
    reference = pipe(labels, coarse, generator=torch.Generator().manual_seed(0), **kwargs).images
    autocast = pipe(labels, coarse, unet_dtype="bf16", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert 0 < (autocast - reference).abs().max() < 0.05
    pipe.save_pretrained(tmp_path / "p")
    loaded = SPICPipeline.from_pretrained(tmp_path / "p", dtype=torch.bfloat16)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.unet.dtype == torch.bfloat16
    seen = []
    cast = loaded(labels, coarse, generator=torch.Generator().manual_seed(0),
                  callback_on_step_end=lambda p, i, t, kw: seen.append(kw["sample"].dtype) or {}, **kwargs).images
    assert set(seen) == {torch.float32}, "latents stay fp32"
    assert (cast - reference).abs().max() < 0.05
    channels_last = pipe(labels, coarse, channels_last=True, generator=torch.Generator().manual_seed(0),
                         **kwargs).images
    torch.testing.assert_close(channels_last, reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unet_dtype"):
        pipe(labels, coarse, unet_dtype="int8")


def _stream(tmp_path) -> Path:
    from PIL import Image

    from spic_diffusers.cli import main

    labels, _ = _inputs()
    rng = torch.Generator().manual_seed(1)
    image = (torch.rand(32, 64, 3, generator=rng) * 255).to(torch.uint8).numpy()
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(labels[0].numpy().astype("uint8")).save(tmp_path / "map.png")
    stream = tmp_path / "x.spic"
    assert main(["encode", str(tmp_path / "image.png"), "--segmentation", str(tmp_path / "map.png"),
                 "--coarse_codec", "jpeg", "-o", str(stream)]) == 0
    return stream


def test_fast_flag_errors_clearly_when_the_shipped_fast_model_is_missing(tmp_path, monkeypatch, capsys):
    from spic_diffusers import demo
    from spic_diffusers.cli import main

    stream = _stream(tmp_path)
    monkeypatch.setitem(demo.SHIPPED_MODELS, "fast", "no-such-model")  # as on an install without the weights
    capsys.readouterr()
    out = ["-o", str(tmp_path / "o.png")]
    assert main(["decode", str(stream), "--fast", *out]) == 1
    err = capsys.readouterr().err
    assert "fast" in err and "missing" in err and len(err.strip().splitlines()) == 1
    assert main(["demo", "--fast", "--output_dir", str(tmp_path / "demo"), "--no_segmenter"]) == 1
    assert "fast (distilled) model is missing" in capsys.readouterr().err
    assert main(["decode", str(stream), "--fast", "--model", "x", *out]) == 1
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_student_init_must_be_a_pipeline_of_the_same_architecture(teacher_dir, dataset_dir, tmp_path):
    with pytest.raises(distill.TrainingInputError, match="--student_init"):
        _distill(teacher_dir, dataset_dir, tmp_path / "out", "--max_train_steps", "1", "--student_init",
                 str(tmp_path / "nowhere"))


def test_teacher_cache_file_is_shared_between_students_and_refused_for_another_teacher(teacher_dir, dataset_dir,
                                                                                       tmp_path):
    cache = tmp_path / "teacher.safetensors"
    _distill(teacher_dir, dataset_dir, tmp_path / "memory", "--max_train_steps", "2")
    first = _distill(teacher_dir, dataset_dir, tmp_path / "first", "--max_train_steps", "2",
                     "--teacher_cache", str(cache))
    assert cache.exists() and first["teacher_examples_computed"] == 4
    a, b = _weights(tmp_path / "memory"), _weights(tmp_path / "first")
    assert all(torch.equal(a[k], b[k]) for k in a), "the file keeps the same trajectories as the memory cache"
    # Another step count reads every state it needs from the file: the teacher does not run again.
    other = _distill(teacher_dir, dataset_dir, tmp_path / "one-step", "--max_train_steps", "2",
                     "--teacher_cache", str(cache), "--num_student_steps", "1")
    assert other["teacher_examples_computed"] == 0 and other["student_timesteps"] == first["teacher_timesteps"][:1]
    before = cache.read_bytes()
    with pytest.raises(distill.TrainingInputError, match="guidance_scale=1.5 there, 2.0 here"):
        _distill(teacher_dir, dataset_dir, tmp_path / "guided", "--max_train_steps", "1",
                 "--teacher_cache", str(cache), "--guidance_scale", "2.0")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a cache")
    with pytest.raises(distill.TrainingInputError, match="cannot be read"):
        _distill(teacher_dir, dataset_dir, tmp_path / "bad", "--max_train_steps", "1", "--teacher_cache", str(bad))
    assert cache.read_bytes() == before and bad.read_bytes() == b"not a cache"
    # The right settings over states of the wrong shape: refused by name, not by a stack error mid-training.
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(cache), framework="pt") as f:
        metadata, name = f.metadata(), next(iter(f.keys()))
        states = f.get_tensor(name)
    damaged = tmp_path / "damaged.safetensors"
    save_file({name: states[:2].contiguous()}, str(damaged), metadata=metadata)
    with pytest.raises(distill.TrainingInputError, match=f"entry '{name}' has shape"):
        _distill(teacher_dir, dataset_dir, tmp_path / "damaged", "--max_train_steps", "1",
                 "--teacher_cache", str(damaged))


def test_native_bf16_is_false_where_bf16_is_emulated():
    from spic_diffusers.pipelines.pipeline_spic import native_bf16

    assert native_bf16("meta") is False
    assert native_bf16("cuda") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert isinstance(native_bf16(), bool)


def test_a_teacher_cache_larger_than_memory_is_refused_before_the_teacher_runs():
    distill.check_cache_memory(4, 21, 3, (32, 64), available_bytes=4 * 21 * 3 * 32 * 64 * 4)
    with pytest.raises(distill.TrainingInputError, match=r"2975 example\(s\) x 21 states of 3x256x512 float32 = "
                                                         r"91\.5 GiB but 16\.0 GiB is available; lower --max_train"):
        distill.check_cache_memory(2975, 21, 3, (256, 512), available_bytes=16 * 2**30)


def _cache_entry(teacher_dir, dataset_dir, tmp_path):
    """A real teacher cache file, and its metadata, first entry name and states."""
    from safetensors import safe_open

    cache = tmp_path / "teacher.safetensors"
    _distill(teacher_dir, dataset_dir, tmp_path / "first", "--max_train_steps", "1", "--teacher_cache", str(cache))
    with safe_open(str(cache), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
        metadata = f.metadata()
    return tensors, metadata


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda states: states * 1e30, "values up to"),
        (lambda states: states.index_fill(0, torch.tensor([0]), float("nan")), "NaN or infinite"),
        (lambda states: torch.cat([states, states[:, :1]], dim=1), "4 channels, the teacher makes 3"),
        (lambda states: states.to(torch.float64), "float64"),
        (lambda states: states.round().to(torch.int32), "int32"),
    ],
)
def test_damaged_teacher_caches_are_refused_by_entry(teacher_dir, dataset_dir, tmp_path, damage, message):
    """Huge finite values trained to NaN and saved a student of NaN weights; now refused before training."""
    from safetensors.torch import save_file

    tensors, metadata = _cache_entry(teacher_dir, dataset_dir, tmp_path)
    name = sorted(tensors)[0]
    tensors[name] = damage(tensors[name]).contiguous()
    damaged = tmp_path / "damaged.safetensors"
    save_file(tensors, str(damaged), metadata=metadata)
    with pytest.raises(distill.TrainingInputError, match=message):
        _distill(teacher_dir, dataset_dir, tmp_path / "damaged", "--max_train_steps", "1",
                 "--teacher_cache", str(damaged))
    assert not (tmp_path / "damaged" / "model_index.json").exists()


def test_non_finite_distillation_loss_stops_without_saving_a_student(teacher_dir, dataset_dir, tmp_path):
    from spic_diffusers.training.loop import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="step 2"):
        _distill(teacher_dir, dataset_dir, tmp_path / "run", "--max_train_steps", "4", "--learning_rate", "1e30")
    assert not (tmp_path / "run" / "model_index.json").exists(), "a diverged run must not save a student"


def test_teacher_crops_and_a_quality_spread_are_fixed_per_frame(teacher_dir, dataset_dir, tmp_path):
    """Native-resolution distillation: the teacher sees one crop of each frame, coded at one of several qualities,
    the same every epoch (so the cache file's trajectories stay those of that crop and coarse image)."""
    import datasets

    from spic_diffusers.data.transforms import SPICTransform, collate_examples
    from spic_diffusers.training.dataset import ExampleProcessor

    rows = datasets.load_from_disk(dataset_dir)["train"]
    processor = ExampleProcessor(SPICTransform((32, 64)), coarse_from_column=False, coarse_codec="jpeg",
                                 coarse_qualities=[5, 90])
    batch = collate_examples([processor(rows[i]) for i in range(4)])
    first = distill.per_frame_choices(batch, 0, (16, 32), 4)
    again = distill.per_frame_choices(batch, 0, (16, 32), 4)
    assert first["segmentation_map"].shape[-2:] == (16, 32) and first["low_res_image"].shape[-2:] == (4, 8)
    assert "low_res_variants" not in first
    for key in ("segmentation_map", "low_res_image", "pixel_values"):
        assert torch.equal(first[key], again[key])
    # Each frame's coarse crop is the crop of one of its coded images, at the map crop's place on the coarse grid.
    for i in range(4):
        found = False
        for q in range(2):
            full = batch["low_res_variants"][i, q]
            for top in range(0, 5):
                for left in range(0, 9):
                    if torch.equal(full[:, top:top + 4, left:left + 8], first["low_res_image"][i]):
                        maps = batch["segmentation_map"][i, :, top * 4:top * 4 + 16, left * 4:left * 4 + 32]
                        found = found or torch.equal(maps, first["segmentation_map"][i])
        assert found, i
    other_seed = distill.per_frame_choices(batch, 1, (16, 32), 4)
    assert not all(torch.equal(first["low_res_image"][i], other_seed["low_res_image"][i]) for i in range(4))

    cache = tmp_path / "teacher.safetensors"
    options = ("--coarse_codec", "jpeg", "--coarse_qualities", "5,90", "--teacher_crop", "16,32", "--random_crop",
               "8,16", "--channels_last", "--teacher_cache", str(cache))
    run = _distill(teacher_dir, dataset_dir, tmp_path / "native", "--max_train_steps", "2", *options)
    assert run["teacher_examples_computed"] == 4
    from safetensors import safe_open

    with safe_open(str(cache), framework="pt") as f:
        assert all(list(f.get_tensor(name).shape[-2:]) == [16, 32] for name in f.keys())
    student = SPICPipeline.from_pretrained(tmp_path / "native")
    assert student.config.default_unet_dtype == "bf16"
    assert _distill(teacher_dir, dataset_dir, tmp_path / "native-again", "--max_train_steps", "1",
                    *options)["teacher_examples_computed"] == 0
    with pytest.raises(distill.TrainingInputError, match="larger than --teacher_crop"):
        _distill(teacher_dir, dataset_dir, tmp_path / "bad", "--teacher_crop", "16,32", "--random_crop", "16,64")
    with pytest.raises(distill.TrainingInputError, match="larger than the frames"):
        _distill(teacher_dir, dataset_dir, tmp_path / "bad2", "--teacher_crop", "64,64", "--random_crop", "8,16")
