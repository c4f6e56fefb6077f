"""The `spic` command with hostile and careless inputs: safe writes, bounded cost, cheap checks first, one line."""

import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from spic_diffusers.cli import main
from spic_diffusers.codec import decode_parts, pack_stream

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture()
def inputs(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.zeros((32, 64), dtype=np.uint8)
    labels[:10] = 10
    labels[20:, 10:40] = 13
    Image.fromarray((rng.random((32, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(labels).save(tmp_path / "map.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _encode(*extra):
    return main(["encode", "image.png", "--segmentation", "map.png", "--coarse_codec", "jpeg", *extra])


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _header_only_png(path, height, width):
    """A PNG whose IHDR declares ``height x width`` and whose data is a few bytes: a bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------- safe writes


def test_a_planted_temporary_name_is_never_written_through(inputs, capsys):
    victim = inputs / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, inputs / "x.spic.part")  # the name an in-place writer would have used
    assert _encode("-o", "x.spic") == 0
    assert victim.read_text() == "precious"
    assert (inputs / "x.spic").is_file() and not (inputs / "x.spic").is_symlink()
    assert decode_parts((inputs / "x.spic").read_bytes()).height == 32
    leftovers = [p.name for p in inputs.iterdir() if p.name.endswith(".part") and not p.is_symlink()]
    assert leftovers == []


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_dangling_output_links_are_refused(inputs, capsys, command):
    target = inputs / "elsewhere" / "created.bin"
    (inputs / "elsewhere").mkdir()
    os.symlink(target, inputs / "out.file")
    if command == "encode":
        assert _encode("-o", "out.file") == 1
    else:
        _encode("-o", "x.spic")
        capsys.readouterr()
        assert main(["decode", "x.spic", "--model", "nowhere", "-o", "out.file"]) == 1
    _one_line_error(capsys, "symbolic link")
    assert not target.exists()


def test_outputs_are_replaced_by_rename_not_rewritten_in_place(inputs):
    assert _encode("-o", "x.spic") == 0
    os.link(inputs / "x.spic", inputs / "keep.spic")  # a second name for the old file's bytes
    before = (inputs / "keep.spic").read_bytes()
    assert _encode("-o", "x.spic", "--force", "--map_coder", "png") == 0
    assert (inputs / "keep.spic").read_bytes() == before, "the old file was rewritten in place"
    assert decode_parts((inputs / "x.spic").read_bytes()).map_coder == "png"
    assert oct(os.stat(inputs / "x.spic").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_one_line(inputs, capsys):
    (inputs / "ro").mkdir()
    os.chmod(inputs / "ro", 0o555)
    try:
        assert _encode("-o", "ro/x.spic") == 1
        _one_line_error(capsys, "not writable")
    finally:
        os.chmod(inputs / "ro", 0o755)


@pytest.mark.skipif(IS_ROOT, reason="root reads unreadable files")
def test_unreadable_stream_is_one_line(inputs, capsys):
    _encode("-o", "x.spic")
    os.chmod(inputs / "x.spic", 0)
    capsys.readouterr()
    try:
        assert main(["info", "x.spic"]) == 1
        _one_line_error(capsys, "cannot read")
    finally:
        os.chmod(inputs / "x.spic", 0o644)


# --------------------------------------------------------------------------- bounded cost


def test_decode_refuses_a_stream_over_the_pixel_budget_before_loading_a_model(inputs, capsys):
    stream = pack_stream(height=4096, width=8192, downsample=4, map_coder="context", coarse_codec="jpeg",
                         map_payload=b"\x00\x00", coarse_payload=b"")
    (inputs / "big.spic").write_bytes(stream)
    start = time.monotonic()
    assert main(["decode", "big.spic", "--model", "nowhere", "-o", "out.png"]) == 1
    assert time.monotonic() - start < 10  # a runaway bound; the benchmark measures the real figure
    _one_line_error(capsys, "4096x8192", "--max_pixels")
    # Raised, the budget lets the stream through to the payloads (garbage here): a stream error, no model yet.
    assert main(["decode", "big.spic", "--model", "nowhere", "-o", "out.png", "--max_pixels", str(1 << 26)]) == 1
    assert "nowhere" not in _one_line_error(capsys)


def test_encode_checks_sizes_from_headers_before_decoding(inputs, capsys):
    _header_only_png(inputs / "huge.png", 12000, 12000)
    start = time.monotonic()
    assert main(["encode", "huge.png", "--segmentation", "map.png", "-o", "x.spic"]) == 1
    _one_line_error(capsys, "12000x12000", "--max_pixels")
    assert main(["encode", "huge.png", "--segmentation", "map.png", "-o", "x.spic", "--max_pixels", str(10**9)]) == 1
    _one_line_error(capsys, "32x64", "12000x12000")
    # With the budget lifted, Pillow's own decompression-bomb guard is one line too.
    _header_only_png(inputs / "bomb.png", 20000, 20000)
    assert main(["encode", "bomb.png", "--segmentation", "bomb.png", "-o", "x.spic", "--max_pixels", str(10**9)]) == 1
    _one_line_error(capsys, "too large to read safely")
    assert time.monotonic() - start < 10


# ------------------------------------------------------------------------- cheap checks first


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["decode", "x.spic", "--model", "nowhere", "-o", "out.xyz"], ["out.xyz"]),
        (["decode", "x.spic", "--model", "nowhere", "-o", "out.png", "--device", "bogus"], ["bogus"]),
        (["decode", "x.spic", "--model", "nowhere", "-o", "out.png", "--max_pixels", "0"], ["--max_pixels"]),
        (["demo", "--eval_scenes", "-1", "--output_dir", "d"], ["--eval_scenes"]),
        (["encode", "image.png", "--segmentation", "bad.png", "-o", "y.spic"], ["outside", "0..18"]),
    ],
)
def test_cheap_checks_come_before_expensive_work(inputs, capsys, argv, fragments):
    _encode("-o", "x.spic")
    Image.fromarray(np.full((32, 64), 40, np.uint8)).save(inputs / "bad.png")
    capsys.readouterr()
    start = time.monotonic()
    assert main(argv) == 1
    assert time.monotonic() - start < 10
    _one_line_error(capsys, *fragments)
    assert not (inputs / "y.spic").exists() and not (inputs / "d").exists()


def test_absent_accelerator_is_one_line(inputs, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _encode("-o", "x.spic")
    capsys.readouterr()
    assert main(["decode", "x.spic", "--model", "nowhere", "-o", "out.png", "--device", "cuda"]) == 1
    _one_line_error(capsys, "no cuda device")


def test_scheduler_needing_a_missing_package_is_one_line(inputs, capsys):
    try:
        import torchsde  # noqa: F401

        pytest.skip("torchsde is installed here")
    except ImportError:
        pass
    from spic_diffusers.demo import shipped_model_path

    _encode("-o", "x.spic")
    capsys.readouterr()
    argv = ["decode", "x.spic", "--model", str(shipped_model_path()), "-o", "out.png", "--scheduler",
            "DPMSolverSDEScheduler"]
    assert main(argv) == 1
    _one_line_error(capsys, "torchsde")


# ----------------------------------------------------------------------------------- 16 bits


def test_16_bit_grey_images_are_scaled_not_clipped(inputs):
    ramp = (np.arange(32 * 64).reshape(32, 64) * 32).astype(np.uint16)  # 0 .. 65504
    Image.fromarray(ramp).save(inputs / "deep.png")
    with Image.open(inputs / "deep.png") as check:
        assert check.mode.startswith("I")
    assert main(["encode", "deep.png", "--segmentation", "map.png", "--coarse_codec", "jpeg",
                 "--coarse_quality", "95", "-o", "deep.spic"]) == 0
    coarse = decode_parts((inputs / "deep.spic").read_bytes()).coarse_image.astype(float)
    expected = ramp.reshape(8, 4, 16, 4).mean(axis=(1, 3)) / 257
    assert coarse.min() < 40 and coarse.max() > 200  # the whole range, not white
    assert np.abs(coarse.mean(axis=2) - expected).mean() < 8


# ------------------------------------------------------- files that appear while a command runs


@pytest.fixture()
def appearing_output(inputs, monkeypatch):
    """Make ``x.spic`` appear (another process, a user) after the command checked its output path."""
    import spic_diffusers.codec as codec

    real_encode = codec.encode

    def encode_then_someone_writes(*args, **kwargs):
        stream = real_encode(*args, **kwargs)
        (inputs / "x.spic").write_text("written meanwhile")
        return stream

    monkeypatch.setattr(codec, "encode", encode_then_someone_writes)
    return inputs / "x.spic"


def test_a_file_that_appears_during_encode_is_kept(appearing_output, capsys):
    assert _encode("-o", "x.spic") == 1
    _one_line_error(capsys, "appeared while the command ran", "--overwrite")
    assert appearing_output.read_text() == "written meanwhile"
    assert not [p for p in appearing_output.parent.iterdir() if p.name.endswith(".part")]


def test_a_file_that_appears_during_encode_is_replaced_with_overwrite(appearing_output):
    assert _encode("-o", "x.spic", "--overwrite") == 0
    assert decode_parts(appearing_output.read_bytes())


def test_exclusive_rename_falls_back_where_hard_links_are_unsupported(tmp_path, monkeypatch):
    import errno

    from spic_diffusers import output_files

    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(output_files.os, "link", no_links)
    output_files.write_atomically(tmp_path / "a.bin", b"data", overwrite=False)
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    with pytest.raises(FileExistsError):
        output_files.write_atomically(tmp_path / "a.bin", b"other", overwrite=False)
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_float_tiff_in_0_to_1_is_scaled_not_truncated_to_black(inputs):
    ramp = (np.arange(32 * 64).reshape(32, 64) / (32 * 64 - 1)).astype(np.float32)  # 0 .. 1
    Image.fromarray(ramp, mode="F").save(inputs / "float.tif")
    with Image.open(inputs / "float.tif") as check:
        assert check.mode == "F"
    assert main(["encode", "float.tif", "--segmentation", "map.png", "--coarse_codec", "jpeg",
                 "--coarse_quality", "95", "-o", "float.spic"]) == 0
    coarse = decode_parts((inputs / "float.spic").read_bytes()).coarse_image.astype(float)
    expected = ramp.reshape(8, 4, 16, 4).mean(axis=(1, 3)) * 255
    assert coarse.min() < 40 and coarse.max() > 200  # the whole range, not black
    assert np.abs(coarse.mean(axis=2) - expected).mean() < 8


@pytest.mark.parametrize("values, fragment", [(-1.0, "-1..1"), (300.0, "0..300"), (float("nan"), "NaN")])
def test_float_images_outside_a_known_range_are_refused_with_the_range(inputs, capsys, values, fragment):
    data = np.linspace(0, 1, 32 * 64, dtype=np.float32).reshape(32, 64)
    data[0, 0] = values
    if values == 300.0:
        data[0, 1] = 0.0
    Image.fromarray(data, mode="F").save(inputs / "odd.tif")
    assert main(["encode", "odd.tif", "--segmentation", "map.png", "-o", "odd.spic"]) == 1
    _one_line_error(capsys, fragment)
    assert not (inputs / "odd.spic").exists()
