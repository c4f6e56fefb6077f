"""Cost of hostile and careless inputs: each case runs in a fresh process, timed, with its peak memory.

    python benchmarks/bench_hostile_inputs.py                  # JSON on stdout
    python benchmarks/bench_hostile_inputs.py --output out.json

The target: anything a small stream or file can ask is refused (or done) in under 2 s and under 1 GB,
with one line (20 s for model folders and dataset converters).  ``seconds`` and ``peak_mb`` cover the case
itself, after its process imported what it needs and built its input; ``peak_mb`` includes the peak of any
decoder subprocess; ``within_target`` compares them with the case's target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

TARGET_SECONDS, TARGET_MB = 2.0, 1024.0
MODEL_SECONDS = 20.0  # model folders and dataset converters (a case's fourth element)
EXPECTED_MINUTES = 4

# Each case: (name, setup, action).  `setup` builds the input; `action` is what is measured.
CASES = [
    ("stream 26 B declaring 4096x8192: decode_parts", """
        from spic_diffusers.codec import pack_stream, decode_parts
        stream = pack_stream(height=4096, width=8192, downsample=4, map_coder="context", coarse_codec="jpeg",
                             map_payload=b"\\x01\\x00\\x01", coarse_payload=b"x")
     """, "decode_parts(stream)"),
    ("context map 3 B payload at 8192x8192: map decoder", """
        from spic_diffusers.codec import get_map_coder
        coder = get_map_coder("context")
     """, "coder.decode(bytes([1, 0, 1]), 8192, 8192)"),
    ("context map 3 B payload at 1024x2048 (the default budget)", """
        from spic_diffusers.codec import get_map_coder
        coder = get_map_coder("context")
     """, "coder.decode(bytes([1, 0, 1]), 1024, 2048)"),
    ("context map: 256-label stripes at 512x4096 from a small payload", """
        import numpy as np
        import spic_diffusers.codec.semantic as semantic
        coder = semantic.ContextMapCoder()
        semantic._MAX_LABEL_WORK_PER_PIXEL = 10**6
        payload = coder.encode(np.tile(np.arange(256, dtype=np.uint8), (512, 16)))
        semantic._MAX_LABEL_WORK_PER_PIXEL = 16
     """, "coder.decode(payload, 512, 4096)"),
    ("JPEG XL coarse payload 2 KB declaring 16384x16384", """
        from spic_diffusers.codec import get_coarse_codec
        bits = [0] + [1, 1] + [(16383 >> i) & 1 for i in range(30)] + [1, 0, 0]
        header = bytes(sum(b << j for j, b in enumerate(bits[i:i + 8])) for i in range(0, len(bits), 8))
        payload = b"\\xff\\x0a" + header + bytes(2000)
        codec = get_coarse_codec("jxl")
     """, "codec.decode(payload, 4, 4)"),
    ("PNG map payload with 10 MB of trailing zlib data", """
        import zlib, numpy as np
        from spic_diffusers.codec import get_map_coder
        coder = get_map_coder("png")
        payload = coder.encode(np.zeros((32, 48), np.uint8)) + zlib.compress(bytes(10 << 20))
     """, "coder.decode(payload, 32, 48)"),
    ("PNG map payload: 64 MB zlib bomb for a 1024x2048 map", """
        import zlib
        from spic_diffusers.codec import get_map_coder
        coder = get_map_coder("png")
        payload = zlib.compress(bytes(64 << 20), 9)
     """, "coder.decode(payload, 1024, 2048)"),
    ("spic decode of a stream declaring 4096x8192 (whole command)", """
        import tempfile, os
        from spic_diffusers.cli import main
        from spic_diffusers.codec import pack_stream
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "big.spic")
        open(path, "wb").write(pack_stream(height=4096, width=8192, downsample=4, map_coder="context",
                                           coarse_codec="jpeg", map_payload=b"\\x00", coarse_payload=b""))
        from spic_diffusers.demo import shipped_model_path
     """, "main(['decode', path, '--model', str(shipped_model_path()), '-o', os.path.join(folder, 'o.png')])"),
    ("spic encode of a 12000x12000 PNG header (120 B)", """
        import os, struct, tempfile, zlib
        from spic_diffusers.cli import main
        folder = tempfile.mkdtemp()
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))
        image = os.path.join(folder, "huge.png")
        open(image, "wb").write(png)
     """, "main(['encode', image, '--segmentation', image, '-o', os.path.join(folder, 'x.spic')])"),
    ("unet config with block_out_channels 32768", """
        from spic_diffusers import SPICUNet2DModel
     """, "SPICUNet2DModel(block_out_channels=(32768, 32768))"),
    ("converter: checkpoint with a zero-stride tensor claiming 128 GiB", """
        import torch, sys
        sys.path.insert(0, "tests")
        from test_conversion import original_state_dict
        from spic_diffusers.conversion import unet_from_original_checkpoint
        state = original_state_dict()
        state["time_embed.0.weight"] = torch.zeros(1).expand(1 << 20, 1 << 15)
     """, "unet_from_original_checkpoint(state)"),
    ("converter: small checkpoint implying 4096 base channels", """
        import torch, sys
        sys.path.insert(0, "tests")
        from test_conversion import original_state_dict
        from spic_diffusers.conversion import unet_from_original_checkpoint
        state = original_state_dict()
        state["time_embed.0.weight"] = torch.zeros(128, 4096)
     """, "unet_from_original_checkpoint(state)"),
    # --- round 2 (issue 25): what is inside a payload, what a model folder may say, files not to be replaced.
    ("HEVC payload 119 B coding 14000x14000 10-bit, cropped to 16x16", """
        import sys, numpy as np
        sys.path.insert(0, "tests")
        from test_codec_limits import _forge_sps
        from spic_diffusers.codec import get_coarse_codec
        codec = get_coarse_codec("hevc")
        payload = _forge_sps(codec.encode(np.full((16, 16, 3), 90, np.uint8)), (14000, 14000), (16, 16), 10)
     """, "codec.decode(payload, 16, 16)"),
    ("HEVC payload padded with 300000 empty SEI units (1.8 MB)", """
        import numpy as np
        from spic_diffusers.codec import get_coarse_codec
        codec = get_coarse_codec("hevc")
        payload = codec.encode(np.full((16, 16, 3), 90, np.uint8)) + b"\\x00\\x00\\x01\\x4e\\x01\\x80" * 300000
     """, "codec.decode(payload, 16, 16)"),
    ("HEIF payload: ispe 16000x16000, clean aperture 24x32", """
        import numpy as np
        from spic_diffusers.codec import get_coarse_codec
        codec = get_coarse_codec("heif")
        data = bytearray(codec.encode(np.full((24, 32, 3), 90, np.uint8)))
        at = data.find(b"ispe") + 8
        data[at:at + 8] = (16000).to_bytes(4, "big") * 2
        payload = bytes(data)
     """, "codec.decode(payload, 24, 32)"),
    ("converter: 1.5 MB zip record inflating to a 1.5 GB tensor", """
        import os, tempfile, zipfile, torch, zlib
        from spic_diffusers.conversion import load_original_checkpoint
        folder = tempfile.mkdtemp()
        torch.save({"weight": torch.zeros(4)}, os.path.join(folder, "plain.pt"))
        bomb = os.path.join(folder, "bomb.pt")
        with zipfile.ZipFile(os.path.join(folder, "plain.pt")) as src, \\
                zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
            for info in src.infolist():
                if info.filename.endswith("/data/0"):
                    with dst.open(info.filename, "w", force_zip64=True) as out:
                        block = bytes(64 << 20)
                        for _ in range(1536 // 64):
                            out.write(block)
                else:  # the other records stored, as torch.save writes them
                    dst.writestr(info, src.read(info.filename))
     """, "load_original_checkpoint(bomb)", 20.0),
    ("pipeline folder: scheduler num_train_timesteps 1e9", """
        import json, shutil, tempfile, os
        from spic_diffusers import SPICPipeline
        from spic_diffusers.demo import shipped_model_path
        folder = os.path.join(tempfile.mkdtemp(), "p")
        shutil.copytree(shipped_model_path(), folder)
        path = os.path.join(folder, "scheduler", "scheduler_config.json")
        config = json.load(open(path)); config["num_train_timesteps"] = 1e9
        json.dump(config, open(path, "w"))
     """, "SPICPipeline.from_pretrained(folder)", 20.0),
    ("pipeline folder: model_index.json naming torch.nn as its scheduler", """
        import json, shutil, tempfile, os
        from spic_diffusers import SPICPipeline
        from spic_diffusers.demo import shipped_model_path
        folder = os.path.join(tempfile.mkdtemp(), "p")
        shutil.copytree(shipped_model_path(), folder)
        path = os.path.join(folder, "model_index.json")
        index = json.load(open(path)); index["scheduler"] = ["torch.nn", "Linear"]
        json.dump(index, open(path, "w"))
     """, "SPICPipeline.from_pretrained(folder)", 20.0),
    ("segmenter folder: num_labels 1e8", """
        import json, shutil, tempfile, os
        from spic_diffusers.codec import Segmenter
        from spic_diffusers.demo import shipped_segmenter_path
        folder = os.path.join(tempfile.mkdtemp(), "s")
        shutil.copytree(shipped_segmenter_path(), folder)
        path = os.path.join(folder, "config.json")
        config = json.load(open(path)); config["num_labels"] = 1e8
        json.dump(config, open(path, "w"))
     """, "Segmenter.from_pretrained(folder)", 20.0),
    ("segmenter folder: preprocessor size 6000x8000", """
        import json, shutil, tempfile, os
        from spic_diffusers.codec import Segmenter
        from spic_diffusers.demo import shipped_segmenter_path
        folder = os.path.join(tempfile.mkdtemp(), "s")
        shutil.copytree(shipped_segmenter_path(), folder)
        path = os.path.join(folder, "preprocessor_config.json")
        config = json.load(open(path)); config["size"] = {"height": 6000, "width": 8000}
        json.dump(config, open(path, "w"))
     """, "Segmenter.from_pretrained(folder)", 20.0),
    ("segmenter folder without its classifier weights", """
        import shutil, tempfile, os
        from safetensors.torch import load_file, save_file
        from spic_diffusers.codec import Segmenter
        from spic_diffusers.demo import shipped_segmenter_path
        folder = os.path.join(tempfile.mkdtemp(), "s")
        shutil.copytree(shipped_segmenter_path(), folder)
        weights = os.path.join(folder, "model.safetensors")
        save_file({k: v for k, v in load_file(weights).items() if "classifier" not in k}, weights,
                  metadata={"format": "pt"})
     """, "Segmenter.from_pretrained(folder)", 20.0),
    ("float TIFF (mode F, 0..1) 512x512: scaled, mean of the result", """
        import numpy as np
        from PIL import Image
        from spic_diffusers.codec.transmitter import to_rgb_image
        image = Image.fromarray(np.linspace(0, 1, 512 * 512, dtype=np.float32).reshape(512, 512), mode="F")
     """, "float(np.asarray(to_rgb_image(image)).mean())"),
    ("output that appeared while encoding (no --overwrite)", """
        import os, tempfile
        from spic_diffusers.output_files import write_atomically
        path = os.path.join(tempfile.mkdtemp(), "x.spic")
        open(path, "w").write("written meanwhile")
     """, "write_atomically(path, bytes(1000), overwrite=False)"),
    ("distillation teacher cache holding 1e30 values", """
        import json, os, tempfile, torch
        from safetensors.torch import save_file
        from spic_diffusers.training.distill import TeacherCache
        path = os.path.join(tempfile.mkdtemp(), "cache.safetensors")
        save_file({"row|0": torch.full((2, 3, 32, 64), 1e30)}, path, metadata={"spic_teacher_cache": json.dumps({})})
     """, "TeacherCache([100], path, {}, channels=3)"),
    ("resume: training_state.json with global_step -5", """
        import json, os, tempfile
        from spic_diffusers.training.loop import TrainingProgress, load_training_state
        folder = tempfile.mkdtemp()
        json.dump({"progress": {"global_step": -5}}, open(os.path.join(folder, "training_state.json"), "w"))
     """, "load_training_state(folder, TrainingProgress(), None)"),
    ("CamVid tree with two 164 KB PNG bombs (13000x13000)", """
        import os, struct, tempfile, zlib
        from spic_diffusers.data.camvid import convert_camvid, write_fake_camvid
        folder = tempfile.mkdtemp()
        root = write_fake_camvid(os.path.join(folder, "CamVid"), {"train": 1, "val": 1, "test": 1}, height=36, width=48)
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 13000, 13000, 8, 0, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(bytes(13000 * 13001), 9)) + chunk(b"IEND", b""))
        name = sorted(os.listdir(os.path.join(root, "test")))[0]
        for sub in ("test", "testannot"):
            open(os.path.join(root, sub, name), "wb").write(png)
     """, "convert_camvid(root, os.path.join(folder, 'out'), splits=['test'])", 20.0),
    ("CamVid tree with a FIFO named x.png", """
        import os, tempfile
        from spic_diffusers.data.camvid import convert_camvid, write_fake_camvid
        folder = tempfile.mkdtemp()
        root = write_fake_camvid(os.path.join(folder, "CamVid"), {"train": 1, "val": 1, "test": 1}, height=36, width=48)
        os.mkfifo(os.path.join(root, "test", "x.png"))
        open(os.path.join(root, "testannot", "x.png"), "wb").write(open(os.path.join(root, "testannot",
            sorted(os.listdir(os.path.join(root, "testannot")))[0]), "rb").read())
     """, "convert_camvid(root, os.path.join(folder, 'out'), splits=['test'])", 20.0),
]

RUNNER = """
import json, resource, sys, time, io, contextlib
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
start = time.perf_counter()
error, result = None, None
stderr = io.StringIO()
try:
    with contextlib.redirect_stderr(stderr):
        result = {action}
