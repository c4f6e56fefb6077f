"""The ``spic`` command: encode an image to a SPIC stream, inspect it, decode it with a model.

One function per subcommand (``cmd_<name>``), registered in :func:`build_parser`; each gets the
parsed arguments and returns an exit status.  User errors print one line to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .codec.bitstream import DEFAULT_MAX_PIXELS, BitstreamError, CodecUnavailableError, PixelBudgetError
from .pipelines.schedulers import SCHEDULER_CLASSES

THREADS_HELP = ("CPU threads for torch (default: torch's choice, one per core); all cores are fastest on an idle "
                "machine, fewer when other work shares the cores")


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


class _OverwriteFlag(argparse.Action):
    """``--overwrite``; ``--force`` is its deprecated alias and says so."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--force":
            print(f"{parser.prog}: note: --force is deprecated; use --overwrite", file=sys.stderr)
        setattr(namespace, self.dest, True)


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str = "an existing output", **kwargs) -> None:
    """The one flag that allows replacing existing outputs, for every command and script of the project."""
    kwargs.setdefault("dest", "overwrite")
    parser.add_argument("--overwrite", "--force", action=_OverwriteFlag,
                        help=f"replace {what} (--force: deprecated alias)", **kwargs)


def _check_output(path: str | os.PathLike, force: bool) -> Path:
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise CLIError(f"{path} is a symbolic link to a missing file; remove it or choose another output")
    if path.exists() and not force:
        raise CLIError(f"{path} already exists; pass --overwrite to replace it")
    if path.exists() and path.is_dir():
        raise CLIError(f"{path} is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise CLIError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"output folder {parent} is not writable")
    return path


def _read_stream(path: str) -> bytes:
    from .codec.bitstream import MAX_PIXELS

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"no such file: {path}")
    # No valid stream is near this size: its pixels would be over the container's limit at 8 bits each.
    if path.stat().st_size > MAX_PIXELS:
        raise CLIError(f"{path} is {path.stat().st_size} bytes, too large to be a SPIC stream")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror or err}") from None


def _open_image(path: str, what: str, max_pixels: int | None = None):
    from .image_files import InputFileError, open_image_file

    try:
        return open_image_file(path, what, max_pixels)
    except InputFileError as err:
        raise CLIError(str(err)) from None


def _load_segmentation(path: str, label_ids: bool, label_format: str | None = None):
    from .image_files import InputFileError, read_segmentation_file

    try:
        return read_segmentation_file(path, label_ids, label_format)
    except InputFileError as err:
        raise CLIError(str(err)) from None


