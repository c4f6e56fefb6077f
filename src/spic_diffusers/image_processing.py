"""Turning user inputs (PIL / numpy / torch) into the tensors SPIC's model takes, with clear errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from .labels import IGNORE_INDEX
from .sizes import SizeLike, as_hw



def upsample_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic upsampling of a decoded coarse image: what a receiver without a diffusion model shows."""
    return np.asarray(PIL.Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((width, height),
                                                                                    PIL.Image.BICUBIC))


def resize_image(image: np.ndarray | PIL.Image.Image, size: SizeLike) -> np.ndarray:
    """Resize an RGB image to (H, W): halve with a box filter while >= 2x the target, then bicubic.

    This is how guided-diffusion (and so the SPIC paper) resizes its training images.
    """
    height, width = as_hw(size)
    pil = image if isinstance(image, PIL.Image.Image) else PIL.Image.fromarray(np.asarray(image, dtype=np.uint8))
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    while pil.width >= 2 * width and pil.height >= 2 * height:
        pil = pil.resize((pil.width // 2, pil.height // 2), resample=PIL.Image.BOX)
    if pil.size != (width, height):
        pil = pil.resize((width, height), resample=PIL.Image.BICUBIC)
    return np.asarray(pil)


def resize_map(array: np.ndarray, size: SizeLike) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map (any integer dtype), sampling pixel centres like PIL."""
    height, width = as_hw(size)
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"maps must be 2-D, got shape {array.shape}")
    if array.shape == (height, width):
        return array
    rows = np.minimum(((np.arange(height) + 0.5) * array.shape[0] / height).astype(np.int64), array.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * array.shape[1] / width).astype(np.int64), array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


# Reading users' files needs no torch: it lives in `image_files` (re-exported here for existing imports).
from .image_files import InputFileError, image_file_size, open_image_file, read_segmentation_file  # noqa: E402, F401


def _stack(items: Sequence, name: str) -> np.ndarray:
    arrays = [np.asarray(x) for x in items]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(f"{name}: all items of a list must have the same shape, got {[a.shape for a in arrays]}")
    return np.stack(arrays)


def labels_to_tensor(labels, name: str = "segmentation_map") -> torch.Tensor:
    """A label map (PIL / numpy / integer tensor, [H,W] or [B,H,W], or a list of them) -> int64 [B,H,W]."""
    if isinstance(labels, PIL.Image.Image):
        labels = np.asarray(labels)
    elif isinstance(labels, (list, tuple)):
        labels = _stack(labels, name)
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                raise ValueError(f"{name}: a label map must hold integer class ids, got non-integer floats")
        elif labels.dtype.kind not in "iub":
            raise ValueError(f"{name}: unsupported array dtype {labels.dtype}")
        labels = torch.from_numpy(labels.astype(np.int64))
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name}: expected a PIL image, numpy array or tensor, got {type(labels).__name__}")
    if torch.is_floating_point(labels):
        raise ValueError(f"{name}: a float tensor must be a one-hot map [B, C, H, W]; label maps are integer tensors")
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError(f"{name}: a label map must be [H, W] or [B, H, W], got shape {tuple(labels.shape)}")
    return labels.long()


def labels_to_one_hot(labels: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Integer train ids [..., H, W] -> float one-hot [..., num_classes, H, W]; `ignore_index` -> all zeros."""
    labels = torch.as_tensor(labels).long()
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        values = labels[bad].unique()[:10].tolist()
        raise ValueError(
            f"segmentation_map holds class ids {values} outside 0..{num_classes - 1} (and {ignore_index} = ignore)"
        )
    classes = torch.arange(num_classes, device=labels.device).view(num_classes, 1, 1)
    return (labels.unsqueeze(-3) == classes).float()


def instance_edges(instance_map):
    """Instance ids [..., H, W] -> bool [..., H, W], True where a pixel differs from one of its 4 neighbours.

    Returns the input's kind: a numpy array for numpy input (computed in numpy, so any integer dtype works), a
    tensor otherwise.  The model's instance-edge channel, the training transform and the stream's instance
    payload all use this one definition.
    """
    if isinstance(instance_map, np.ndarray):
        ids = instance_map
        edge = np.zeros(ids.shape, dtype=bool)
    else:
        ids = torch.as_tensor(instance_map)
        edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    horizontal = ids[..., :, 1:] != ids[..., :, :-1]
    vertical = ids[..., 1:, :] != ids[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge


def semantic_channels(labels, num_classes: int, edges=None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The model's conditioning map: train ids [..., H, W] -> float one-hot [..., num_classes, H, W], followed by
    the instance-edge channel when ``edges`` (bool [..., H, W], see :func:`instance_edges`) is given.

    The pipeline, the receiver and the training transform all build the map here, so the channel order is one.
    """
    one_hot = labels_to_one_hot(labels, num_classes, ignore_index)
    if edges is None:
        return one_hot
    edges = torch.as_tensor(edges, device=one_hot.device)
    if edges.shape != one_hot.shape[:-3] + one_hot.shape[-2:]:
        raise ValueError(f"instance edges {tuple(edges.shape)} do not match the label map "
                         f"{tuple(one_hot.shape[:-3] + one_hot.shape[-2:])}")
    return torch.cat([one_hot, edges.unsqueeze(-3).to(one_hot.dtype)], dim=-3)


def image_to_tensor(image, name: str = "low_res_image") -> torch.Tensor:
    """An RGB image (PIL / uint8 or [0,1] float numpy HWC / tensor [B,3,h,w] in [-1,1]) -> float [B,3,h,w] in [-1,1]."""
    if isinstance(image, PIL.Image.Image):
        image = np.asarray(image.convert("RGB"))
    elif isinstance(image, (list, tuple)):
        if all(isinstance(x, PIL.Image.Image) for x in image):
            image = _stack([np.asarray(x.convert("RGB")) for x in image], name)
        elif all(isinstance(x, torch.Tensor) for x in image):
            image = torch.stack([x if x.ndim == 3 else x[0] for x in image])
        else:
            image = _stack(image, name)
    if isinstance(image, np.ndarray):
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"{name}: a numpy image must be [h, w, 3] or [B, h, w, 3], got shape {image.shape}")
        if image.dtype == np.uint8:
            array = image.astype(np.float32) / 127.5 - 1.0
        elif image.dtype.kind == "f":
            if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
                raise ValueError(f"{name}: a float numpy image must be finite and in [0, 1]")
            array = image.astype(np.float32) * 2.0 - 1.0
        else:
            raise ValueError(f"{name}: numpy images must be uint8 or float in [0, 1], got {image.dtype}")
        return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name}: expected a PIL image, numpy array or tensor, got {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{name}: a tensor image must be [3, h, w] or [B, 3, h, w], got shape {tuple(image.shape)}")
    if not torch.is_floating_point(image):
        raise ValueError(f"{name}: a tensor image must be float in [-1, 1], got {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if image.min() < -1.001 or image.max() > 1.001:
        raise ValueError(
            f"{name}: tensor values must be in [-1, 1], got [{image.min().item():.3f}, {image.max().item():.3f}]"
        )
    return image.float().clamp(-1, 1)


def pad_to_multiple(tensor: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the bottom/right of [B,C,H,W] so H and W are multiples; returns the original (H, W)."""
    height, width = tensor.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        tensor = F.pad(tensor, (0, pad_w, 0, pad_h), mode="replicate")
    return tensor, (height, width)
