"""The output folder and its per-image records: one JSON file per (kind, setting, image), so runs resume."""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .settings import EvalConfig, EvaluationError, digest

RESULTS_MARKER = "spic_eval.json"


def safe_name(text: str) -> str:
    """A file-name-safe form of ``text`` (with a checksum when characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    return safe if safe == text else f"{safe[:80]}-{zlib.crc32(text.encode()):08x}"


def check_output_dir(config: EvalConfig) -> Path:
    """Refuse a non-folder, or a non-empty folder that this tool did not write (reads only)."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / RESULTS_MARKER).is_file() and not config.force:
        raise EvaluationError(
            f"output folder {out} is not empty and holds no {RESULTS_MARKER}; pass --overwrite to use it"
        )
    return out


def prepare_output_dir(config: EvalConfig) -> Path:
    """Create or reuse the output folder; refuse a non-empty folder that this tool did not write."""
    out = check_output_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_MARKER).write_text(json.dumps({"identity": config.identity()}, indent=2))
    return out


def json_default(value: Any):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite(value: Any) -> Any:
    """Non-finite floats -> None, so the JSON outputs stay standard JSON (no NaN/Infinity tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class RecordStore:
    """Per-image records and images under one output folder, keyed by the run's identity."""

    def __init__(self, out: Path, identity: dict[str, Any], force: bool = False):
        self.out = Path(out)
        self.identity = identity
        self.force = force

    def path(self, kind: str, key_payload: Any, image_id: str) -> Path:
        key = digest({"identity": self.identity, "kind": kind, "key": key_payload})
        return self.out / "records" / f"{kind}-{key}" / f"{safe_name(image_id)}.json"

    def load(self, path: Path) -> dict | None:
        """The stored record at ``path``; None when there is none, it is half-written, or records are overwritten."""
        if path.is_file() and not self.force:
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # a half-written record from an interrupted run: recompute it
        return None

    def load_or_compute(self, path: Path, compute: Callable[[], dict]) -> dict:
        record = self.load(path)
        if record is not None:
            return record
        record = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1, default=json_default))
        os.replace(tmp, path)
        return record

    def save_png(self, path: Path, image: np.ndarray) -> str:
        """Write an image under the output folder; records keep the path relative to it (folders can move)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        return path.relative_to(self.out).as_posix()

    def load_rgb(self, relative: str) -> np.ndarray:
        return np.asarray(Image.open(self.out / relative).convert("RGB"), dtype=np.uint8)

    def features(self, cache: Path, image: Callable[[], np.ndarray], extract: Callable[[np.ndarray], np.ndarray]):
        """Features of one image, cached as ``.npy`` so that resumed runs skip the network."""
        if cache.is_file() and not self.force:
            return np.load(cache)
        features = extract(image())
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, features)
        os.replace(tmp, cache)
        return features