def _write_atomically(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` whole or not at all; without ``overwrite``, a file that appeared at ``path`` since
    :func:`_check_output` is kept and the command fails (see :mod:`spic_diffusers.output_files`)."""
    from .output_files import write_atomically

    try:
        write_atomically(path, data, overwrite=overwrite)
    except FileExistsError:
        raise CLIError(f"{path} appeared while the command ran; it was kept (pass --overwrite to replace it)") from None
    except OSError as err:
        raise CLIError(f"cannot write {path}: {err.strerror or err}") from None


def _image_format(path: Path) -> str:
    """The Pillow format for an output file name, checked before any work is done."""
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CLIError(f"cannot tell an image format from the output name {path.name!r}; use e.g. .png")
    return fmt


def _check_device(device: str | None) -> None:
    """Refuse an unknown or absent torch device before loading anything."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise CLIError(f"--device {device!r} is not a torch device ({str(err).splitlines()[0]})") from None
    if parsed.type == "cpu":
        return
    backend = getattr(torch, parsed.type, None)
    available = getattr(backend, "is_available", None)
    if parsed.type == "mps":
        available = torch.backends.mps.is_available
    if available is None or not available():
        raise CLIError(f"--device {device!r}: no {parsed.type} device is available here")
    count = getattr(backend, "device_count", None)
    if parsed.index is not None and count is not None and parsed.index >= count():
        raise CLIError(f"--device {device!r}: this machine has {count()} {parsed.type} device(s)")


def _check_max_pixels(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise CLIError(f"--max_pixels must be >= 1, got {value}")
    return value


# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------


def cmd_encode(args: argparse.Namespace) -> int:
    """Image (+ map or segmenter) -> .spic stream."""
    from .image_files import InputFileError, image_file_size

    output = _check_output(args.output, args.overwrite)
    if args.segmentation is not None and args.segmenter is not None:
        raise CLIError("pass one of --segmentation MAP or --segmenter MODEL, not both")
    max_pixels = _check_max_pixels(args.max_pixels)
    if args.downsample < 1:
        raise CLIError(f"--downsample must be >= 1, got {args.downsample}")
    try:  # sizes from the headers first: nothing is decoded for a mismatch or an oversized input
        size = image_file_size(args.image, "image")
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            raise CLIError(
                f"image {args.image} is {size[0]}x{size[1]} ({size[0] * size[1]} pixels), above the budget of "
                f"{max_pixels} pixels; raise it with --max_pixels if you mean to spend that"
            )
        if args.segmentation is not None:
            map_size = image_file_size(args.segmentation, "segmentation map")
            if map_size != size:
                raise CLIError(
                    f"segmentation map is {map_size[0]}x{map_size[1]} but the image is {size[0]}x{size[1]}"
                )
    except InputFileError as err:
        raise CLIError(str(err)) from None

    import numpy as np
    from tqdm.auto import tqdm

    from .codec import bpp_breakdown, encode, encode_to_rate
    from .codec.transmitter import to_rgb_image
    from .data.cityscapes import NUM_CLASSES

    image = _open_image(args.image, "image", max_pixels)
    try:
        image = to_rgb_image(image)
    except ValueError as err:
        raise CLIError(f"image {args.image}: {err}") from None
    with tqdm(total=2, desc="encoding", unit="step", disable=None, file=sys.stderr) as progress:
        if args.segmentation is not None:
            labels = _load_segmentation(args.segmentation, args.label_ids, args.label_format)
            bad = np.setdiff1d(np.unique(labels), np.r_[np.arange(NUM_CLASSES), 255])
            if bad.size:
                raise CLIError(
                    f"segmentation map {args.segmentation} holds labels {bad[:10].tolist()} outside the train ids "
                    f"0..{NUM_CLASSES - 1} (255 = ignore); pass --label_ids if it holds official label ids"
                )
        else:
            from .codec import Segmenter

            segmenter = args.segmenter
            if segmenter is None:  # no map given: transmit what the shipped segmenter sees
                from .demo import DemoError, shipped_segmenter_path

                try:
                    segmenter = shipped_segmenter_path()
                except DemoError as err:
                    raise CLIError(str(err)) from None
                tqdm.write(f"no --segmentation given: coding the map the shipped segmenter ({segmenter.name}) "
                           "predicts", file=sys.stderr)
            progress.set_description("segmenting")
            try:
                labels = Segmenter.from_pretrained(segmenter)(np.asarray(image))
            except ValueError as err:
                raise CLIError(str(err)) from None
        progress.update(1)
        progress.set_description("coding")
        if args.target_bpp is not None:
            if args.coarse_quality is not None:
                raise CLIError("pass either --coarse_quality or --target_bpp, not both")
            try:
                fit = encode_to_rate(
                    image, labels, target_bpp=args.target_bpp, coarse_codec=args.coarse_codec,
                    downsample=args.downsample, map_coder=args.map_coder, chroma=args.chroma,
                )  # fmt: skip
            except ValueError as err:
                raise CLIError(str(err)) from None
            stream = fit.stream
            from .codec import read_header

            print(f"target {fit.target_bpp:g} bpp: reached {fit.bpp:.4f} bpp with "
                  f"{read_header(stream).coarse_codec} quality {fit.coarse_quality} at downsample {fit.downsample}")
        else:
            stream = encode(
                image,
                labels,
                coarse_codec=args.coarse_codec,
                coarse_quality=args.coarse_quality,
                downsample=args.downsample,
                map_coder=args.map_coder,
                chroma=args.chroma,
            )
        progress.update(1)
    _write_atomically(output, stream, args.overwrite)
    info = bpp_breakdown(stream)
    print(
        f"wrote {output}: {len(stream)} bytes, {info['bpp']['total']:.4f} bpp "
        f"(map {info['bpp']['map']:.4f}, coarse {info['bpp']['coarse']:.4f}, header {info['bpp']['header']:.4f})"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a .spic stream holds, without decoding its payloads."""
    from .codec import bpp_breakdown, coarse_size, read_header

    stream = _read_stream(args.stream)
    header = read_header(stream)
    breakdown = bpp_breakdown(stream)
    small_h, small_w = coarse_size(header.height, header.width, header.downsample)
    info = {
        "file": str(args.stream),
        "image_size": [header.height, header.width],
        "downsample": header.downsample,
        "coarse_size": [small_h, small_w],
        "map_coder": header.map_coder,
        "coarse_codec": header.coarse_codec,
        "bytes": breakdown["bytes"],
        "bpp": breakdown["bpp"],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.stream}")
    print(
        f"  image        {header.height}x{header.width} "
        f"(coarse {small_h}x{small_w}, downsample {header.downsample})"
    )
    print(f"  map coder    {header.map_coder}")
    print(f"  coarse codec {header.coarse_codec}")
    for part in ("header", "map", "coarse", "total"):
        print(f"  {part:<12} {breakdown['bytes'][part]:>8} B  {breakdown['bpp'][part]:.4f} bpp")
    return 0


def _load_pipeline(model: str, scheduler_name: str | None, device: str | None):
    from .pipelines.pipeline_spic import SPICPipeline, default_scheduler, unsupported_scheduler_reason
    from .pipelines.schedulers import scheduler_from_name

    _check_device(device)
    if scheduler_name:  # an unknown name, a missing package or an unusable kind is found before the model is loaded
        try:
            problem = unsupported_scheduler_reason(scheduler_from_name(scheduler_name, default_scheduler().config))
        except ValueError as err:
            raise CLIError(str(err)) from None
        if problem is not None:
            raise CLIError(problem)
    try:
        pipeline = SPICPipeline.from_pretrained(model)
    except (OSError, ValueError, EnvironmentError) as err:
        raise CLIError(f"cannot load a SPIC pipeline from {model!r}: {err}") from None
    if scheduler_name:
        try:
            pipeline.scheduler = scheduler_from_name(scheduler_name, pipeline.scheduler.config)
            pipeline.check_scheduler()
        except ValueError as err:
            raise CLIError(str(err)) from None
    if device:
        try:
            pipeline.to(device)
        except (RuntimeError, AssertionError) as err:
            raise CLIError(f"cannot move the model to {device!r}: {str(err).splitlines()[0]}") from None
    return pipeline


def _set_threads(threads: int | None) -> None:
    """`--threads`: torch's CPU threads (all cores suit an idle machine, fewer a machine whose cores are busy)."""
    if threads is None:
        return
    if threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _model_or_fast(args: argparse.Namespace) -> str | None:
    """`--model`, or the shipped distilled model for `--fast` (a clear error if it is not installed)."""
    if not getattr(args, "fast", False):
        return args.model
    if args.model is not None:
        raise CLIError("--fast uses the shipped fast model: pass either --fast or --model, not both")
    from .demo import shipped_model_path

    return str(shipped_model_path("fast"))


def cmd_decode(args: argparse.Namespace) -> int:
    """.spic stream + SPIC model -> reconstructed image."""
    import torch

    import io

    from .codec import decode, decode_parts, read_header
    from .codec.bitstream import check_pixel_budget

    output = _check_output(args.output, args.overwrite)
    fmt = _image_format(output)
    max_pixels = _check_max_pixels(args.max_pixels)
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    _check_device(args.device)
    stream = _read_stream(args.stream)
    header = read_header(stream)
    check_pixel_budget(header.height, header.width, max_pixels)
    decode_parts(stream, max_pixels=max_pixels)  # fail on a bad stream before loading a model
    _set_threads(args.threads)
    model = _model_or_fast(args)
    if model is None:  # the shipped CamVid receiver, as `spic demo` decodes with
        from .demo import shipped_model_path

        model = str(shipped_model_path())
    pipeline = _load_pipeline(model, args.scheduler, args.device)
    # Unset sampling options fall back to the pipeline's saved defaults (a distilled student's own schedule).
    kwargs = {
        k: v for k, v in (("guidance_scale", args.guidance), ("num_inference_steps", args.steps)) if v is not None
    }
    if args.unet_dtype is not None:
        kwargs["unet_dtype"] = args.unet_dtype
    if args.max_timestep is not None:
        kwargs["max_timestep"] = args.max_timestep
    if args.seed is not None:
        kwargs["generator"] = torch.Generator(device=pipeline.device).manual_seed(args.seed)
    image = decode(stream, pipeline, max_pixels=max_pixels, **kwargs)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    _write_atomically(output, buffer.getvalue(), args.overwrite)
    print(f"wrote {output} ({image.size[1]}x{image.size[0]})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A shipped CamVid photograph (or --synthetic, or --image + --segmentation) -> stream -> reconstruction."""
    from . import demo

    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if args.eval_scenes < 0:
        raise CLIError(f"--eval_scenes must be >= 0, got {args.eval_scenes}")
    _check_device(args.device)
    _set_threads(args.threads)
    size = args.size
    if size not in ("model", "native"):
        try:
            height, width = (int(v) for v in size.replace("x", ",").split(","))
        except ValueError:
            raise CLIError(f"--size must be 'model', 'native' or HEIGHT,WIDTH, got {size!r}") from None
        size = (height, width)
    if args.label_ids and args.label_format not in (None, "labelid"):
        raise CLIError(f"--label_ids contradicts --label_format {args.label_format}")
    demo.check_demo_inputs(args.output_dir, args.image, args.segmentation, args.label_ids, args.overwrite,
                           args.label_format)
    held_out = Path(args.output_dir) / "held_out.json"
    if args.eval_scenes and held_out.exists() and not args.overwrite:
        raise CLIError(f"{held_out} already exists; pass --overwrite to replace it")
    segmenter = None  # loaded after the cheap input checks
    if args.segmenter:
        from .codec import Segmenter

        segmenter = Segmenter.from_pretrained(args.segmenter)
    elif not args.no_segmenter and not args.synthetic:
        segmenter = demo.load_shipped_segmenter()
    if args.fast:
        pipeline = _load_pipeline(_model_or_fast(args), args.scheduler, args.device)
    elif args.model is not None or args.scheduler or args.device:
        pipeline = _load_pipeline(args.model or str(demo.shipped_model_path()), args.scheduler, args.device)
    else:
        pipeline = demo.load_pipeline()
    result = demo.run_demo(
        args.output_dir,
        pipeline=pipeline,
        image=args.image,
        segmentation=args.segmentation,
        label_ids=args.label_ids,
        label_format=args.label_format,
        size=size,
        synthetic=args.synthetic,
        frame=args.frame,
        scene_seed=args.scene_seed,
        coarse_codec=args.coarse_codec,
        coarse_quality=args.coarse_quality,
        downsample=args.downsample,
        num_inference_steps=args.steps,
        max_timestep=args.max_timestep,
        guidance_scale=args.guidance,
        seed=args.seed,
        segmenter=segmenter,
        force=args.overwrite,
    )
    if args.eval_scenes:
        print(f"held-out check: {args.eval_scenes} synthetic test scenes at {result.height}x{result.width} ...")
        summary = demo.evaluate_held_out(
            pipeline, args.eval_scenes, coarse_codec=args.coarse_codec, coarse_quality=args.coarse_quality,
            downsample=args.downsample, num_inference_steps=args.steps, max_timestep=args.max_timestep,
            guidance_scale=args.guidance, seed=args.seed,
        )  # fmt: skip
        for key, title in (("psnr", "PSNR [dB]"), ("boundary_psnr", "boundary PSNR [dB]"),
                           ("region_colour_error", "region colour error")):
            spic, coarse = summary["spic"][key], summary["coarse"][key]
            print(f"  {title:<22} SPIC {spic:7.2f}   coarse {coarse:7.2f}   difference {spic - coarse:+.2f}")
        print(f"  SPIC PSNR higher on {summary['scenes_where_spic_psnr_is_higher']}/{args.eval_scenes} scenes, "
              f"mean rate {summary['bpp']:.4f} bpp")
        _write_atomically(held_out, json.dumps(demo._finite(summary), indent=2).encode(), args.overwrite)
    return 0


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def _codec_help() -> str:
    from .codec.coarse import COARSE_FALLBACKS, DEFAULT_COARSE_CODEC, DEFAULT_COARSE_QUALITY

    order = ", ".join(f"{name} {quality}" for name, quality in COARSE_FALLBACKS)
    return (f"lossy coarse codec (default: {DEFAULT_COARSE_CODEC} at QP {DEFAULT_COARSE_QUALITY}; where it cannot "
            f"run, the first available of {order}, with a printed note)")


def _add_encode(subparsers) -> None:
    from .codec.coarse import COARSE_CODECS
    from .codec.map_coders import DEFAULT_MAP_CODER, MAP_CODERS

    p = subparsers.add_parser("encode", help="code an image and its semantic map into a .spic stream")
    p.add_argument("image", help="input image (any format Pillow reads)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--segmentation", metavar="MAP", help="train-id map PNG (mode L, 255 = ignore)")
    source.add_argument("--segmenter", metavar="MODEL",
                        help="transformers segmentation model (folder or Hub id) that predicts the map; without "
                             "--segmentation or --segmenter the shipped segmenter does")
    p.add_argument("--label_ids", action="store_true", help="--segmentation holds official Cityscapes label ids")
    p.add_argument("--label_format", default=None, choices=("trainid", "labelid", "camvid"),
                   help="what --segmentation holds: Cityscapes train ids (default; a map that looks like raw CamVid "
                        "annotations is refused), official label ids (= --label_ids) or raw CamVid annotations 0..11")
    p.add_argument("-o", "--output", required=True, metavar="FILE.spic", help="output stream")
    p.add_argument("--coarse_codec", default=None, choices=sorted(COARSE_CODECS), help=_codec_help())
    p.add_argument(
        "--coarse_quality",
        type=float,
        default=None,
        help="codec quality (hevc/bpg: QP, lower is better; others: 0-100)",
    )
    p.add_argument("--downsample", type=int, default=4, help="coarse image downsampling factor (default 4)")
    p.add_argument(
        "--map_coder", default=DEFAULT_MAP_CODER, choices=sorted(MAP_CODERS),
        help=f"lossless map coder (default: {DEFAULT_MAP_CODER})"
    )
    p.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger input images, read from their headers (default {DEFAULT_MAX_PIXELS})")
    add_overwrite_argument(p, "an existing output file")
    p.add_argument("--target_bpp", type=float, default=None, metavar="BPP",
                   help="choose the coarse quality giving the highest rate at or below BPP bits per pixel")
    p.add_argument("--chroma", default=None, choices=["444", "420"],
                   help="hevc chroma subsampling: 444 (default, the paper's) or 420 (BPG's default)")
    p.set_defaults(func=cmd_encode)


def _add_decode(subparsers) -> None:
    p = subparsers.add_parser("decode", help="reconstruct an image from a .spic stream with a SPIC model")
    p.add_argument("stream", help="input .spic stream")
    p.add_argument("--model", default=None, metavar="PATH_OR_ID",
                   help="SPICPipeline folder or Hub id (default: the shipped CamVid receiver, spic-camvid-small)")
    p.add_argument("--fast", action="store_true", help="use the shipped distilled few-step model (instead of --model)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output image")
    p.add_argument("--scheduler", default=None, help=f"sampler: {', '.join(SCHEDULER_CLASSES)} or a diffusers class")
    p.add_argument("--steps", type=int, default=None,
                   help="schedule spacing (default: the model's saved schedule, else 100 as in the paper; "
                        "lcm and tcd: their own grid of 50)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's saved scale, else 1.5 as in the paper)")
    p.add_argument("--unet_dtype", default=None, choices=("fp32", "bf16", "fp16"),
                   help="run the UNet in this precision (latents and sampler stay fp32); bf16 is about 2x faster on "
                        "CPUs with native bf16 (AVX512-BF16, AMX) and far slower on those without")
    p.add_argument("--max_timestep", type=int, default=None, help="start timestep (the pipeline's default: 200)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse streams declaring more pixels, before decoding anything "
                        f"(default {DEFAULT_MAX_PIXELS}, Cityscapes' full resolution)")
    add_overwrite_argument(p, "an existing output file")
    p.set_defaults(func=cmd_decode)


def _add_info(subparsers) -> None:
    p = subparsers.add_parser("info", help="show sizes, codecs and the bpp breakdown of a .spic stream")
    p.add_argument("stream", help="input .spic stream")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def _add_demo(subparsers) -> None:
    from .codec.coarse import COARSE_CODECS

    p = subparsers.add_parser(
        "demo",
        help="code and decode a scene with the model shipped in the package (offline, CPU)",
        description="Code a real street photograph (a CamVid test frame shipped in the package; or --synthetic, "
        "or your --image + --segmentation) into one SPIC stream, decode it with the shipped model and compare "
        "with the upsampled coarse image, with mIoU from the shipped segmenter.",
    )
    p.add_argument("--output_dir", default="demo_output", help="folder for the outputs (default: demo_output)")
    p.add_argument("--image", default=None, help="your own image (needs --segmentation)")
    p.add_argument("--segmentation", metavar="MAP", default=None, help="its train-id map PNG (mode L, 255 = ignore)")
    p.add_argument("--label_ids", action="store_true", help="--segmentation holds official Cityscapes label ids")
    p.add_argument("--label_format", default=None, choices=("trainid", "labelid", "camvid"),
                   help="what --segmentation holds: Cityscapes train ids (default; a map that looks like raw CamVid "
                        "annotations is refused), official label ids (= --label_ids) or raw CamVid annotations 0..11")
    p.add_argument("--size", default="model",
                   help="'model' (the model's training size, default), 'native' (own size rounded to a multiple "
                        "the model accepts) or HEIGHT,WIDTH")
    p.add_argument("--frame", type=int, default=0, help="which shipped CamVid test frame (0 or 1; default 0)")
    p.add_argument("--synthetic", action="store_true", help="code a generated synthetic street scene instead")
    p.add_argument("--scene_seed", type=int, default=2024, help="seed of the synthetic scene (default 2024)")
    p.add_argument("--model", default=None, metavar="PATH_OR_ID", help="another SPIC pipeline (default: shipped)")
    p.add_argument("--fast", action="store_true", help="decode with the shipped distilled few-step model")
    p.add_argument("--scheduler", default=None, help=f"sampler: {', '.join(SCHEDULER_CLASSES)} or a diffusers class")
    p.add_argument("--coarse_codec", default=None, choices=sorted(COARSE_CODECS), help=_codec_help())
    p.add_argument("--coarse_quality", type=float, default=None,
                   help="coarse codec quality (default: QP 35 for hevc, as in training; else the codec's own)")
    p.add_argument("--downsample", type=int, default=4, help="coarse image downsampling factor (default 4)")
    p.add_argument("--steps", type=int, default=None,
                   help="schedule spacing (default: the model's saved schedule, else 100 as in the paper; "
                        "lcm and tcd: their own grid of 50)")
    p.add_argument("--max_timestep", type=int, default=200, help="start timestep (the paper: 200)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's saved scale, else 1.5 as in the paper)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--segmenter", default=None, metavar="MODEL",
                   help="transformers segmentation model (folder or Hub id) for the mIoU figures "
                        "(default: the shipped CamVid SegFormer)")
    p.add_argument("--no_segmenter", action="store_true", help="skip the mIoU figures")
    p.add_argument("--eval_scenes", type=int, default=0, metavar="N",
                   help="also compare SPIC with the coarse image on N held-out synthetic scenes")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    add_overwrite_argument(p, "existing output files")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``spic`` parser; add a subcommand with a ``_add_<name>(subparsers)`` function."""
    parser = argparse.ArgumentParser(
        prog="spic", description="SPIC: semantic-preserving image coding with conditional diffusion models."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in (_add_encode, _add_decode, _add_info, _add_demo):
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, BitstreamError, CodecUnavailableError, PixelBudgetError, ValueError) as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"spic {args.command}: error: {message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `spic info x.spic | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"spic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
