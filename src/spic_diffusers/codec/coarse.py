"""Lossy codecs for the coarse (downsampled) image, behind one small interface.

A :class:`CoarseCodec` has a ``name``, a ``quality`` with a stated meaning (``quality_help``,
``quality_range``, ``higher_is_better``), ``encode(rgb uint8 HxWx3) -> bytes`` and
``decode(bytes, height, width) -> rgb uint8``.  The container keeps the image size, so codecs
store raw payloads where the format allows it (raw HEVC: an Annex-B stream with no file box).

The SPIC paper codes the coarse image with BPG at QP 35 in 4:4:4 YCbCr.  BPG is an HEVC intra
frame in a small wrapper; ``hevc`` produces the same kind of frame with x265 through ``ffmpeg``
without the wrapper, and is the smallest codec available here at low rates.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .bitstream import BitstreamError, CodecUnavailableError, open_payload_image
from .payload_headers import (
    bpg_size,
    check_declared_size,
    check_heif_properties,
    check_isobmff_boxes,
    check_jpeg_markers,
    check_jxl_end,
    check_riff_chunks,
    hevc_size,
    jxl_size,
)
from .semantic import riff_strip, riff_wrap

_TOOL_TIMEOUT_S = 120
logger = logging.getLogger(__name__)

# The one default coarse codec (the paper codes the coarse image with BPG, i.e. HEVC intra, at QP 35) and
# what stands in for it when it is unavailable, best first.  Chosen by benchmarks/bench_coarse_fallback.py on
# CamVid test photographs: at HEVC QP 35's rate WebP keeps the most PSNR (30.5 / 31.4 dB at 64x128 / 24x32,
# HEVC 31.0 / 29.5), then JPEG XL (28.4 / 28.6), AVIF, HEIF and JPEG (the last three cannot go down to HEVC's
# rate at 24x32).  Each quality matches HEVC QP 35's size at 64x128, the coarse size of a 256x512 image.
DEFAULT_COARSE_CODEC = "hevc"
DEFAULT_COARSE_QUALITY = 35
COARSE_FALLBACKS: tuple[tuple[str, int], ...] = (("webp", 30), ("jxl", 32), ("avif", 34), ("heif", 26), ("jpeg", 13))


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a coarse image must be HxWx3 RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"a coarse image must be uint8, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"a coarse image must not be empty, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _check_shape(decoded: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    if decoded.shape != (height, width, 3):
        raise BitstreamError(
            f"{name} coarse payload decodes to shape {decoded.shape}, the header implies {(height, width, 3)}"
        )
    return np.ascontiguousarray(decoded, dtype=np.uint8)


class CoarseCodec(ABC):
    """A lossy codec for the coarse RGB image."""

    name: str = ""
    quality_help: str = ""
    quality_range: tuple[int, int] = (0, 100)
    higher_is_better: bool = True
    default_quality: int = 50

    def __init__(self, quality: int | float | None = None):
        quality = self.default_quality if quality is None else quality
        low, high = self.quality_range
        if not low <= quality <= high:
            raise ValueError(f"{self.name} quality must be in {low}..{high} ({self.quality_help}), got {quality}")
        self.quality = quality

    def __repr__(self) -> str:
        return f"{type(self).__name__}(quality={self.quality})"

    def check_available(self) -> None:
        """Raise :class:`CodecUnavailableError` (one line, saying how to get it) if this codec cannot run here."""

    @abstractmethod
    def encode(self, image: np.ndarray) -> bytes:
        """Code an RGB uint8 HxWx3 image."""

    @abstractmethod
    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        """Decode to RGB uint8 ``height x width x 3``; BitstreamError if the payload is unusable."""

    def round_trip(self, image: np.ndarray) -> np.ndarray:
        """What the receiver will see: ``decode(encode(image))``."""
        image = _check_rgb(image)
        return self.decode(self.encode(image), image.shape[0], image.shape[1])


# A decoder is an external process with its own bounds, so that what the payload parsers miss still cannot take
# the machine: address space (a fixed allowance for the binary, its libraries and threads, plus room for the
# frames a picture of the expected size needs) and CPU time.
_DECODER_BASE_BYTES = 768 << 20
_DECODER_BYTES_PER_PIXEL = 64
_DECODER_CPU_SECONDS = 30


def _decoder_limits(pixels: int) -> Callable[[], None]:
    """A ``preexec_fn`` that bounds a decoder's address space and CPU time (it only calls ``setrlimit``)."""
    address_space = _DECODER_BASE_BYTES + _DECODER_BYTES_PER_PIXEL * pixels

    def apply() -> None:
        import resource  # noqa: PLC0415  (POSIX only; preexec_fn runs only there)

        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (_DECODER_CPU_SECONDS, _DECODER_CPU_SECONDS + 1))

    return apply


