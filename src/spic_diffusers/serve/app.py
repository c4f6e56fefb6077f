"""The page of `spic serve`: upload a photograph, see SPIC beside HEVC and WebP at the same byte count.

Only the layout lives here; the work is :func:`.comparison.compare`. Images are shown as PNG, never re-coded
lossily by the page, so what is seen is what each codec produced. Errors reach the page as one sentence
(``gradio.Error``), never as a stack trace; the page loads nothing from the internet.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .comparison import (
    DECODERS,
    DEFAULT_TARGET_BPP,
    DEFAULT_UPLOAD_PIXELS,
    RATE_MODES,
    Comparison,
    Models,
    RateSetting,
    ServeError,
    compare,
)

TITLE = "SPIC: semantic-preserving image coding"
INTRO = (
    "Upload a street photograph (and, optionally, its label map in train ids). SPIC sends the map losslessly "
    "and a coarse lossy image in one stream; a diffusion model decodes them. HEVC and WebP code the whole "
    "photograph at the same byte count. Photographs are cropped to the model's aspect ratio and resized to "
    "its size, {height}x{width}."
)
PANELS = (("original", "original"), ("map", "transmitted map"), ("coarse", "coarse image, upsampled"),
          ("spic", "SPIC"), ("hevc", "HEVC, same bytes"), ("webp", "WebP, same bytes"))  # fmt: skip


class ServeUnavailableError(RuntimeError):
    """gradio is not installed: `spic serve` needs the ``serve`` extra."""


def import_gradio():
    """gradio, or one sentence saying how to install it (the library itself does not need it)."""
    try:
        import gradio
    except ImportError:
        raise ServeUnavailableError(
            'spic serve needs gradio: pip install "spic-diffusers[serve]" (or pip install gradio)'
        ) from None
    return gradio


def example_files() -> list[list[str]]:
    """The shipped CamVid frames with their label maps, as [photograph, map] rows for the page's examples."""
    from ..demo import DEMO_FRAMES, _asset

    folder = _asset("camvid_frames")
    return [[str(folder / f"{name}.png"), str(folder / f"{name}_labelTrainIds.png")] for name in DEMO_FRAMES]


