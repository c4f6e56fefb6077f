"""The `spic` command: encode / info / decode end to end, errors as one line, no silent overwrite."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from spic_diffusers.cli import build_parser, main
from spic_diffusers.codec import decode_parts


def encode_args(tmp, output):
    return ["encode", str(tmp / "image.png"), "--segmentation", str(tmp / "map.png"), "-o", str(output)]


@pytest.fixture()
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((32, 64), dtype=np.uint8)
    labels[:10] = 10
    labels[20:, 10:40] = 13
    labels[-2:] = 255
    image = (rng.random((32, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(labels).save(tmp_path / "map.png")
    return tmp_path, labels


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("encode", "decode", "info"):
        assert command in out
    assert {"encode", "decode", "info"} <= set(build_parser()._subparsers._group_actions[0].choices)


def test_encode_info_and_overwrite_protection(inputs, capsys):
    tmp, labels = inputs
    out = tmp / "x.spic"
    args = ["encode", str(tmp / "image.png"), "--segmentation", str(tmp / "map.png"), "-o", str(out)]
    assert main(args + ["--coarse_codec", "jpeg", "--coarse_quality", "40"]) == 0
    assert "bpp" in capsys.readouterr().out
    parts = decode_parts(out.read_bytes())
    np.testing.assert_array_equal(parts.semantic_map, labels)
    assert parts.coarse_codec == "jpeg" and parts.coarse_image.shape == (8, 16, 3)

    before = out.read_bytes()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert main(args + ["--overwrite", "--map_coder", "png", "--downsample", "8"]) == 0
    assert decode_parts(out.read_bytes()).map_coder == "png"
    # The deprecated alias still works, and says so.
    assert main(args + ["--force", "--map_coder", "webp", "--downsample", "8"]) == 0
    assert "--force is deprecated; use --overwrite" in capsys.readouterr().err
    assert decode_parts(out.read_bytes()).map_coder == "webp"

    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["image_size"] == [32, 64] and info["downsample"] == 8
    assert info["bytes"]["total"] == len(out.read_bytes())
    assert main(["info", str(out)]) == 0
    assert "coarse codec" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "missing.spic"], "no such file"),
        (["encode", "missing.png", "--segmentation", "map.png", "-o", "y.spic"], "no such image"),
        (["encode", "image.png", "--segmentation", "image.png", "-o", "y.spic"], "mode RGB"),
        (["decode", "image.png", "--model", "nowhere", "-o", "y.png"], "wrong magic"),
    ],
)
def test_user_errors_are_one_line(inputs, capsys, monkeypatch, argv, message):
    tmp, _ = inputs
    monkeypatch.chdir(tmp)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_encode_without_a_map_transmits_the_shipped_segmenters_map(tmp_path, capsys):
    from PIL import Image

    from spic_diffusers.codec import Segmenter
    from spic_diffusers.demo import demo_frame, shipped_segmenter_path

    image, _, _ = demo_frame(0)
    Image.fromarray(image).save(tmp_path / "photo.png")
    out = tmp_path / "photo.spic"
    assert main(["encode", str(tmp_path / "photo.png"), "-o", str(out), "--coarse_codec", "jpeg"]) == 0
    assert "shipped segmenter (upernet-camvid)" in capsys.readouterr().err
    predicted = Segmenter.from_pretrained(shipped_segmenter_path())(image)
    np.testing.assert_array_equal(decode_parts(out.read_bytes()).semantic_map, predicted)


def test_encode_refuses_a_strip_the_segmenter_would_enlarge(tmp_path, capsys):
    """An aspect-keeping processor would blow a 200x2400 strip up to 360x4320: refused before the model runs."""
    from PIL import Image

    Image.fromarray(np.zeros((200, 2400, 3), np.uint8)).save(tmp_path / "strip.png")
    out = tmp_path / "strip.spic"
    assert main(["encode", str(tmp_path / "strip.png"), "-o", str(out), "--coarse_codec", "jpeg"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "more than 8 times the other" in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_damaged_stream_info_is_a_clear_error(inputs, capsys):
    tmp, _ = inputs
    out = tmp / "x.spic"
    main(encode_args(tmp, out) + ["--coarse_codec", "jpeg"])
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["info", str(out)]) == 1
    assert "CRC" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from diffusers import DDPMScheduler

    from spic_diffusers import SPICPipeline, SPICUNet2DModel

    torch.manual_seed(0)
    unet = SPICUNet2DModel(
        sample_size=(32, 64),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_downsample_factors=(2,),
        attention_head_dim=16,
    )
    path = tmp_path_factory.mktemp("spic_model")
    SPICPipeline(unet, DDPMScheduler(variance_type="learned_range")).save_pretrained(path)
    return path


def test_decode_end_to_end_as_a_console_command(inputs, tiny_model_dir, capsys):
    tmp, _ = inputs
    stream, image = tmp / "x.spic", tmp / "out.png"
    main(encode_args(tmp, stream) + ["--coarse_codec", "hevc"])
    command = [
        sys.executable, "-m", "spic_diffusers.cli", "decode", str(stream), "--model", str(tiny_model_dir),
        "-o", str(image), "--steps", "10", "--max_timestep", "50", "--guidance", "1", "--seed", "0",
        "--scheduler", "ddpm",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Image.open(image) as decoded:
        assert decoded.size == (64, 32) and decoded.mode == "RGB"
    assert main(command[3:]) == 1  # the output exists now: no silent overwrite
    assert "already exists" in capsys.readouterr().err


def test_raw_camvid_maps_are_refused_or_converted_with_label_format(tmp_path, capsys):
    from spic_diffusers.demo import demo_frame
    from test_data_camvid import _raw_camvid

    image, train_ids, _ = demo_frame(0)
    Image.fromarray(image).save(tmp_path / "frame.png")
    Image.fromarray(_raw_camvid(train_ids)).save(tmp_path / "raw.png")
    args = ["encode", str(tmp_path / "frame.png"), "--segmentation", str(tmp_path / "raw.png"), "--coarse_codec",
            "jpeg", "-o", str(tmp_path / "x.spic")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "raw CamVid annotation" in err and "--label_format camvid" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.spic").exists()
    assert main(args + ["--label_format", "camvid"]) == 0
    np.testing.assert_array_equal(decode_parts((tmp_path / "x.spic").read_bytes()).semantic_map, train_ids)
    assert main(args + ["--label_format", "trainid", "--overwrite"]) == 0  # taken at its word
    assert decode_parts((tmp_path / "x.spic").read_bytes()).semantic_map.max() <= 11
    assert main(["demo", "--image", str(tmp_path / "frame.png"), "--segmentation", str(tmp_path / "raw.png"),
                 "--output_dir", str(tmp_path / "demo")]) == 1
    assert "--label_format camvid" in capsys.readouterr().err


def test_decode_defaults_to_the_shipped_receiver(inputs, capsys, monkeypatch):
    """No --model: the shipped CamVid receiver decodes, as `spic demo --paper_sampler` does (here with few steps)."""
    import spic_diffusers.cli as cli
    from spic_diffusers.demo import shipped_model_path

    tmp, _ = inputs
    stream, image = tmp / "x.spic", tmp / "out.png"
    main(encode_args(tmp, stream) + ["--coarse_codec", "jpeg"])
    loaded = []
    load = cli._load_pipeline
    monkeypatch.setattr(cli, "_load_pipeline", lambda model, *a: loaded.append(model) or load(model, *a))
    argv = ["decode", str(stream), "-o", str(image), "--steps", "10", "--max_timestep", "50", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert loaded == [str(shipped_model_path())] and torch.get_num_threads() == 1
    with Image.open(image) as decoded:
        assert decoded.size == (64, 32)
    assert main(argv + ["--overwrite", "--threads", "0"]) == 1
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_decode_with_lcm_and_a_refused_flow_matching_scheduler(inputs, tiny_model_dir, capsys):
    tmp, _ = inputs
    stream = tmp / "x.spic"
    main(encode_args(tmp, stream) + ["--coarse_codec", "jpeg"])
    capsys.readouterr()
    argv = ["decode", str(stream), "--model", str(tiny_model_dir), "--seed", "0"]
    assert main(argv + ["-o", str(tmp / "lcm.png"), "--scheduler", "lcm"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(argv + ["-o", str(tmp / "flow.png"), "--scheduler", "FlowMatchEulerDiscreteScheduler"]) == 1
    err = capsys.readouterr().err
    assert "flow-matching" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "flow.png").exists()


def test_decode_unknown_scheduler_and_missing_model(inputs, tiny_model_dir, capsys):
    tmp, _ = inputs
    stream = tmp / "x.spic"
    main(encode_args(tmp, stream) + ["--coarse_codec", "jpeg"])
    capsys.readouterr()
    argv = ["decode", str(stream), "-o", str(tmp / "o.png"), "--model"]
    assert main(argv + [str(tiny_model_dir), "--scheduler", "nonsense"]) == 1
    assert "unknown scheduler" in capsys.readouterr().err
    assert main(argv + [str(tmp / "no_model")]) == 1
    assert "cannot load" in capsys.readouterr().err
