"""A folder that runs `spic serve`'s page as a Hugging Face Space, and its upload.

The Space carries the package itself (code and shipped models) beside ``app.py``, so it runs the same page
with the same models whether or not the package is on PyPI; ``requirements.txt`` lists the package's own
dependencies and the README's metadata asks for the gradio the page was written against. The upload goes
through :func:`spic_diffusers.hub.push_folder_to_hub`, the path the models take.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata, resources
from pathlib import Path

SPACE_FILES = ("app.py", "requirements.txt", "README.md")
APP_PY = '''"""SPIC beside HEVC and WebP at the same byte count: the page of `spic serve`, as a Hugging Face Space."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # the package this folder carries

from spic_diffusers.serve.app import serve  # noqa: E402

if __name__ == "__main__":
    # A Space listens on 0.0.0.0:7860 (gradio's default port; GRADIO_SERVER_PORT changes it).
    serve(host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
'''
README = """---
title: SPIC semantic-preserving image coding
emoji: 🛣️
colorFrom: indigo
colorTo: green
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
license: {license}
short_description: SPIC beside HEVC and WebP at the same byte count
tags:
  - image-compression
  - semantic-communication
  - diffusion
---

# SPIC: semantic-preserving image coding

Upload a street photograph (optionally with its label map in train ids; otherwise the shipped segmenter
predicts one). SPIC sends the map losslessly and a coarse lossy image in one stream, and a conditional
diffusion model decodes them. The page shows the reconstruction beside HEVC and WebP coding the whole
photograph at the same byte count, with the rate split into map and coarse image, PSNR, boundary PSNR and
the segmenter's mIoU for each, and the `.spic` stream to download.

This is the page `spic serve` opens locally (package `spic-diffusers`, extra `serve`); `src/` holds the
package with its shipped models. The models were trained on CamVid, whose terms allow non-commercial use.
"""


class SpaceError(ValueError):
    """The Space folder cannot be written where asked."""


def space_requirements() -> list[str]:
    """The package's own dependencies (no extras), from its installed metadata; gradio comes from the Space's SDK."""
    try:
        requires = metadata.requires("spic-diffusers") or []
    except metadata.PackageNotFoundError:
        raise SpaceError("spic-diffusers is not installed (pip install -e .): its dependencies are unknown") from None
    return [r for r in requires if "extra ==" not in r and not r.lower().startswith("gradio")]


def write_space(output_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the Space folder: app.py, requirements.txt, README.md (Space metadata) and src/spic_diffusers."""
    import gradio

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SpaceError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SpaceError(f"{out} is not empty; pass --overwrite to replace its contents")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    package = Path(str(resources.files("spic_diffusers")))
    shutil.copytree(package, out / "src" / "spic_diffusers",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    (out / "app.py").write_text(APP_PY, encoding="utf-8")
    (out / "requirements.txt").write_text("\n".join(space_requirements()) + "\n", encoding="utf-8")
    (out / "README.md").write_text(README.format(gradio_version=gradio.__version__, license="cc-by-nc-4.0"),
                                   encoding="utf-8")  # fmt: skip
    return out


def push_space(folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a folder written by :func:`write_space` as the gradio Space ``repo_id``; returns its URL."""
    from ..hub import push_folder_to_hub

    missing = [name for name in SPACE_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise SpaceError(f"{folder} is not a Space folder: it lacks {', '.join(missing)}")
    return push_folder_to_hub(folder, repo_id, private=private, token=token, repo_type="space",
                              space_sdk="gradio", commit_message="Upload the SPIC demo page")  # fmt: skip
