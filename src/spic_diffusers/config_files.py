"""Small JSON configuration files read before anything is built from them (model folders, segmenters).

One reader for every folder the package loads, so a hostile or damaged file gives the same one-line error
whichever loader meets it.
"""

from __future__ import annotations

import json
import os
from typing import Any

MAX_CONFIG_BYTES = 1 << 20


class ModelFolderError(ValueError):
    """A model folder's JSON says something no model of the package can be built from."""


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A small JSON object from ``path``; anything else is a :class:`ModelFolderError` naming the file."""
    path = os.fspath(path)
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise ModelFolderError(f"{path}: {what} is larger than {MAX_CONFIG_BYTES} bytes")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: cannot read {what} ({err})") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


LOAD_PATH_KEY = "_name_or_path"


def without_load_path(config_json: str) -> str:
    """A diffusers config's JSON without ``_name_or_path``: diffusers records there where an object was loaded from,
    so a folder saved from a loaded model would carry the path of the machine that wrote it."""
    config = json.loads(config_json)
    config.pop(LOAD_PATH_KEY, None)
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
