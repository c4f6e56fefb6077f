"""Cost of hostile and careless inputs: each case runs in a fresh process, timed, with its peak memory.

    python benchmarks/bench_hostile_inputs.py                  # JSON on stdout
    python benchmarks/bench_hostile_inputs.py --output out.json

The target: anything a small stream or file can ask is refused (or done) in under 2 s and under 1 GB,
with one line.  ``seconds`` and ``peak_mb`` cover the case itself, after its process imported what it
needs and built its input; ``within_target`` compares them with the target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

TARGET_SECONDS, TARGET_MB = 2.0, 1024.0

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
]

RUNNER = """
import json, resource, sys, time, io, contextlib
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
message = error or stderr.getvalue().strip() or repr(result)[:120]
print(json.dumps({{"seconds": seconds, "peak_mb": max(peak - before, 0) / 1024, "result": message.splitlines()[-1]
                   if message else "", "lines": len(message.splitlines())}}))
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
    args = parser.parse_args(argv)
    results = []
    for name, setup, action in CASES:
        figures = run_case(setup, action)
        if "seconds" in figures:
            figures["within_target"] = figures["seconds"] < TARGET_SECONDS and figures["peak_mb"] < TARGET_MB
        results.append({"case": name, **figures})
        print(json.dumps(results[-1]), file=sys.stderr)
    report = {"target": {"seconds": TARGET_SECONDS, "peak_mb": TARGET_MB}, "cases": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
