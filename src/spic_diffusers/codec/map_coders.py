"""The registry of lossless map coders, by the names streams and command lines use.

It sits above the coder modules (`semantic`: the row coder and the image-format coders; `map_context`: the
pixel-wise coder; `map_mix`: the binary context-mixing coder; both build on `semantic`), so none imports the
registry.
"""

from __future__ import annotations

from .map_context import PixelContextMapCoder
from .map_mix import MixMapCoder
from .semantic import ContextMapCoder, FLIFMapCoder, JXLMapCoder, MapCoder, PNGMapCoder, WebPMapCoder

# The map coder every entry point uses unless told otherwise (the smallest and fastest on real label maps).
DEFAULT_MAP_CODER = "mix"

MAP_CODERS: dict[str, type[MapCoder]] = {
    "context": ContextMapCoder,
    "context2": PixelContextMapCoder,
    "mix": MixMapCoder,
    "png": PNGMapCoder,
    "webp": WebPMapCoder,
    "jxl": JXLMapCoder,
    "flif": FLIFMapCoder,
}


def get_map_coder(name: str, **kwargs) -> MapCoder:
    """Instantiate a map coder by name ('context', 'context2', 'mix', 'png', 'webp', 'jxl', 'flif')."""
    if name not in MAP_CODERS:
        raise ValueError(f"unknown map coder {name!r}; choose from {sorted(MAP_CODERS)}")
    return MAP_CODERS[name](**kwargs)