def _number(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def figures_markdown(result: Comparison) -> str:
    """The page's figures: the SPIC rate split, then one row per candidate at that rate."""
    rate = result.rate
    quality = "default" if rate["coarse_quality"] is None else f"{rate['coarse_quality']:g}"
    lines = [
        f"**SPIC stream**: {rate['bytes']['total']} bytes = {rate['bpp']['total']:.4f} bpp "
        f"for {result.height}x{result.width} pixels: map {rate['bytes']['map']} B ({rate['bpp']['map']:.4f} bpp), "
        f"coarse image {rate['bytes']['coarse']} B ({rate['bpp']['coarse']:.4f} bpp; {rate['coarse_codec']} "
        f"quality {quality}, downsampling {rate['downsample']}), header {rate['bytes']['header']} B.",
        "",
        "| candidate | bytes | bpp | PSNR [dB] | boundary PSNR [dB] | mIoU | decode [s] |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result.candidates.items():
        extra = f" (quality {row['quality']})" if "quality" in row else ""
        lines.append(
            f"| {name}{extra} | {row['bytes']} | {row['bpp']:.4f} | {_number(row.get('psnr'), '{:.2f}')} | "
            f"{_number(row.get('boundary_psnr'), '{:.2f}')} | {_number(row.get('miou'), '{:.3f}')} | "
            f"{_number(row.get('decode_seconds'), '{:.2f}')} |"
        )
    decoder = result.decoder
    lines += [
        "",
        f"Decoder: {decoder['name']}, {decoder['steps']} steps, guidance {decoder['guidance_scale']:g}; "
        f"decoded in {result.seconds['decode']:.2f} s. Boundary PSNR counts pixels within 2 px of a class edge; "
        f"mIoU is the shipped segmenter's map of each candidate against the transmitted map "
        f"(on the original photograph: {rate['original_miou']:.3f}).",
    ]
    return "\n".join(lines)


def status_markdown(result: Comparison) -> str:
    """Where the map came from, and anything the page had to do differently from what was asked."""
    lines = [f"**Label map**: {result.map_source}."]
    lines += [f"**Note**: {note}" for note in result.notes]
    return "\n\n".join(lines)


def expected_times_markdown(models: Models) -> str:
    """Each decoder's expected time, measured on this machine, shown before anyone presses the button."""
    parts = [f"{DECODERS[key]}: about {models.expected_seconds(key):.1f} s" for key in DECODERS]
    return "**Expected decode time here**: " + "; ".join(parts) + "."


def build_app(models: Models, max_pixels: int = DEFAULT_UPLOAD_PIXELS, output_root: str | os.PathLike | None = None):
    """The page as a ``gradio.Blocks``; ``launch()`` it, or mount it elsewhere."""
    gr = import_gradio()
    height, width = models.size
    decoder_choices = [(label, key) for key, label in DECODERS.items()]
    expected = expected_times_markdown(models)

    def run(image_file, map_file, mode, target_bpp, coarse_quality, downsample, decoder, progress=gr.Progress()):
        rate = RateSetting(mode=mode, target_bpp=target_bpp, coarse_quality=coarse_quality,
                           downsample=int(downsample) if downsample not in (None, "") else 4)  # fmt: skip
        try:
            result = compare(models, image_file, map_file or None, rate, decoder or "fast", max_pixels=max_pixels,
                             output_dir=_request_folder(output_root),
                             progress=lambda fraction, what: progress(fraction, desc=what))  # fmt: skip
        except ServeError as err:
            raise _page_error(gr, str(err)) from None
        except Exception as err:  # a failure of the codec or model: one line on the page, not a traceback
            raise _page_error(gr, f"the comparison failed: {type(err).__name__}: {err}") from None
        images = [result.images.get(key) for key, _ in PANELS]
        return (*images, figures_markdown(result), status_markdown(result), str(result.stream_path),
                expected_times_markdown(models))  # fmt: skip

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\n\n{INTRO.format(height=height, width=width)}")
        with gr.Row():
            with gr.Column(scale=1):
                # No file_types: the page's own checks say what is wrong with a file, in its words.
                image_in = gr.File(label="photograph", type="filepath", elem_id="photo")
                map_in = gr.File(label="label map (optional): train ids, one channel", type="filepath",
                                 elem_id="label-map")  # fmt: skip
                gr.Examples(example_files(), inputs=[image_in, map_in], label="examples: CamVid test frames")
            with gr.Column(scale=1):
                mode = gr.Radio(list(RATE_MODES), value=RateSetting().mode, label="rate setting")
                target_bpp = gr.Number(DEFAULT_TARGET_BPP, label="target rate [bpp] (for 'target bpp')", minimum=0)
                quality = gr.Slider(0, 51, value=35, step=1, label="coarse quality: HEVC QP, lower is better "
                                    "(for 'coarse quality')")  # fmt: skip
                downsample = gr.Dropdown([2, 4, 8], value=4, label="coarse downsampling")
                decoder = gr.Radio(decoder_choices, value="fast", label="decoder")
                times = gr.Markdown(expected, elem_id="expected-times")
                button = gr.Button("code and decode", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            outputs = [_panel(gr, key, label) for key, label in PANELS[:3]]
        with gr.Row():
            outputs += [_panel(gr, key, label) for key, label in PANELS[3:]]
        figures = gr.Markdown(elem_id="figures")
        stream_out = gr.File(label="the .spic stream", elem_id="stream")
        button.click(run, [image_in, map_in, mode, target_bpp, quality, downsample, decoder],
                     [*outputs, figures, status, stream_out, times], api_name="compare",
                     show_progress="full")  # fmt: skip
    return app


def _panel(gr, key: str, label: str):
    """One output picture, as PNG (the page must not re-code what a codec produced)."""
    return gr.Image(label=label, type="numpy", format="png", interactive=False, elem_id=f"out-{key}",
                    elem_classes=["spic-panel"])  # fmt: skip


# Small pictures are enlarged with visible pixels: smoothing would hide what each codec did.
CSS = """
.spic-panel .image-container, .spic-panel button, .spic-panel .image-frame { width: 100%; height: auto; }
.spic-panel img { width: 100%; height: auto; max-height: 420px; object-fit: contain; image-rendering: pixelated; }
"""


def _page_error(gr, message: str):
    """One sentence on the page; escaped, since the page renders it as HTML and it may quote a file name."""
    import html

    return gr.Error(html.escape(message), duration=None, title="Cannot do that", print_exception=False)


def _request_folder(root: str | os.PathLike | None) -> Path | None:
    """A fresh folder per request for the stream (None: a temporary folder gradio may serve)."""
    if root is None:
        return None
    import tempfile

    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))


def theme():
    """The default look with system fonts: the page must not fetch fonts from the internet."""
    gr = import_gradio()
    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=fonts, font_mono=["ui-monospace", "monospace"])


def serve(host: str = "127.0.0.1", port: int | None = None, *, threads: int | None = None,
          max_pixels: int = DEFAULT_UPLOAD_PIXELS, open_browser: bool = False, block: bool = True):
    """Load the shipped models and serve the page; returns the app (``block=False`` keeps it running in the
    background, e.g. for tests)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import_gradio()
    app = build_app(Models(threads=threads), max_pixels=max_pixels)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, inbrowser=open_browser, prevent_thread_lock=not block,
               theme=theme(), css=CSS, share=False, show_error=False, quiet=not block)  # fmt: skip
    return app
