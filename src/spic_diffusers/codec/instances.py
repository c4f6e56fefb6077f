"""Instance information in the stream: the instance-edge map, coded losslessly by the map coder.

Models with an instance-edge channel see ``image_processing.instance_edges(instance_ids)``: True where a pixel's
instance id differs from one of its 4 neighbours.  Every class boundary of the semantic map is
also an instance boundary almost everywhere, so the stream holds only the difference: the edge
map XOR the semantic map's own edges, a sparse 0/1 map (boundaries between two cars, two people,
...), which the map coder codes in a few bytes.  The receiver adds the semantic edges back.
"""

from __future__ import annotations

import numpy as np

from .bitstream import BitstreamError


def _edges(labels: np.ndarray) -> np.ndarray:
    from ..image_processing import instance_edges  # the one definition the model's edge channel uses

    return instance_edges(np.asarray(labels))


def check_instance_map(instance_map, shape: tuple[int, int]) -> np.ndarray:
    """An instance-id map (any integers, HxW of the image's size) as an array; ValueError otherwise."""
    array = np.asarray(instance_map)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"instance_map must be an HxW integer array of instance ids, got {array.dtype} {array.shape}")
    if array.shape != tuple(shape):
        raise ValueError(f"instance_map is {array.shape[0]}x{array.shape[1]} but the image is {shape[0]}x{shape[1]}")
    return array


def encode_instance_edges(instance_map: np.ndarray, labels: np.ndarray, coder) -> bytes:
    """The instance payload: ``instance_edges(instance_map) XOR instance_edges(labels)`` through ``coder``."""
    residual = _edges(instance_map) ^ _edges(labels)
    return coder.encode(residual.astype(np.uint8))


def decode_instance_edges(payload: bytes, labels: np.ndarray, coder) -> np.ndarray:
    """Inverse of :func:`encode_instance_edges`, given the decoded semantic map; bool HxW."""
    residual = coder.decode(payload, *labels.shape)
    if residual.max() > 1:
        raise BitstreamError("instance payload holds values other than 0 and 1")
    return _edges(labels) ^ residual.astype(bool)