except BaseException as err:
    error = f"{{type(err).__name__}}: {{err}}"
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # decoders run as subprocesses
children = children if children > children_before else 0  # only a child of the case itself
message = error or stderr.getvalue().strip() or repr(result)[:120]
print(json.dumps({{"seconds": seconds, "peak_mb": max(peak - before, children, 0) / 1024,
                  "result": message.splitlines()[-1] if message else "", "lines": len(message.splitlines())}}))
"""


def run_case(setup: str, action: str) -> dict:
    code = RUNNER.format(setup=textwrap.dedent(setup), action=action)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0 or not done.stdout.strip():
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="also write the JSON here")
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this text")
    args = parser.parse_args(argv)
    cases = [case for case in CASES if args.only is None or args.only in case[0]]
    results = []
    print(f"bench_hostile_inputs: {len(cases)} cases, each in a fresh process; expected about "
          f"{EXPECTED_MINUTES} minutes on a free 2-core CPU (most of it imports and building inputs)",
          file=sys.stderr, flush=True)
    for index, (name, setup, action, *limit) in enumerate(cases, 1):
        seconds = limit[0] if limit else TARGET_SECONDS
        print(f"[{index}/{len(cases)}] {name} ...", file=sys.stderr, flush=True)
        figures = run_case(setup, action)
        if "seconds" in figures:
            figures["target_seconds"] = seconds
            figures["within_target"] = figures["seconds"] < seconds and figures["peak_mb"] < TARGET_MB
        results.append({"case": name, **figures})
        print(json.dumps(results[-1]), file=sys.stderr)
    report = {"target": {"seconds": TARGET_SECONDS, "model_and_converter_seconds": MODEL_SECONDS,
                         "peak_mb": TARGET_MB}, "cases": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
