#!/usr/bin/env python
"""The default map coder `mix` (``codec/map_mix.py``, binary context mixing) against ``context2`` and JPEG XL.

    OMP_NUM_THREADS=1 python benchmarks/bench_map_mix.py --camvid_dataset data/camvid_spic            # 24 maps
    OMP_NUM_THREADS=1 python benchmarks/bench_map_mix.py --camvid_dataset data/camvid_spic --count 4  # quick

CamVid test maps as ``bench_codecs.py`` takes them (the same spread of indices), at their native 360x480 and
resized with nearest to 256x512: mean bytes of each coder, their ratio to JPEG XL lossless at effort 10, and warm
encode + decode CPU milliseconds per map on one thread (median of ``--repeats``); then one 1024x2048 nearest
upscale for time.  Every map is checked for an exact round trip, and a jitted payload of a small crop is decoded
again in a subprocess with ``NUMBA_DISABLE_JIT=1`` (the pure-Python fallback) and compared.  Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_codecs import load_real_maps  # noqa: E402

from spic_diffusers.codec import map_mix  # noqa: E402
from spic_diffusers.codec.map_coders import MAP_CODERS  # noqa: E402


def _cpu_ms(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return result, statistics.median(times) * 1e3


def _coder_row(coder, labels: np.ndarray, repeats: int, timed: bool) -> dict:
    data = coder.encode(labels)
    row = {"bytes": len(data)}
    if timed:
        _, encode_ms = _cpu_ms(lambda: coder.encode(labels), repeats)
        decoded, decode_ms = _cpu_ms(lambda: coder.decode(data, *labels.shape), repeats)
        row["encode_decode_cpu_ms"] = encode_ms + decode_ms
    else:
        decoded = coder.decode(data, *labels.shape)
    if not np.array_equal(decoded, labels):
        raise AssertionError(f"{type(coder).__name__} does not round-trip")
    return row


def bench_group(maps, repeats: int) -> dict:
    coders = {"mix": map_mix.MixMapCoder(), "context2": MAP_CODERS["context2"](), "jxl": MAP_CODERS["jxl"]()}
    rows = {name: [] for name in coders}
    for _, labels, _ in maps:
        for name, coder in coders.items():
            rows[name].append(_coder_row(coder, labels, repeats, timed=name != "jxl"))
    jxl = statistics.mean(r["bytes"] for r in rows["jxl"])
    table = {"maps": len(maps)}
    for name, per_map in rows.items():
        mean = statistics.mean(r["bytes"] for r in per_map)
        table[name] = {"mean_bytes": mean, "vs_jxl": mean / jxl, "bpp": 8 * mean / maps[0][1].size}
        if "encode_decode_cpu_ms" in per_map[0]:
            table[name]["encode_decode_cpu_ms"] = statistics.mean(r["encode_decode_cpu_ms"] for r in per_map)
    table["mix"]["vs_context2"] = table["mix"]["mean_bytes"] / table["context2"]["mean_bytes"]
    return table


_FALLBACK = """
import sys, numpy as np
from spic_diffusers.codec import map_mix
data = open(sys.argv[1], "rb").read()
h, w = int(sys.argv[2]), int(sys.argv[3])
np.save(sys.argv[4], map_mix.decode(data, h, w))
"""


def check_fallback(labels: np.ndarray) -> dict:
    """Decode a jitted payload with NUMBA_DISABLE_JIT=1 in a subprocess: the pure-Python path must agree."""
    data = map_mix.encode(labels)
    with tempfile.TemporaryDirectory() as tmp:
        path, out = os.path.join(tmp, "payload"), os.path.join(tmp, "decoded.npy")
        with open(path, "wb") as f:
            f.write(data)
        env = dict(os.environ, NUMBA_DISABLE_JIT="1")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _FALLBACK, path, *map(str, labels.shape), out], env=env, check=True)
        seconds = time.perf_counter() - start
        decoded = np.load(out)
    return {"shape": list(labels.shape), "labels": int(len(np.unique(labels))), "bytes": len(data),
            "identical": bool(np.array_equal(decoded, labels)), "python_decode_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camvid_dataset", required=True, help="CamVid in the datasets format (load_from_disk)")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    groups = load_real_maps(None, None, args.count, camvid_dataset=args.camvid_dataset)
    small = groups["camvid-test 256x512 (nearest)"]
    map_mix.encode(small[0][1])  # compile (or load the cache) before any timing
    result = {"threads": 1}
    for name in ("camvid-test 256x512 (nearest)", "camvid-test 360x480"):
        result[name] = bench_group(groups[name], args.repeats)
    big = groups["camvid-test 1024x2048 (nearest upscale, proxy)"][:1]
    result["camvid-test 1024x2048 (nearest upscale, one map)"] = {
        name: _coder_row(coder, big[0][1], 1, timed=True)
        for name, coder in (("mix", map_mix.MixMapCoder()), ("context2", MAP_CODERS["context2"]()))
    }
    labels = small[0][1]
    crop = next(labels[y : y + 32, :48] for y in range(0, labels.shape[0] - 32, 8)
                if len(np.unique(labels[y : y + 32, :48])) >= 3)
    result["pure_python_fallback"] = check_fallback(np.ascontiguousarray(crop))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
