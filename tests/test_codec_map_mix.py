"""The binary context-mixing map coder `mix` (map_mix): exact round trips, and the pure-Python path
(NUMBA_DISABLE_JIT=1) decodes what the compiled path coded."""

import os
import subprocess
import sys

import numpy as np
import pytest

from spic_diffusers.codec import get_map_coder, map_mix
from spic_diffusers.data.synthetic import make_street_map


def _maps():
    rng = np.random.default_rng(0)
    street = make_street_map(40, 56, 1)
    ragged = street.copy()
    flip = rng.random(street.shape) < 0.05
    ragged[flip] = rng.choice([0, 7, 255], size=int(flip.sum()))
    return {
        "street": street,
        "ragged": ragged,
        "noise": rng.integers(0, 256, size=(9, 13)).astype(np.uint8),
        "single": np.full((5, 7), 13, dtype=np.uint8),
        "one pixel": np.array([[4]], dtype=np.uint8),
        "one column": rng.integers(0, 3, size=(17, 1)).astype(np.uint8),
    }


@pytest.mark.parametrize("name", list(_maps()))
def test_round_trip(name):
    labels = _maps()[name]
    data = map_mix.encode(labels)
    assert np.array_equal(map_mix.decode(data, *labels.shape), labels)


def test_smaller_than_context2_on_a_street_map():
    labels = make_street_map(64, 128, 2)
    assert len(map_mix.encode(labels)) < len(get_map_coder("context2").encode(labels))


_DECODE = """
import sys, numpy as np
from spic_diffusers.codec import get_map_coder, map_mix
data = open(sys.argv[1], "rb").read()
np.save(sys.argv[2], map_mix.decode(data, int(sys.argv[3]), int(sys.argv[4])))
"""


def test_pure_python_decodes_compiled_payload(tmp_path):
    labels = _maps()["ragged"][:24, :32]
    data = map_mix.encode(labels)
    (tmp_path / "payload").write_bytes(data)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", _DECODE, str(tmp_path / "payload"), str(tmp_path / "out.npy"),
                    *map(str, labels.shape)], env=env, check=True)
    assert np.array_equal(np.load(tmp_path / "out.npy"), labels)


def test_damaged_truncated_padded_or_mis_sized_payloads_are_refused():
    """Each way a payload can go wrong is a BitstreamError, never a silently different map."""
    from spic_diffusers.codec import BitstreamError

    labels = make_street_map(48, 64, 3)
    data = map_mix.encode(labels)
    table = 1 + data[0] + 1  # the label count, then the labels; the check follows
    cases = {
        "truncated": data[:-3],
        "cut to its table": data[:4],
        "trailing byte": data + b"\x00",
        "doubled": data + data,
        "flipped bit": data[:-5] + bytes([data[-5] ^ 0x10]) + data[-4:],
        "wrong check": data[:table] + bytes(b ^ 0xFF for b in data[table : table + 2]) + data[table + 2 :],
    }
    for name, payload in cases.items():
        with pytest.raises(BitstreamError):
            map_mix.decode(payload, *labels.shape)
            pytest.fail(f"{name}: decoded")
    for size in ((48, 63), (47, 64), (96, 128), (1024, 2048)):
        with pytest.raises(BitstreamError):
            map_mix.decode(data, *size)


def test_the_default_stream_codes_its_map_with_mix():
    from spic_diffusers.codec import decode_parts, encode, read_header
    from spic_diffusers.data import make_scene

    scene = make_scene(40, 64, 2)
    stream = encode(scene.image, scene.semantic_map, coarse_codec="jpeg")
    assert read_header(stream).map_coder == "mix"
    assert np.array_equal(decode_parts(stream).semantic_map, scene.semantic_map)


def test_without_numba_the_same_functions_decode(tmp_path):
    """Where numba is not installed the coder runs as pure Python and still reads compiled payloads."""
    labels = _maps()["street"][:16, :24]
    (tmp_path / "payload").write_bytes(map_mix.encode(labels))
    script = "import sys; sys.modules['numba'] = None\n" + _DECODE  # importing numba now fails
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "payload"), str(tmp_path / "out.npy"),
                    *map(str, labels.shape)], check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert np.array_equal(np.load(tmp_path / "out.npy"), labels)