def _run_tool(
    args: list[str], name: str, data: bytes | None = None, decoding: bool = False, pixels: int | None = None
) -> bytes:
    """Run a coding tool; with ``pixels`` (decoding), under :func:`_decoder_limits` and a shorter wall clock."""
    limits = None
    if pixels is not None and os.name == "posix":
        limits = _decoder_limits(pixels)
    timeout = _TOOL_TIMEOUT_S if pixels is None else 2 * _DECODER_CPU_SECONDS
    try:
        result = subprocess.run(args, input=data, capture_output=True, timeout=timeout, preexec_fn=limits)
    except subprocess.TimeoutExpired:
        raise (BitstreamError if decoding else RuntimeError)(f"{name} timed out") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"exit status {result.returncode}"
        if result.returncode < 0:
            detail = f"stopped by signal {-result.returncode}, past its memory or time bound"
        if decoding:
            raise BitstreamError(f"{name} coarse payload cannot be decoded ({detail})")
        raise RuntimeError(f"{name} failed: {detail}")
    return result.stdout


def _require(binary: str, codec: str, how: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise CodecUnavailableError(f"the {codec} coarse codec needs `{binary}` on PATH; {how}")
    return path


_FFMPEG_PATH: str | None = None


def _has_libx265(binary: str) -> bool:
    try:
        result = subprocess.run([binary, "-hide_banner", "-encoders"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and b"libx265" in result.stdout


def find_ffmpeg() -> str:
    """An ``ffmpeg`` with libx265: the one on PATH if it has it, else the binary of ``imageio-ffmpeg``.

    ``imageio-ffmpeg`` is a dependency, so a fresh install codes HEVC without system packages; a
    system ffmpeg is preferred when it can (distribution builds are usually newer).
    """
    global _FFMPEG_PATH
    if _FFMPEG_PATH is not None:
        return _FFMPEG_PATH
    candidates = [shutil.which("ffmpeg")]
    try:
        import imageio_ffmpeg  # noqa: PLC0415

        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    for binary in candidates:
        if binary and _has_libx265(binary):
            _FFMPEG_PATH = binary
            return binary
    raise CodecUnavailableError(
        "the hevc coarse codec needs ffmpeg with libx265: `pip install imageio-ffmpeg` (a dependency of "
        "spic-diffusers) or a system ffmpeg built with libx265"
    )


class HEVCCodec(CoarseCodec):
    """Raw HEVC intra (BPG's core) via ``ffmpeg``/libx265, as an Annex-B stream.

    ``chroma`` is ``"444"`` (the SPIC paper's BPG setting, the default) or ``"420"`` (BPG's own
    default: a quarter of the chroma samples).  The payload's sequence parameter set records it
    (``chroma_format_idc``), so the decoder needs no flag of its own.

    x265's version SEI, hash SEI and access-unit delimiters are switched off, so the payload is
    just the parameter sets and one intra slice.  Sides are padded to an even length of at
    least 16 (x265's minimum) by repeating the last row/column, and cropped back on decoding
    (the container holds the true size).
    """

    name = "hevc"
    quality_help = "x265 QP, 0 (best) to 51 (smallest); 35 is the SPIC paper's BPG setting"
    quality_range = (0, 51)
    higher_is_better = False
    default_quality = 35
    chroma_formats = ("444", "420")

    def __init__(self, quality: int | float | None = None, chroma: str = "444"):
        super().__init__(quality)
        if str(chroma) not in self.chroma_formats:
            raise ValueError(f"hevc chroma must be one of {self.chroma_formats}, got {chroma!r}")
        self.chroma = str(chroma)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(quality={self.quality}, chroma={self.chroma!r})"

    @staticmethod
    def padded_size(height: int, width: int) -> tuple[int, int]:
        return max(16, height + height % 2), max(16, width + width % 2)

    def _ffmpeg(self) -> str:
        return find_ffmpeg()

    def check_available(self) -> None:
        find_ffmpeg()

    def encode(self, image: np.ndarray) -> bytes:
        image = _check_rgb(image)
        height, width = image.shape[:2]
        padded_h, padded_w = self.padded_size(height, width)
        padded = np.pad(image, ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode="edge")
        params = f"qp={int(round(self.quality))}:keyint=1:info=0:hash=0:aud=0:repeat-headers=0:log-level=error"
        args = [
            self._ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{padded.shape[1]}x{padded.shape[0]}", "-i", "pipe:0",
            "-frames:v", "1", "-c:v", "libx265", "-preset", "slow", "-x265-params", params,
            "-pix_fmt", f"yuv{self.chroma}p", "-bitexact", "-f", "hevc", "pipe:1",
        ]  # fmt: skip
        return _run_tool(args, "ffmpeg (libx265)", padded.tobytes())

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        if not data:
            raise BitstreamError("HEVC coarse payload is empty")
        padded_h, padded_w = self.padded_size(height, width)
        # The SPS states the picture size: refuse a mismatch before ffmpeg allocates anything.
        check_declared_size(hevc_size(bytes(data), "HEVC coarse"), padded_h, padded_w, "HEVC coarse")
        # ffmpeg allocates aligned buffers: allow margin, but nothing near a hostile SPS's size.
        max_pixels = 4 * (padded_h + 64) * (padded_w + 64)
        args = [
            self._ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin",
            "-threads", "1", "-max_pixels", str(max_pixels), "-f", "hevc", "-i", "pipe:0",
            "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        ]  # fmt: skip
        raw = _run_tool(args, "ffmpeg (HEVC)", bytes(data), decoding=True, pixels=max_pixels)
        if len(raw) != padded_h * padded_w * 3:
            raise BitstreamError(
                f"HEVC coarse payload decodes to {len(raw)} bytes, expected a {padded_h}x{padded_w} RGB frame"
            )
        frame = np.frombuffer(raw, dtype=np.uint8).reshape(padded_h, padded_w, 3)
        return np.ascontiguousarray(frame[:height, :width])


class BPGCodec(CoarseCodec):
    """BPG via Fabrice Bellard's ``bpgenc``/``bpgdec``, as in the SPIC paper (4:4:4 YCbCr, QP 35)."""

    name = "bpg"
    quality_help = "BPG quantiser (-q), 0 (best) to 51 (smallest); the SPIC paper uses 35"
    quality_range = (0, 51)
    higher_is_better = False
    default_quality = 35

    @staticmethod
    def _tool(binary: str) -> str:
        return _require(
            binary,
            "bpg",
            "BPG is not packaged on PyPI: build libbpg from https://bellard.org/bpg/ (or install your "
            "distribution's `libbpg` package), or use the 'hevc' codec, which codes the same HEVC intra frame "
            "through ffmpeg",
        )

    def check_available(self) -> None:
        self._tool("bpgenc")
        self._tool("bpgdec")

    def encode(self, image: np.ndarray) -> bytes:
        image = _check_rgb(image)
        encoder = self._tool("bpgenc")
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "coarse.png"), Path(tmp, "coarse.bpg")
            Image.fromarray(image).save(src)
            args = [encoder, "-c", "ycbcr", "-f", "444", "-q", str(int(round(self.quality))), "-o", str(dst), str(src)]
            _run_tool(args, "bpgenc")
            return dst.read_bytes()

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        decoder = self._tool("bpgdec")
        check_declared_size(bpg_size(bytes(data), "BPG coarse"), height, width, "BPG coarse")
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "coarse.bpg"), Path(tmp, "coarse.png")
            src.write_bytes(bytes(data))
            _run_tool([decoder, "-o", str(dst), str(src)], "bpgdec", decoding=True, pixels=4 * height * width)
            if not dst.exists():
                raise BitstreamError("BPG coarse payload cannot be decoded")
            image = open_payload_image(dst.read_bytes(), "BPG coarse", height, width)
        return _check_shape(np.asarray(image.convert("RGB")), height, width, "BPG")


class _PillowCodec(CoarseCodec):
    """A codec Pillow (or a Pillow plugin) reads and writes."""

    pil_format = ""
    display_name = ""
    save_options: dict = {}

    def _register(self) -> None:
        """Import the plugin that teaches Pillow this format, if one is needed."""

    def check_payload(self, data: bytes, height: int, width: int) -> None:
        """Refuse trailing data and sizes Pillow cannot read lazily, before anything is decoded."""

    def check_payload_end(self, data: bytes) -> None:
        """Refuse trailing data only a decoder can find (after the declared size has been checked)."""

    def check_available(self) -> None:
        self._register()
        Image.init()
        if self.pil_format not in Image.SAVE or self.pil_format not in Image.OPEN:
            raise CodecUnavailableError(
                f"the {self.name} coarse codec needs a Pillow built with {self.display_name} support"
            )

    def encode(self, image: np.ndarray) -> bytes:
        image = _check_rgb(image)
        self.check_available()
        buffer = io.BytesIO()
        options = dict(self.save_options)
        options["quality"] = int(round(self.quality))
        Image.fromarray(image).save(buffer, format=self.pil_format, **options)
        return buffer.getvalue()

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        if not data:
            raise BitstreamError(f"{self.display_name} coarse payload is empty")
        self._register()
        self.check_payload(bytes(data), height, width)
        image = open_payload_image(data, f"{self.display_name} coarse", height, width)
        self.check_payload_end(bytes(data))
        try:
            array = np.asarray(image.convert("RGB"))
        except Exception as err:
            raise BitstreamError(f"{self.display_name} coarse payload cannot be decoded ({err})") from None
        return _check_shape(array, height, width, self.display_name)


class HEIFCodec(_PillowCodec):
    """HEIF (HEVC in an ISO-BMFF box) through ``pillow-heif``, 4:4:4; the box costs ~200 bytes."""

    name = "heif"
    display_name = "HEIF"
    pil_format = "HEIF"
    quality_help = "pillow-heif quality, 0 (smallest) to 100 (best)"
    default_quality = 20
    save_options = {"chroma": 444}

    def _register(self) -> None:
        try:
            import pillow_heif
        except ImportError:
            raise CodecUnavailableError("the heif coarse codec needs `pip install pillow-heif`") from None
        pillow_heif.register_heif_opener()

    def check_payload(self, data: bytes, height: int, width: int) -> None:
        check_isobmff_boxes(data, "HEIF coarse")
        check_heif_properties(data, "HEIF coarse", height, width)


class JXLCodec(_PillowCodec):
    """JPEG XL (bare codestream) through ``pillow-jxl-plugin``."""

    name = "jxl"
    display_name = "JPEG XL"
    pil_format = "JXL"
    quality_help = "JPEG XL quality, 0 (smallest) to 100 (best)"
    default_quality = 20
    save_options = {"effort": 9}

    def _register(self) -> None:
        try:
            import pillow_jxl  # noqa: F401
        except ImportError:
            raise CodecUnavailableError("the jxl coarse codec needs `pip install pillow-jxl-plugin`") from None

    def check_payload(self, data: bytes, height: int, width: int) -> None:
        # pillow-jxl-plugin decodes the whole image on open: read the size from the codestream first.
        check_declared_size(jxl_size(data, "JPEG XL coarse"), height, width, "JPEG XL coarse")

    def check_payload_end(self, data: bytes) -> None:
        check_jxl_end(data, "JPEG XL coarse")


class WebPCodec(_PillowCodec):
    """Lossy WebP through Pillow (4:2:0, as WebP always is), stored without its 12-byte RIFF header."""

    name = "webp"
    display_name = "WebP"
    pil_format = "WEBP"
    quality_help = "WebP quality, 0 (smallest) to 100 (best)"
    default_quality = 20
    save_options = {"method": 6}

    def encode(self, image: np.ndarray) -> bytes:
        return riff_strip(super().encode(image))

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        if not data:
            raise BitstreamError("WebP coarse payload is empty")
        check_riff_chunks(bytes(data), "WebP coarse")
        return super().decode(riff_wrap(bytes(data)), height, width)


class AVIFCodec(_PillowCodec):
    """AVIF (AV1 intra) through Pillow, 4:4:4."""

    name = "avif"
    display_name = "AVIF"
    pil_format = "AVIF"
    quality_help = "AVIF quality, 0 (smallest) to 100 (best)"
    default_quality = 20
    save_options = {"subsampling": "4:4:4", "speed": 4}

    def check_payload(self, data: bytes, height: int, width: int) -> None:
        check_isobmff_boxes(data, "AVIF coarse")
        check_heif_properties(data, "AVIF coarse", height, width)


class JPEGCodec(_PillowCodec):
    """Baseline JPEG through Pillow, 4:4:4, with optimised Huffman tables; stored whole."""

    name = "jpeg"
    display_name = "JPEG"
    pil_format = "JPEG"
    quality_help = "JPEG quality, 1 (smallest) to 95 (best)"
    quality_range = (1, 95)
    default_quality = 20
    save_options = {"subsampling": 0, "optimize": True}

    def check_payload(self, data: bytes, height: int, width: int) -> None:
        check_jpeg_markers(data, "JPEG coarse")


COARSE_CODECS: dict[str, type[CoarseCodec]] = {
    "hevc": HEVCCodec,
    "bpg": BPGCodec,
    "heif": HEIFCodec,
    "jxl": JXLCodec,
    "webp": WebPCodec,
    "avif": AVIFCodec,
    "jpeg": JPEGCodec,
}


def get_coarse_codec(name: str, quality: int | float | None = None, chroma: str | None = None) -> CoarseCodec:
    """Instantiate a coarse codec by name ('hevc', 'bpg', 'heif', 'jxl', 'webp', 'avif', 'jpeg').

    ``chroma`` ('444' or '420') is an option of the ``hevc`` codec only; None keeps its default.
    """
    if name not in COARSE_CODECS:
        raise ValueError(f"unknown coarse codec {name!r}; choose from {sorted(COARSE_CODECS)}")
    if chroma is None:
        return COARSE_CODECS[name](quality)
    if not hasattr(COARSE_CODECS[name], "chroma_formats"):
        raise ValueError(f"the {name} coarse codec has no chroma option (only hevc has: '444' or '420')")
    return COARSE_CODECS[name](quality, chroma=chroma)


def select_coarse_codec(
    name: str | None = None,
    quality: int | float | None = None,
    *,
    chroma: str | None = None,
    fallback: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> CoarseCodec:
    """The coarse codec to use: ``name`` at ``quality``, or the default (HEVC at QP 35) when ``name`` is None.

    With ``fallback`` (the default when ``name`` is None) an unavailable codec is replaced by the first
    available one of :data:`COARSE_FALLBACKS` at its listed quality, and ``log`` (default: a logging
    warning) says so; without it an unavailable codec raises :class:`CodecUnavailableError` here, before
    any coding.
    """
    if name is None:
        name = DEFAULT_COARSE_CODEC
        quality = DEFAULT_COARSE_QUALITY if quality is None else quality
        fallback = True if fallback is None else fallback
    codec = get_coarse_codec(name, quality, chroma=chroma)
    try:
        codec.check_available()
        return codec
    except CodecUnavailableError as err:
        if not fallback:
            raise
        reason = err
    for other, other_quality in COARSE_FALLBACKS:
        if other == name:
            continue
        candidate = get_coarse_codec(other, other_quality)
        try:
            candidate.check_available()
        except CodecUnavailableError:
            continue
        (log or logger.warning)(
            f"coarse codec {name!r} is unavailable ({reason}); using {other!r} at quality {other_quality} "
            f"(fallback order: {', '.join(n for n, _ in COARSE_FALLBACKS)})"
        )
        return candidate
    raise CodecUnavailableError(f"no coarse codec is available: {reason}")


def coarse_size(height: int, width: int, downsample: int) -> tuple[int, int]:
    """Size of the coarse image: ``ceil(size / downsample)`` per side, so no input pixel is dropped."""
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    return -(-height // downsample), -(-width // downsample)


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-average an RGB (or grey) uint8 image by ``factor``, rounding to nearest.

    Exactly the mean of each ``factor x factor`` block when the size is divisible; otherwise the
    adaptive-average-pool windows ``[floor(i*H/h), ceil((i+1)*H/h))`` (PyTorch's ``area``
    interpolation to ``coarse_size``).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(
            f"area_downsample expects a non-empty uint8 HxW or HxWxC image, got {image.dtype} {image.shape}"
        )
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"downsample factor must be a positive integer, got {factor!r}")
    height, width = image.shape[:2]
    out_h, out_w = coarse_size(height, width, int(factor))
    data = image if image.ndim == 3 else image[:, :, None]
    y0 = (np.arange(out_h) * height) // out_h
    y1 = -((-(np.arange(out_h) + 1) * height) // out_h)
    x0 = (np.arange(out_w) * width) // out_w
    x1 = -((-(np.arange(out_w) + 1) * width) // out_w)
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).astype(np.int64)
    out = np.empty((out_h, out_w, data.shape[2]), dtype=np.uint8)
    # Exact integer window sums, one channel at a time: memory stays at 4 bytes per input pixel.
    for c in range(data.shape[2]):
        rows = np.zeros((height + 1, width), dtype=np.int32)
        np.cumsum(data[:, :, c], axis=0, dtype=np.int32, out=rows[1:])
        band = (rows[y1] - rows[y0]).astype(np.int64)  # out_h x width
        del rows
        cols = np.zeros((out_h, width + 1), dtype=np.int64)
        np.cumsum(band, axis=1, out=cols[:, 1:])
        total = cols[:, x1] - cols[:, x0]
        out[:, :, c] = (2 * total + area) // (2 * area)  # round half up, as floor(mean + 0.5)
    return out[:, :, 0] if image.ndim == 2 else out


def make_coarse(
    image: np.ndarray,
    downsample: int = 4,
    codec: str | CoarseCodec | None = None,
    quality: int | float | None = None,
) -> np.ndarray:
    """The coarse image the receiver sees: area downsample, then a lossy round trip.

    ``codec`` is a name, a :class:`CoarseCodec`, or None for the default (see :func:`select_coarse_codec`).
    Used by the transmitter's tests and by training for on-the-fly coarse images.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"make_coarse expects an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if not isinstance(codec, CoarseCodec):
        codec = select_coarse_codec(codec, quality) if codec is None else get_coarse_codec(codec, quality)
    return codec.round_trip(area_downsample(image, downsample))
