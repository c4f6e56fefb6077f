"""The training script end to end on CPU: two real ranks, exact resume, learning, and early input errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

from spic_diffusers.training import TrainingInputError, main, parse_args
from spic_diffusers.training.loop import check_output_dir, list_checkpoints
from spic_diffusers.training.trainer import build_unet

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "train_spic.py"
TINY = REPO / "training" / "configs" / "tiny.json"
PYTHON_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def one_thread():
    # Two cores shared by everyone: one thread per process is several times faster than two here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> str:
    from spic_diffusers.data import make_synthetic_dataset

    path = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic_dataset(6, 32, 64, seed=0, splits={"train": 6, "validation": 2}).save_to_disk(str(path))
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(dataset: str, output: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), "--dataset_name_or_path", dataset, "--output_dir", str(output),
            "--report_to", "none", "--validation_steps", "0", "--cpu", *extra]


def test_two_process_cpu_run_writes_a_loadable_pipeline(dataset_dir, tmp_path):
    from spic_diffusers import SPICPipeline

    out = tmp_path / "run"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PATH=f"{PYTHON_BIN}:{os.environ['PATH']}")
    cmd = [str(PYTHON_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(SCRIPT), "--config", str(TINY), "--dataset_name_or_path", dataset_dir, "--output_dir", str(out),
           "--train_batch_size", "1", "--max_train_steps", "3", "--checkpointing_steps", "2",
           "--validation_steps", "3", "--num_validation_images", "1", "--validation_max_timestep", "20"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 3
    ranks = summary["ranks"]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert all(r["steps_this_run"] == 3 for r in ranks)
    # Each rank read its own share of the data, and gradient sync kept the weights identical.
    assert set(ranks[0]["first_batch_ids"]).isdisjoint(ranks[1]["first_batch_ids"])
    assert ranks[0]["param_abs_sum"] == pytest.approx(ranks[1]["param_abs_sum"], rel=1e-12, abs=0)
    assert summary["samples_seen"] == 3 * 2

    assert [step for step, _ in list_checkpoints(str(out))] == [2, 3]
    assert not list(out.glob("*.tmp"))
    assert (out / "checkpoint-3" / "random_states_1.pkl").is_file()
    grid = Image.open(out / "validation" / "step-0000003.png")
    assert grid.size == (4 * 64, 32)  # map | coarse | sample | truth
    assert list((out / "logs").rglob("events.out.tfevents*"))

    pipe = DiffusionPipeline.from_pretrained(str(out))  # the trainer's folder loads through diffusers' own loader
    assert type(pipe) is SPICPipeline
    labels = np.zeros((32, 64), dtype=np.uint8)
    coarse = np.full((8, 16, 3), 128, dtype=np.uint8)
    image = pipe(labels, coarse, num_inference_steps=10, max_timestep=20, output_type="np").images
    assert image.shape == (1, 32, 64, 3) and np.isfinite(image).all()
    # The saved weights are the EMA weights of the last step, not the last raw weights.
    raw = load_file(str(out / "checkpoint-3" / "model.safetensors"))
    saved = pipe.unet.state_dict()
    assert any(not torch.equal(raw[k], saved[k]) for k in raw if k in saved)
    ema = _ema_state(out / "checkpoint-3")
    assert ema["optimization_step"] == 3
    for shadow, param in zip(ema["shadow_params"], pipe.unet.parameters(), strict=True):
        assert torch.equal(shadow, param.detach())


def test_loss_falls_on_a_fixed_batch():
    from spic_diffusers import SPICUNet2DModel
    from spic_diffusers.data import SPICTransform, collate_examples, make_synthetic_dataset
    from spic_diffusers.training import hybrid_loss, linear_alphas_cumprod, q_sample, training_loss

    torch.manual_seed(0)
    unet = SPICUNet2DModel(sample_size=(32, 64), block_out_channels=(32, 64), layers_per_block=1,
                           attention_downsample_factors=(2,), attention_head_dim=16, spade_hidden_channels=32)
    rows = make_synthetic_dataset(2, 32, 64, seed=3, splits=("train",), coarse="downsample")["train"]
    batch = collate_examples([SPICTransform((32, 64)).transform_example(r) for r in rows])
    table = linear_alphas_cumprod()
    t_eval = torch.tensor([20, 200, 500, 800]).repeat_interleave(2)
    x_eval = batch["pixel_values"].repeat(4, 1, 1, 1)
    noise_eval = torch.randn(x_eval.shape, generator=torch.Generator().manual_seed(1))

    def evaluate() -> float:
        with torch.no_grad():
            x_t = q_sample(x_eval, t_eval, noise_eval, table)
            out = unet(x_t, t_eval, batch["segmentation_map"].repeat(4, 1, 1, 1),
                       batch["low_res_image"].repeat(4, 1, 1, 1)).sample
            return hybrid_loss(out, x_eval, x_t, t_eval, noise_eval, table)["loss"].mean().item()

    before = evaluate()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        training_loss(unet, batch, table, generator)["loss"].mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    after = evaluate()
    assert after < 0.5 * before, (before, after)


def _ema_state(path: Path) -> dict:
    """The EMA a checkpoint stores without pickle: scalars in training_state.json, weights in safetensors."""
    scalars = json.loads((path / "training_state.json").read_text())["ema"]
    weights = load_file(str(path / "ema.safetensors"))
    return {**scalars, "shadow_params": [weights[f"shadow.{i}"] for i in range(len(weights))]}


def _checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in load_file(str(path / "model.safetensors")).items()}
    ema = _ema_state(path)
    state.update({f"ema.{i}": p for i, p in enumerate(ema["shadow_params"])})
    optimizer = torch.load(path / "optimizer.bin", weights_only=False)
    for index, entry in optimizer["state"].items():
        for name, value in entry.items():
            state[f"opt.{index}.{name}"] = torch.as_tensor(value)
    progress = json.loads((path / "training_state.json").read_text())["progress"]
    state["step"] = torch.tensor([progress["global_step"], ema["optimization_step"]])
    return state


def test_resume_continues_exactly(dataset_dir, tmp_path):
    common = ("--checkpointing_steps", "1", "--gradient_accumulation_steps", "2", "--train_batch_size", "1")
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    main(_args(dataset_dir, interrupted, *common, "--max_train_steps", "2", "--checkpoints_total_limit", "2"))
    assert [s for s, _ in list_checkpoints(str(interrupted))] == [1, 2]
    # A run killed while saving leaves only a .tmp folder: never picked as "latest", cleaned up on restart.
    (interrupted / "checkpoint-9.tmp").mkdir()
    (interrupted / "checkpoint-9.tmp" / "model.safetensors").write_bytes(b"partial")
    summary = main(_args(dataset_dir, interrupted, *common, "--max_train_steps", "4", "--checkpoints_total_limit",
                         "2", "--resume_from_checkpoint", "latest"))
    assert summary["global_step"] == 4 and summary["ranks"][0]["steps_this_run"] == 2
    assert [s for s, _ in list_checkpoints(str(interrupted))] == [3, 4]  # the limit is honoured
    assert not (interrupted / "checkpoint-9.tmp").exists()
    main(_args(dataset_dir, straight, *common, "--max_train_steps", "4"))

    resumed, reference = _checkpoint_state(interrupted / "checkpoint-4"), _checkpoint_state(straight / "checkpoint-4")
    assert resumed.keys() == reference.keys()
    assert resumed["step"].tolist() == [4, 4]
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], atol=1e-6, rtol=0, msg=key)
    # Steps 3-4 really trained (the resumed weights moved away from checkpoint 2's).
    first = load_file(str(straight / "checkpoint-1" / "model.safetensors"))
    assert any(not torch.equal(first[k[6:]], v) for k, v in resumed.items() if k.startswith("model."))


def test_init_from_pipeline_folder_loads_its_weights(dataset_dir, tmp_path):
    from spic_diffusers import SPICPipeline, SPICUNet2DModel
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    unet = build_unet(parse_args(_args(dataset_dir, tmp_path / "x")))
    folder = tmp_path / "pretrained"
    SPICPipeline(unet=unet, scheduler=default_scheduler()).save_pretrained(str(folder))
    for path in (folder, folder / "unet"):
        loaded = build_unet(parse_args(_args(dataset_dir, tmp_path / "y", "--init_from", str(path))))
        assert isinstance(loaded, SPICUNet2DModel)
        for (name, a), b in zip(unet.state_dict().items(), loaded.state_dict().values()):
            assert torch.equal(a, b), name
    summary = main(_args(dataset_dir, tmp_path / "tuned", "--init_from", str(folder), "--max_train_steps", "1",
                         "--train_batch_size", "1"))
    assert summary["global_step"] == 1
    with pytest.raises(TrainingInputError, match="neither a pipeline folder"):
        build_unet(parse_args(_args(dataset_dir, tmp_path / "z", "--init_from", str(tmp_path))))


def _save_variant(dataset_dir: str, target: Path, transform) -> str:
    import datasets

    data = datasets.load_from_disk(dataset_dir)
    transform(data).save_to_disk(str(target))
    return str(target)


def test_missing_column_stops_before_training(dataset_dir, tmp_path):
    broken = _save_variant(dataset_dir, tmp_path / "broken", lambda d: d.remove_columns("semantic_map"))
    out = tmp_path / "out"
    with pytest.raises(TrainingInputError, match="semantic_map"):
        main(_args(broken, out, "--max_train_steps", "1"))
    assert not list_checkpoints(str(out))


def test_wrong_label_range_stops_with_a_clear_message(dataset_dir, tmp_path, capsys):
    from spic_diffusers.training import cli

    def corrupt(data):
        def shift(row):
            labels = np.asarray(row["semantic_map"]).copy()
            labels[labels == 0] = 25
            row["semantic_map"] = Image.fromarray(labels, mode="L")
            return row

        return data.map(shift)

    broken = _save_variant(dataset_dir, tmp_path / "labels", corrupt)
    out = tmp_path / "out"
    assert cli(_args(broken, out, "--max_train_steps", "1")) == 2
    message = capsys.readouterr().err
    assert "error:" in message and "25" in message and "0..18" in message
    assert not list_checkpoints(str(out)) and not (out / "model_index.json").exists()


def test_foreign_output_dir_is_refused(dataset_dir, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(TrainingInputError, match="pass --overwrite"):
        main(_args(dataset_dir, foreign, "--max_train_steps", "1"))
    assert (foreign / "notes.txt").read_text() == "keep me" and len(os.listdir(foreign)) == 1
    check_output_dir(str(foreign), overwrite=True, resuming=False, marker="spic_training_args.json")  # told to
    (foreign / "spic_training_args.json").write_text("{}")
    check_output_dir(str(foreign), overwrite=False, resuming=True, marker="spic_training_args.json")  # a previous run
    shutil.rmtree(foreign)


def test_options_config_file_and_errors(tmp_path):
    args = parse_args(["--config", str(TINY), "--dataset_name_or_path", "x", "--learning_rate", "3e-4"])
    assert args.resolution == (32, 64) and args.channel_mult == (1, 2) and args.learning_rate == 3e-4
    paper = parse_args(["--config", str(REPO / "training" / "configs" / "paper.json"), "--dataset_name_or_path", "x"])
    from spic_diffusers.training import unet_config_from_args

    config = unet_config_from_args(paper)
    assert config["block_out_channels"] == (256, 256, 512, 512, 1024, 1024)
    assert config["attention_downsample_factors"] == (8, 16, 32) and config["sample_size"] == (256, 512)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rat": 1}))
    with pytest.raises(TrainingInputError, match="unknown options"):
        parse_args(["--config", str(bad), "--dataset_name_or_path", "x"])
    with pytest.raises(TrainingInputError, match="--streaming needs --max_train_steps"):
        parse_args(["--dataset_name_or_path", "x", "--streaming"])
    with pytest.raises(TrainingInputError, match="cfg_drop_rate"):
        parse_args(["--dataset_name_or_path", "x", "--cfg_drop_rate", "1.5"])


def test_on_the_fly_coarse_uses_the_codec(dataset_dir):
    import datasets

    from spic_diffusers.codec import make_coarse
    from spic_diffusers.data.transforms import SPICTransform, resize_image
    from spic_diffusers.training.dataset import ExampleProcessor

    row = datasets.load_from_disk(dataset_dir)["train"][0]
    processor = ExampleProcessor(SPICTransform((32, 64)), coarse_from_column=False, coarse_codec="jpeg",
                                 coarse_quality=30)
    example = processor(row)
    expected = make_coarse(resize_image(row["image"], (32, 64)), 4, "jpeg", 30)
    got = ((example["low_res_image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    assert got.shape == (8, 16, 3)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(TrainingInputError, match="coarse_codec"):
        ExampleProcessor(SPICTransform((32, 64)), coarse_from_column=False, coarse_codec="flif")


def test_a_spread_of_coarse_qualities_gives_each_sample_one_of_them(dataset_dir):
    import datasets

    from spic_diffusers.codec import make_coarse
    from spic_diffusers.data.transforms import SPICTransform, collate_examples, resize_image
    from spic_diffusers.training.dataset import ExampleProcessor
    from spic_diffusers.training.trainer import augment_batch, step_generator

    rows = datasets.load_from_disk(dataset_dir)["train"]
    processor = ExampleProcessor(SPICTransform((32, 64)), coarse_from_column=False, coarse_codec="jpeg",
                                 coarse_qualities=[5, 90])
    assert processor.coarse_qualities == [5, 90]
    examples = [processor(rows[i]) for i in range(4)]
    for i, example in enumerate(examples):
        variants = example["low_res_variants"]
        assert variants.shape == (2, 3, 8, 16)
        for quality, variant in zip((5, 90), variants):
            expected = make_coarse(resize_image(rows[i]["image"], (32, 64)), 4, "jpeg", quality)
            got = ((variant.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
            np.testing.assert_array_equal(got, expected)
        assert not torch.equal(variants[0], variants[1])
    assert processor(rows[0])["low_res_variants"].equal(examples[0]["low_res_variants"])  # the cached copy

    batch = collate_examples([{k: v for k, v in e.items() if k != "id"} for e in examples])
    picked = set()
    for step in range(8):
        out = augment_batch(batch, step_generator(0, step, 0), random_flip=False, cfg_drop_rate=0.0)
        again = augment_batch(batch, step_generator(0, step, 0), random_flip=False, cfg_drop_rate=0.0)
        assert "low_res_variants" not in out and torch.equal(out["low_res_image"], again["low_res_image"])
        for i in range(4):
            match = [q for q in range(2) if torch.equal(out["low_res_image"][i], batch["low_res_variants"][i, q])]
            assert len(match) == 1
            picked.add(match[0])
    assert picked == {0, 1}  # both qualities are drawn


def test_a_quality_spread_and_channels_last_train_end_to_end(dataset_dir, tmp_path, capsys):
    from spic_diffusers import SPICPipeline

    out = tmp_path / "run"
    summary = main(_args(dataset_dir, out, "--coarse_codec", "jpeg", "--coarse_qualities", "10,60",
                         "--channels_last", "--max_train_steps", "2", "--train_batch_size", "2"))
    assert summary["global_step"] == 2
    pipe = SPICPipeline.from_pretrained(str(out))
    assert all(p.is_contiguous() for p in pipe.unet.parameters())  # saved weights keep the usual layout
    with pytest.raises(SystemExit):
        parse_args(_args(dataset_dir, tmp_path / "bad", "--coarse_qualities", "10,x"))
    assert "comma-separated numbers" in capsys.readouterr().err
    refusals = ((("--coarse_source", "column"), "on the fly"), (("--coarse_codec", "none"), "needs a codec"))
    for extra, message in refusals:
        with pytest.raises(TrainingInputError, match=message):
            main(_args(dataset_dir, tmp_path / "bad", "--coarse_qualities", "10,60", *extra, "--max_train_steps", "1"))


def test_augmentation_flips_together_and_drops_maps():
    from spic_diffusers.training.trainer import augment_batch, step_generator

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (64, 8, 16), generator=g)
    batch = {
        "pixel_values": torch.rand(64, 3, 8, 16, generator=g),
        "segmentation_map": torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float(),
        "low_res_image": torch.rand(64, 3, 2, 4, generator=g),
        "labels": labels,
    }
    out = augment_batch(batch, step_generator(0, 5, 0), random_flip=True, cfg_drop_rate=0.0)
    flipped = (out["pixel_values"] != batch["pixel_values"]).flatten(1).any(1)
    assert 10 < flipped.sum() < 54  # about half
    for key in ("segmentation_map", "low_res_image", "labels"):
        same_as_flip = torch.tensor([torch.equal(out[key][i], batch[key][i].flip(-1)) for i in range(64)])
        assert torch.equal(same_as_flip, flipped), key
    dropped = augment_batch(batch, step_generator(0, 5, 0), random_flip=False, cfg_drop_rate=0.2)
    zero = dropped["segmentation_map"].flatten(1).sum(1) == 0
    assert 3 <= zero.sum() <= 30 and torch.equal(dropped["pixel_values"], batch["pixel_values"])
    assert torch.equal(dropped["segmentation_map"][~zero], batch["segmentation_map"][~zero])
    # The stream of a micro-batch depends on (seed, micro-step, rank) only.
    a, b, c = (step_generator(0, 5, r).initial_seed() for r in (0, 0, 1))
    assert a == b != c


def test_dataset_sources_saved_folder_parquet_folder_and_files(dataset_dir, tmp_path):
    import datasets

    from spic_diffusers.training.dataset import load_split

    saved = datasets.load_from_disk(dataset_dir)
    (tmp_path / "data").mkdir()
    for split in ("train", "validation"):
        saved[split].to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    from_folder = load_split(str(tmp_path), "validation")
    assert from_folder["id"] == saved["validation"]["id"]
    from_files = load_split(str(tmp_path / "data" / "train-*.parquet"), "train")
    assert from_files["id"] == saved["train"]["id"]
    assert isinstance(from_files[0]["semantic_map"], Image.Image)
    with pytest.raises(TrainingInputError, match="'train' split only"):
        load_split(str(tmp_path / "data" / "train-*.parquet"), "validation")
    with pytest.raises(TrainingInputError, match=r"split 'test' is not in .*\['train', 'validation'\]"):
        load_split(dataset_dir, "test")
    streamed = load_split(dataset_dir, "train", streaming=True)
    assert [row["id"] for row in streamed] == saved["train"]["id"]


def test_random_crops_cover_the_same_pixels_in_every_input():
    from spic_diffusers.training.trainer import augment_batch, step_generator

    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 19, (16, 32, 64), generator=g)
    image = torch.rand(16, 3, 32, 64, generator=g)
    batch = {
        "pixel_values": image,
        "segmentation_map": torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float(),
        "low_res_image": torch.nn.functional.avg_pool2d(image, 4),  # the coarse grid of the image
        "labels": labels,
    }
    out = augment_batch(batch, step_generator(0, 1, 0), random_flip=False, cfg_drop_rate=0.0, crop=(16, 32),
                        coarse_downsample=4)
    assert out["pixel_values"].shape == (16, 3, 16, 32) and out["low_res_image"].shape == (16, 3, 4, 8)
    assert out["segmentation_map"].shape == (16, 19, 16, 32) and out["labels"].shape == (16, 16, 32)
    assert torch.equal(out["segmentation_map"].argmax(1), out["labels"])
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(out["pixel_values"], 4), out["low_res_image"])
    # Crops differ between samples (not always the top-left corner).
    assert not all(torch.equal(out["pixel_values"][i], image[i, :, :16, :32]) for i in range(16))


def test_timestep_bias_focuses_on_small_timesteps():
    from spic_diffusers.training.loss import linear_alphas_cumprod
    from spic_diffusers.training.trainer import training_loss

    from spic_diffusers import SPICUNet2DModel

    unet = SPICUNet2DModel(sample_size=(4, 4), block_out_channels=(32,), layers_per_block=1,
                           attention_downsample_factors=(), attention_head_dim=16, spade_hidden_channels=8)
    seen = []
    unet.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    batch = {"pixel_values": torch.zeros(200, 3, 4, 4), "segmentation_map": torch.zeros(200, 19, 4, 4),
             "low_res_image": torch.zeros(200, 3, 1, 1)}
    alphas = linear_alphas_cumprod(1000)
    with torch.no_grad():
        training_loss(unet, batch, alphas, torch.Generator().manual_seed(0), timestep_bias=(250, 0.9))
        training_loss(unet, batch, alphas, torch.Generator().manual_seed(0))
    biased, uniform = seen
    assert 0.85 < (biased < 250).float().mean() < 0.99
    assert 0.12 < (uniform < 250).float().mean() < 0.38


def test_crop_and_bias_options_are_checked(tmp_path):
    with pytest.raises(TrainingInputError, match="random_crop"):
        from spic_diffusers.training.arguments import check_args

        check_args(parse_args(["--dataset_name_or_path", "x", "--resolution", "32,64", "--random_crop", "64,64"]))
    with pytest.raises(TrainingInputError, match="timestep_bias_max"):
        check_args(parse_args(["--dataset_name_or_path", "x", "--timestep_bias_max", "5000"]))


def test_cpu_training_that_cannot_hold_n_model_copies_stops_before_starting(tmp_path, monkeypatch, capsys):
    from spic_diffusers.training.trainer import check_cpu_memory, cli

    paper = parse_args(["--config", str(REPO / "training" / "configs" / "paper.json"),
                        "--dataset_name_or_path", "d", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(TrainingInputError, match=r"8 CPU training process\(es\) need at least 9[0-9]\.\d GiB"):
        check_cpu_memory(paper, 8, available_bytes=64 * 2**30)  # 653 M parameters x 5 float32 copies x 8
    check_cpu_memory(paper, 1, available_bytes=64 * 2**30)
    tiny = parse_args(_args("d", tmp_path / "o"))
    check_cpu_memory(tiny, 2, available_bytes=2**30)
    # As `accelerate launch --multi_gpu --num_processes N` on a CPU starts it: one line, nothing done.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "10000")
    status = cli(["--config", str(REPO / "training" / "configs" / "paper.json"), "--cpu",
                  "--dataset_name_or_path", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "10000 CPU training process(es) need at least" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_default_model_script_replaces_the_shipped_model_only_when_asked(tmp_path):
    from spic_diffusers.demo import shipped_model_path

    shipped = shipped_model_path()
    before = sorted(p.name for p in shipped.rglob("*"))
    result = subprocess.run(["bash", str(REPO / "scripts" / "train_default_model.sh"), str(tmp_path / "work"), "5",
                             str(shipped)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "already exists; pass --overwrite" in result.stderr
    assert not (tmp_path / "work").exists() and sorted(p.name for p in shipped.rglob("*")) == before
