#!/usr/bin/env python
"""Build the prior of the ``context4`` map coder (``src/spic_diffusers/assets/map_prior/context4.npz``).

Runs ``context4``'s model with empty statistics over the semantic maps of a Cityscapes-format dataset
(``datasets.load_from_disk``; a ``semantic_map`` column in Cityscapes train ids) at their own size and
nearest-resized to 256x512, adds up what each map taught it, caps every context at
``PRIOR_STRENGTH`` observations and stores the result with the mean mixing weights.  The prior is
part of ``context4``'s format: after rebuilding it, set ``map_prior.PRIOR_DIGEST`` to the digest this
script prints, and know that earlier context4 streams no longer decode.

    python scripts/train_map_prior.py --dataset data/camvid_spic --split train
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spic_diffusers.codec import map_prior
from spic_diffusers.codec.map_context import _code_pixels, _Encoding
from spic_diffusers.codec.map_prior import PRIOR_STRENGTH, PRIOR_TABLES, PRIOR_UNIT, WEIGHT_UNIT

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "src/spic_diffusers/assets/map_prior/context4.npz"


def _resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))


def learn(semantic_map: np.ndarray) -> dict[str, np.ndarray]:
    """What ``context4``'s model, started empty, learns from coding one map."""
    import constriction

    values, indices = np.unique(semantic_map, return_inverse=True)
    if len(values) < 2:
        return {}
    indices = indices.reshape(semantic_map.shape).astype(np.int64)
    layout = map_prior._BandLayout(*semantic_map.shape)
    model = map_prior._PriorModel(values, None)
    family = constriction.stream.model.Categorical(perfect=False)
    _code_pixels(_Encoding(constriction.stream, family, layout.to_buffer(indices, len(values))), layout,
                 len(values), model, "context4")  # fmt: skip
    return model.statistics()


def stored_prior(totals: dict[str, np.ndarray], weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Sparse rows of capped counts in 1/PRIOR_UNIT, and the mean weights in 1/WEIGHT_UNIT."""
    stored = {}
    for name in PRIOR_TABLES:
        table = totals[name]
        capped = table / np.maximum(1.0, table.sum(axis=1, keepdims=True) / PRIOR_STRENGTH)
        counts = np.round(capped * PRIOR_UNIT).astype(np.uint16)
        rows = np.flatnonzero(counts.any(axis=1))
        stored[f"{name}_rows"] = rows.astype(np.int32)
        stored[f"{name}_counts"] = counts[rows]
    stored["weights"] = np.round(np.mean(weights, axis=0) * WEIGHT_UNIT).astype(np.int32)
    return stored


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a Cityscapes-format dataset folder (datasets.save_to_disk)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--max_maps", type=int, default=None, help="use at most this many maps, evenly spaced")
    args = parser.parse_args(argv)

    from datasets import load_from_disk

    rows = load_from_disk(args.dataset)[args.split]
    count = len(rows) if args.max_maps is None else min(args.max_maps, len(rows))
    picks = np.linspace(0, len(rows) - 1, count).astype(int)
    totals: dict[str, np.ndarray] = {}
    weights = []
    for number, i in enumerate(picks):
        semantic_map = np.asarray(rows[int(i)]["semantic_map"], dtype=np.uint8)
        for version in (semantic_map, _resize_nearest(semantic_map, 256, 512)):
            learnt = learn(version)
            if not learnt:
                continue
            weights.append(learnt.pop("weights"))
            for name, table in learnt.items():
                totals[name] = totals.get(name, 0) + table
        if number % 50 == 0:
            print(f"{number + 1}/{count} maps", flush=True)
    stored = stored_prior(totals, weights)
    np.savez_compressed(args.output, **stored)
    digest = map_prior.prior_digest(map_prior.dense_prior(stored))
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({size} bytes) from {count} maps; PRIOR_DIGEST = {digest!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
