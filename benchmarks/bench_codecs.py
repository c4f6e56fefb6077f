"""Benchmark SPIC's codecs: every lossless map coder (bytes, encode/decode ms) on street-like maps,
and every lossy coarse codec (rate vs PSNR across qualities) on coarse images.

    python benchmarks/bench_codecs.py --output_dir bench_out          # JSON + plot
    python benchmarks/bench_codecs.py --quick                         # fewer maps/qualities
    python benchmarks/bench_codecs.py --camvid_root CamVid --dataset data/cityscapes_spic

The real-map table comes first: CamVid test annotations (``--camvid_root``, SegNet's layout, mapped to
Cityscapes train ids) at their native 360x480, resized with nearest to 256x512, and upscaled with nearest
to 1024x2048 -- a stand-in for full-size Cityscapes with the same layouts but staircase edges, not real
1024x2048 annotations -- and the ``semantic_map`` column of any Cityscapes-format dataset (``--dataset``,
the converter's output; its validation or test split) at its own size and at 256x512.  Synthetic
maps follow as a regression set.  Maps come from ``spic_diffusers.data.synthetic``: ``make_scene`` and,
as a second family of layouts, ``make_street_map``; rates are bits over the pixel count of the full-size
image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from spic_diffusers.data.synthetic import make_scene, make_street_map
from spic_diffusers.evaluation.inputs import spread_indices
from spic_diffusers.codec import (
    COARSE_CODECS,
    MAP_CODERS,
    CodecUnavailableError,
    area_downsample,
    get_coarse_codec,
    get_map_coder,
)

QUALITIES = {
    "hevc": [25, 30, 35, 40, 45],
    "bpg": [25, 30, 35, 40, 45],
    "heif": [5, 10, 20, 40, 60],
    "jxl": [5, 10, 20, 40, 60],
    "webp": [5, 10, 20, 40, 60],
    "avif": [5, 10, 20, 40, 60],
    "jpeg": [5, 10, 20, 40, 60],
}


def load_scenes(count: int, height: int, width: int):
    """(name, map, image or None) triples: synthetic scenes, then map-only street layouts."""
    scenes = []
    for seed in range(count):
        scene = make_scene(height, width, seed)
        scenes.append((f"synthetic-{seed}", scene.semantic_map, scene.image))
    for seed in range(count):
        scenes.append((f"street-{seed}", make_street_map(height, width, seed), None))
    return scenes


def _timed(fn, repeats: int):
    """Median wall time and median CPU time of this process (ms); CPU time is robust to a busy machine."""
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return result, statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


REAL_MAP_CODERS = ("mix", "context2", "context", "png", "webp", "jxl", "flif")  # flif where installed


def _resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))


def load_real_maps(camvid_root, dataset, count: int, camvid_dataset=None) -> dict:
    """Group name -> [(name, map, None)]: CamVid test maps (SegNet's layout from ``camvid_root``, or the datasets
    format from ``camvid_dataset``) and a Cityscapes-format dataset's maps, at several sizes."""
    groups = {}
    if camvid_dataset:
        from datasets import load_from_disk

        rows = load_from_disk(camvid_dataset)["test"]
        maps = [(str(i), np.asarray(rows[i]["semantic_map"], dtype=np.uint8)) for i in spread_indices(len(rows), count)]
        groups["camvid-test 360x480"] = [(n, m, None) for n, m in maps]
        groups["camvid-test 256x512 (nearest)"] = [(n, _resize_nearest(m, 256, 512), None) for n, m in maps]
        groups["camvid-test 1024x2048 (nearest upscale, proxy)"] = [
            (n, _resize_nearest(m, 1024, 2048), None) for n, m in maps[: max(1, count // 4)]
        ]
    if camvid_root:
        from PIL import Image

        from spic_diffusers.data.camvid import camvid_to_train_ids, find_camvid_files

        records = find_camvid_files(camvid_root, "test")
        maps = [(records[i].id, camvid_to_train_ids(np.asarray(Image.open(records[i].annotation_path))))
                for i in spread_indices(len(records), count)]
        groups["camvid-test 360x480"] = [(n, m, None) for n, m in maps]
        groups["camvid-test 256x512 (nearest)"] = [(n, _resize_nearest(m, 256, 512), None) for n, m in maps]
        groups["camvid-test 1024x2048 (nearest upscale, proxy)"] = [
            (n, _resize_nearest(m, 1024, 2048), None) for n, m in maps[: max(1, count // 4)]
        ]
    if dataset:
        from datasets import load_from_disk

        data = load_from_disk(dataset)
        split = next((s for s in ("validation", "test", "train") if s in data), None)
        rows = data[split].select(range(min(count, len(data[split]))))
        maps = [(str(i), np.asarray(row["semantic_map"], dtype=np.uint8)) for i, row in enumerate(rows)]
        groups[f"{Path(dataset).name} {split} native"] = [(n, m, None) for n, m in maps]
        groups[f"{Path(dataset).name} {split} 256x512 (nearest)"] = [
            (n, _resize_nearest(m, 256, 512), None) for n, m in maps
        ]
    return groups


def bench_real_maps(groups: dict, repeats: int) -> dict:
    """Per group: each coder's mean bytes, its ratio to JPEG XL, and encode + decode CPU ms."""
    table = {}
    for group, scenes in groups.items():
        result = bench_map_coders(scenes, repeats, REAL_MAP_CODERS)
        jxl = result.get("jxl", {}).get("all", {}).get("mean_bytes")
        table[group] = {
            name: {
                "mean_bytes": r["all"]["mean_bytes"],
                "vs_jxl": r["all"]["mean_bytes"] / jxl if jxl else None,
                "encode_decode_cpu_ms": r["all"]["mean_encode_cpu_ms"] + r["all"]["mean_decode_cpu_ms"],
                "encode_decode_wall_ms": r["all"]["mean_encode_ms"] + r["all"]["mean_decode_ms"],
            }
            for name, r in result.items()
            if "all" in r
        }
        pixels = scenes[0][1].size
        for row in table[group].values():
            row["bpp"] = 8 * row["mean_bytes"] / pixels
        table[group]["maps"] = len(scenes)
    return table


def bench_map_coders(scenes, repeats: int, names=None) -> dict:
    results = {}
    for name in names or MAP_CODERS:
        coder = get_map_coder(name)
        per_map = []
        try:
            for scene_name, semantic_map, _ in scenes:
                data, encode_ms, encode_cpu = _timed(lambda: coder.encode(semantic_map), repeats)
                decoded, decode_ms, decode_cpu = _timed(lambda: coder.decode(data, *semantic_map.shape), repeats)
                if not np.array_equal(decoded, semantic_map):
                    raise RuntimeError(f"{name} is not lossless on {scene_name}")
                per_map.append(
                    {
                        "map": scene_name,
                        "bytes": len(data),
                        "encode_ms": encode_ms,
                        "decode_ms": decode_ms,
                        "encode_cpu_ms": encode_cpu,
                        "decode_cpu_ms": decode_cpu,
                    }
                )
        except CodecUnavailableError as err:
            results[name] = {"unavailable": str(err)}
            continue
        groups = {"all": per_map}
        for prefix in ("synthetic", "street"):
            subset = [r for r in per_map if r["map"].startswith(prefix)]
            if subset:
                groups[prefix] = subset
        results[name] = {
            group: {
                "mean_bytes": statistics.mean(r["bytes"] for r in rows),
                "mean_encode_ms": statistics.mean(r["encode_ms"] for r in rows),
                "mean_decode_ms": statistics.mean(r["decode_ms"] for r in rows),
                "mean_encode_cpu_ms": statistics.mean(r["encode_cpu_ms"] for r in rows),
                "mean_decode_cpu_ms": statistics.mean(r["decode_cpu_ms"] for r in rows),
            }
            for group, rows in groups.items()
        }
        results[name]["per_map"] = per_map
    reference = results.get("jxl", {}).get("all", {}).get("mean_bytes")
    if reference:
        for name, result in results.items():
            if "all" in result:
                result["vs_jxl"] = result["all"]["mean_bytes"] / reference
    return results


def bench_coarse_codecs(images, downsample: int, qualities: dict) -> dict:
    results = {}
    for name in COARSE_CODECS:
        curve = []
        try:
            for quality in qualities[name]:
                codec = get_coarse_codec(name, quality)
                sizes, psnrs, times = [], [], []
                for original in images:
                    small = area_downsample(original, downsample)
                    start = time.perf_counter()
                    data = codec.encode(small)
                    decoded = codec.decode(data, *small.shape[:2])
                    times.append((time.perf_counter() - start) * 1e3)
                    mse = np.mean((decoded.astype(np.float64) - small) ** 2)
                    sizes.append(len(data))
                    psnrs.append(10 * np.log10(255**2 / max(mse, 1e-10)))
                pixels = images[0].shape[0] * images[0].shape[1]
                curve.append(
                    {
                        "quality": quality,
                        "mean_bytes": statistics.mean(sizes),
                        "bpp_full_res": 8 * statistics.mean(sizes) / pixels,
                        "psnr_db": statistics.mean(psnrs),
                        "encode_decode_ms": statistics.mean(times),
                    }
                )
        except CodecUnavailableError as err:
            results[name] = {"unavailable": str(err)}
            continue
        results[name] = {"quality_help": get_coarse_codec(name).quality_help, "curve": curve}
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    maps = {k: v for k, v in results["map_coders"].items() if "all" in v}
    names = list(maps)
    left.bar(names, [maps[n]["all"]["mean_bytes"] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        total_ms = maps[n]["all"]["mean_encode_ms"] + maps[n]["all"]["mean_decode_ms"]
        left.text(i, maps[n]["all"]["mean_bytes"], f"{total_ms:.0f} ms", ha="center", va="bottom", fontsize=8)
    left.set_ylabel("bytes per map")
    left.set_title(f"lossless map coders ({results['config']['height']}x{results['config']['width']})")
    for name, result in results["coarse_codecs"].items():
        if "curve" in result:
            curve = result["curve"]
            right.plot([c["bpp_full_res"] for c in curve], [c["psnr_db"] for c in curve], marker="o", label=name)
    right.set_xlabel("bits per full-resolution pixel")
    right.set_ylabel("PSNR of the coarse image (dB)")
    right.set_title(f"coarse codecs (1/{results['config']['downsample']} size)")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Measured: the defaults (6 maps per generator, 3 repeats, every coarse quality) ran 4 minutes on a 2-core CPU.
DEFAULT_MINUTES = 4.0


def announce(args, qualities: dict) -> None:
    """Say what will run and about how long it takes, before starting (the coarse part does not repeat)."""
    work = args.num_maps * args.repeats / (6 * 3)
    real = args.camvid_root or args.dataset or args.camvid_dataset
    minutes = DEFAULT_MINUTES * (0.5 * work + (0 if args.maps_only else 0.5 * sum(map(len, qualities.values()))
                                               / sum(map(len, QUALITIES.values()))))
    print(f"bench_codecs: {args.num_maps} maps per generator at {args.height}x{args.width}, {args.repeats} timing "
          f"repeat(s), {'no coarse codecs' if args.maps_only else f'{len(qualities)} coarse codecs'}"
          f"{', real maps' if real else ''}; expected about {max(minutes, 0.5):.1f} min "
          f"on a 2-core CPU ({DEFAULT_MINUTES:g} min measured with the defaults; scaled)",
          file=sys.stderr, flush=True)


def progress(what: str, bench, *args):
    """Run one part of the benchmark, saying on stderr when it starts and how long it took."""
    import time

    print(f"bench_codecs: {what} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = bench(*args)
    print(f"bench_codecs: {what} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=None, help="write results.json and codecs.png here")
    parser.add_argument("--num_maps", type=int, default=6, help="maps per generator")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--downsample", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    parser.add_argument("--quick", action="store_true", help="2 maps, 1 repeat, 3 qualities per codec")
    parser.add_argument("--camvid_root", default=None,
                        help="CamVid in SegNet's layout: its test maps form the real-map table")
    parser.add_argument("--dataset", default=None, help="a Cityscapes-format dataset folder (the converter's output)")
    parser.add_argument("--camvid_dataset", default=None,
                        help="CamVid in datasets format (a semantic_map column): its test maps form the real-map table")
    parser.add_argument("--real_maps_only", action="store_true", help="only the real-map table")
    parser.add_argument("--maps_only", action="store_true", help="skip the coarse codecs")
    parser.add_argument("--num_real_maps", type=int, default=24, help="real maps per source (a quarter at 1024x2048)")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_maps, args.repeats = 2, 1
    qualities = {k: (v[::2] if args.quick else v) for k, v in QUALITIES.items()}
    announce(args, qualities)

    scenes = load_scenes(args.num_maps, args.height, args.width)
    images = [image for _, _, image in scenes if image is not None]
    if not images:
        rng = np.random.default_rng(0)
        images = [(rng.random((args.height, args.width, 3)) * 255).astype(np.uint8)]
    real_groups = load_real_maps(args.camvid_root, args.dataset, 2 if args.quick else args.num_real_maps,
                                 args.camvid_dataset)  # fmt: skip
    if args.real_maps_only:
        print(json.dumps({"real_maps": bench_real_maps(real_groups, args.repeats)}, indent=2))
        return 0
    results = {
        "real_maps": bench_real_maps(real_groups, args.repeats) if real_groups else "pass --camvid_root or --dataset",
        "config": {
            "height": args.height,
            "width": args.width,
            "downsample": args.downsample,
            "num_maps": len(scenes),
            "num_images": len(images),
            "repeats": args.repeats,
        },
        "map_coders": progress("map coders", bench_map_coders, scenes, args.repeats),
        "coarse_codecs": {} if args.maps_only else progress("coarse codecs", bench_coarse_codecs, images,
                                                             args.downsample, qualities),
    }
    summary = {k: v for k, v in results.items()}
    summary["map_coders"] = {
        name: {group: row for group, row in result.items() if group != "per_map"}
        for name, result in results["map_coders"].items()
    }
    print(json.dumps(summary, indent=2))
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        if results["coarse_codecs"]:
            plot(results, out / "codecs.png")
        print(f"wrote {out / 'results.json'} and {out / 'codecs.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
