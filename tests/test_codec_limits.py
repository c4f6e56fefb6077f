"""What a small stream may ask of a receiver: refused fast, before any payload or model work, with one line.

Each class of hostile input from the container down to every payload codec: pixel budgets, sizes a payload
declares in its own header, payload exhaustion in the context map coder, and trailing data.
"""

import resource
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spic_diffusers.codec import (
    DEFAULT_MAX_PIXELS,
    BitstreamError,
    PixelBudgetError,
    decode_parts,
    encode,
    get_coarse_codec,
    get_map_coder,
    pack_stream,
)
from spic_diffusers.codec.coarse import COARSE_CODECS, HEVCCodec
from spic_diffusers.codec.payload_headers import hevc_size, jxl_size
from spic_diffusers.codec.map_coders import MAP_CODERS
from spic_diffusers.codec.semantic import ContextMapCoder

GIB = 1 << 30
SIZE_FROM_CONTAINER = ("context", "png")  # map payloads whose size only the container states
# context2 and mix code no pixels of a one-label map (its label table says it all): any size fits such a payload.
ONE_LABEL_SIZE_FREE = ("context2", "mix")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def _available(kind: str, name: str):
    from spic_diffusers.codec import CodecUnavailableError

    try:
        coder = get_map_coder(name) if kind == "map" else get_coarse_codec(name)
        probe = np.zeros((16, 16), np.uint8) if kind == "map" else np.zeros((16, 16, 3), np.uint8)
        coder.encode(probe)
    except CodecUnavailableError as err:
        pytest.skip(str(err))
    return coder


def _bounded(call, seconds: float = 10.0):
    """Run ``call``; it must finish (or raise) in ``seconds`` and keep the process under 1 GiB more memory.

    The bound catches runaway work (minutes, gigabytes); benchmarks/bench_hostile_inputs.py measures the cases.
    """
    before, start = _peak_rss_bytes(), time.monotonic()
    try:
        return call()
    finally:
        assert time.monotonic() - start < seconds, "a small input cost more than its time bound"
        assert _peak_rss_bytes() - before < GIB, "a small input cost more than 1 GiB"


# ------------------------------------------------------------------------------ pixel budget


def _garbage_stream(height: int, width: int) -> bytes:
    return pack_stream(height=height, width=width, downsample=4, map_coder="context", coarse_codec="jpeg",
                       map_payload=b"\x01\x00\x01garbage", coarse_payload=b"garbage")


def test_pixel_budget_is_checked_before_any_payload():
    stream = _garbage_stream(4096, 8192)  # 26 bytes asking for 33 M pixels
    with pytest.raises(PixelBudgetError, match=r"4096x8192.*max_pixels"):
        _bounded(lambda: decode_parts(stream))
    # Lifting the budget reaches the payloads, which are garbage: a different error, proving the order.
    with pytest.raises(BitstreamError):
        _bounded(lambda: decode_parts(stream, max_pixels=None))


def test_default_budget_allows_cityscapes_resolution():
    assert DEFAULT_MAX_PIXELS >= 1024 * 2048
    with pytest.raises(BitstreamError):  # within budget: the payload decoders run and refuse the garbage
        decode_parts(_garbage_stream(1024, 2048))
    with pytest.raises(ValueError, match="max_pixels"):
        decode_parts(_garbage_stream(8, 8), max_pixels=0)


def test_decode_refuses_before_the_pipeline_runs():
    from spic_diffusers import SPICPipeline
    from spic_diffusers.codec import decode
    from spic_diffusers.demo import shipped_model_path

    pipe = SPICPipeline.from_pretrained(shipped_model_path())
    with pytest.raises(PixelBudgetError):
        _bounded(lambda: decode(_garbage_stream(4096, 8192), pipe))
    with pytest.raises(PixelBudgetError):
        _bounded(lambda: pipe(np.zeros((2048, 2048), np.uint8), np.zeros((512, 512, 3), np.uint8)))
    # Without a pixel budget the memory estimate still refuses what no machine here can hold.
    labels = np.broadcast_to(np.uint8(0), (16384, 16384))
    with pytest.raises(ValueError, match="GiB"):
        _bounded(lambda: pipe(labels, np.zeros((16, 16, 3), np.uint8), max_pixels=None))
    small = pipe.estimate_memory_bytes(64, 128)
    assert small < pipe.estimate_memory_bytes(128, 256) < 8 * small


# ------------------------------------------------------------------ sizes payloads declare


def _jxl_header(height: int, width: int) -> bytes:
    """A bare JPEG XL codestream signature and SizeHeader (LSB-first bits), followed by junk."""
    bits = [0]  # not div8
    for value in (height, width):
        bits += [1, 1] + [((value - 1) >> i) & 1 for i in range(30)]  # U32 selector 3: 30 bits
        if value is height:
            bits += [0, 0, 0]  # ratio 0: width follows
    data = bytearray()
    for i in range(0, len(bits), 8):
        data.append(sum(b << j for j, b in enumerate(bits[i : i + 8])))
    return b"\xff\x0a" + bytes(data) + b"\x00" * 2000


def test_jxl_declared_size_is_read_without_decoding():
    payload = _jxl_header(16384, 16384)
    assert jxl_size(payload, "test") == (16384, 16384)
    for coder in (get_map_coder("jxl"), get_coarse_codec("jxl")):
        with pytest.raises(BitstreamError, match="16384x16384"):
            _bounded(lambda: coder.decode(payload, 4, 4))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300))
def test_jxl_size_reader_agrees_with_the_encoder(height, width):
    payload = get_map_coder("jxl", effort=1).encode(np.zeros((height, width), np.uint8))
    assert jxl_size(payload, "test") == (height, width)


@pytest.mark.parametrize("size", [(1, 1), (7, 9), (16, 16), (33, 70), (64, 18)])
def test_hevc_size_reader_agrees_with_the_encoder(size):
    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((*size, 3), 90, np.uint8))
    assert hevc_size(payload, "test") == HEVCCodec.padded_size(*size)


def test_hevc_payload_with_a_second_picture_is_refused():
    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((16, 16, 3), 90, np.uint8))
    with pytest.raises(BitstreamError, match="more than one"):
        codec.decode(payload + payload, 16, 16)
    second_slice = payload[payload.rindex(b"\x00\x00\x01") :]
    with pytest.raises(BitstreamError, match="2 pictures"):
        codec.decode(payload + second_slice, 16, 16)


# --------------------------------------------------------------------------- trailing data


def test_png_map_with_trailing_zlib_data_is_refused():
    coder = get_map_coder("png")
    labels = np.zeros((32, 48), np.uint8)
    payload = coder.encode(labels)
    with pytest.raises(BitstreamError, match="trailing"):
        coder.decode(payload + zlib.compress(b"\x00" * (10 << 20)), 32, 48)
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MB inflated, for a 32x48 map
    with pytest.raises(BitstreamError, match="inflate"):
        _bounded(lambda: coder.decode(bomb, 32, 48))


@pytest.mark.parametrize(
    "kind,name",
    [("map", "webp"), ("map", "jxl"), ("map", "mix"), ("coarse", "webp"), ("coarse", "jpeg"), ("coarse", "heif"),
     ("coarse", "avif"), ("coarse", "jxl")],
)
def test_trailing_bytes_are_refused(kind, name):
    coder = _available(kind, name)
    shape = (24, 40) if kind == "map" else (24, 40, 3)
    payload = coder.encode(np.full(shape, 7, np.uint8))
    assert coder.decode(payload, 24, 40).shape == shape
    for tail in (b"\x00", b"JUNK" * 100, payload):
        with pytest.raises(BitstreamError):
            coder.decode(payload + tail, 24, 40)


# ------------------------------------------------------------------ context map coder


@pytest.mark.parametrize("payload", [bytes([1, 0, 1, 0x55]), bytes([1, 0, 1]), bytes([1, 0, 1, 0, 0, 0, 0x80])])
def test_context_decoder_stops_when_its_payload_is_exhausted(payload):
    coder = ContextMapCoder()
    with pytest.raises(BitstreamError):
        _bounded(lambda: coder.decode(payload, 8192, 8192))
    with pytest.raises(BitstreamError):
        _bounded(lambda: coder.decode(payload, 1024, 2048))


def test_context_coder_refuses_label_counts_and_work_a_map_cannot_justify():
    coder = ContextMapCoder()
    with pytest.raises(BitstreamError, match="labels"):
        coder.decode(bytes([4, 0, 1, 2, 3, 4]), 2, 2)  # 5 labels in 4 pixels
    stripes = np.tile(np.arange(256, dtype=np.uint8), (256, 4))  # 256 labels, predictable from the row above
    with pytest.raises(ValueError, match="png"):
        coder.encode(stripes)
    assert np.array_equal(get_map_coder("png").decode(get_map_coder("png").encode(stripes), 256, 1024), stripes)
    # A stream asking for that work from a small payload (the encoder's bound lifted to write it) is refused fast.
    import spic_diffusers.codec.semantic as semantic

    limit = semantic._MAX_LABEL_WORK_PER_PIXEL
    semantic._MAX_LABEL_WORK_PER_PIXEL = 10**6
    try:
        big = np.tile(np.arange(256, dtype=np.uint8), (512, 16))  # 512x4096 = 2 M pixels
        payload = coder.encode(big)
    finally:
        semantic._MAX_LABEL_WORK_PER_PIXEL = limit
    with pytest.raises(BitstreamError, match="justifies"):
        _bounded(lambda: coder.decode(payload, 512, 4096))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 40), st.integers(1, 60), st.integers(1, 24), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1)
)
def test_context_coder_round_trips_whatever_its_exhaustion_test(height, width, labels, noise, seed):
    """The payload-exhaustion and work bounds never refuse a map the encoder wrote."""
    rng = np.random.default_rng(seed)
    smooth = np.repeat(rng.integers(0, labels, (height, 1)), width, axis=1)
    mask = rng.random((height, width)) < noise
    semantic_map = np.where(mask, rng.integers(0, labels, (height, width)), smooth).astype(np.uint8)
    coder = ContextMapCoder()
    assert np.array_equal(coder.decode(coder.encode(semantic_map), height, width), semantic_map)


# ----------------------------------------- declared sizes against payload sizes, every codec


def _payload_codecs():
    cases = [("map", name) for name in MAP_CODERS] + [("coarse", name) for name in COARSE_CODECS]
    return [pytest.param(kind, name, id=f"{kind}-{name}") for kind, name in cases]


@pytest.mark.parametrize("kind,name", _payload_codecs())
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    true_size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    claimed=st.one_of(
        st.tuples(st.integers(1, 48), st.integers(1, 48)),
        st.tuples(st.integers(1, 16384), st.integers(1, 16384)).filter(lambda s: s[0] * s[1] <= DEFAULT_MAX_PIXELS),
    ),
)
def test_declared_size_against_payload_size(kind, name, true_size, claimed):
    """A payload decodes only at the size it was coded for; any other size the container claims is refused
    in bounded time and memory, whatever the two sizes are."""
    coder = _available(kind, name)
    rng = np.random.default_rng(sum(true_size))
    shape = true_size if kind == "map" else (*true_size, 3)
    values = rng.integers(0, 4, shape).astype(np.uint8) * 60
    payload = coder.encode(values)
    same = claimed == true_size
    if name == "hevc":  # coded padded to even sides of at least 16, cropped by the container's size
        same = HEVCCodec.padded_size(*claimed) == HEVCCodec.padded_size(*true_size)
    one_label = len(np.unique(values)) == 1
    if kind == "map" and (name in SIZE_FROM_CONTAINER or (one_label and name in ONE_LABEL_SIZE_FREE)):
        # These payloads carry no size: any claimed size decodes or is refused, in bounded time and memory.
        try:
            decoded = _bounded(lambda: coder.decode(payload, *claimed))
        except BitstreamError:
            assert not same
        else:
            assert decoded.shape == claimed
        return
    if same:
        decoded = _bounded(lambda: coder.decode(payload, *claimed), seconds=10)
        assert decoded.shape[:2] == claimed
    else:
        with pytest.raises(BitstreamError):
            _bounded(lambda: coder.decode(payload, *claimed), seconds=10)


def test_whole_streams_with_swapped_sizes_are_refused():
    image = np.zeros((24, 40, 3), np.uint8)
    labels = np.zeros((24, 40), np.uint8)
    labels[:, 20:] = 3
    for map_coder, coarse_codec in (("context", "jpeg"), ("png", "webp"), ("jxl", "jxl"), ("webp", "avif")):
        stream = encode(image, labels, map_coder=map_coder, coarse_codec=coarse_codec)
        from spic_diffusers.codec import unpack_stream

        header, map_payload, coarse_payload = unpack_stream(stream)
        forged = pack_stream(height=40, width=24, downsample=4, map_coder=map_coder, coarse_codec=coarse_codec,
                             map_payload=map_payload, coarse_payload=coarse_payload)
        with pytest.raises(BitstreamError):
            _bounded(lambda: decode_parts(forged))


def _declare_size(name: str, payload: bytes, height: int, width: int) -> bytes:
    """Rewrite the size a real payload's own header declares, leaving its coded data as it was."""
    data = bytearray(payload)
    if name in ("heif", "avif"):
        at = data.find(b"ispe") + 8  # version/flags, then width and height
        data[at : at + 4], data[at + 4 : at + 8] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    elif name == "webp":
        assert data[12:16] == b"VP8 "  # lossy: 3-byte frame tag, 3-byte start code, then 14-bit sizes
        data[26:28], data[28:30] = width.to_bytes(2, "little"), height.to_bytes(2, "little")
    else:
        at = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        data[at + 5 : at + 7], data[at + 7 : at + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("name", ["heif", "avif", "webp", "jpeg"])
@pytest.mark.parametrize("declared", [(4000, 4000), (16383, 16383)])
def test_payload_headers_declaring_huge_images_are_refused_before_decoding(name, declared):
    codec = _available("coarse", name)
    payload = codec.encode(np.full((24, 40, 3), 90, np.uint8))
    if name == "webp":
        payload = b"RIFF" + (len(payload) + 4).to_bytes(4, "little") + b"WEBP" + payload
    forged = _declare_size(name, payload, *declared)
    if name == "webp":
        forged = forged[12:]
    with pytest.raises(BitstreamError):
        _bounded(lambda: codec.decode(forged, 24, 40))


def test_bpg_and_flif_sizes_are_read_from_their_headers_without_the_tools():
    from spic_diffusers.codec.payload_headers import bpg_size, flif_size

    # width 300 = 0b10_0101100 -> 0x82 0x2C; height 5 -> 0x05
    assert bpg_size(b"BPG\xfb\x00\x00\x82\x2c\x05" + b"\x00" * 4, "coarse") == (5, 300)
    assert flif_size(b"FLIF\x31\x08\x82\x2b\x04", "map") == (5, 300)  # sizes stored minus one
    with pytest.raises(BitstreamError, match="truncated"):
        bpg_size(b"BPG\xfb\x00\x00\x82", "coarse")
    with pytest.raises(BitstreamError, match="runaway"):
        flif_size(b"FLIF\x31\x08" + b"\xff" * 6, "map")


# ------------------------------------------------------------------ what a payload asks its decoder for


def _ue_bits(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def _escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (H.265 7.4.2), the inverse of what a decoder strips."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _forge_sps(payload: bytes, coded: tuple[int, int], output: tuple[int, int], bit_depth: int = 8) -> bytes:
    """Rewrite an x265 payload's SPS to code a ``coded`` picture cropped to ``output`` (4:4:4) at ``bit_depth``."""
    from spic_diffusers.codec.payload_headers import _Bits, _nal_units, _skip_profile_tier_level, _unescape

    units = _nal_units(payload, "test")
    index = next(i for i, unit in enumerate(units) if (unit[0] >> 1) & 0x3F == 33)
    rbsp = _unescape(units[index][2:])
    bits = _Bits(rbsp, "test", msb_first=True)
    bits.read(4)
    sub_layers = bits.read(3)
    bits.read(1)
    _skip_profile_tier_level(bits, sub_layers)
    bits.ue()
    assert bits.ue() == 3 and bits.read(1) == 0  # 4:4:4, one colour plane
    start = bits.pos
    bits.ue(), bits.ue()
    if bits.read(1):
        [bits.ue() for _ in range(4)]
    bits.ue(), bits.ue()
    old = "".join(f"{byte:08b}" for byte in rbsp)
    (coded_h, coded_w), (out_h, out_w) = coded, output
    new = _ue_bits(coded_w) + _ue_bits(coded_h) + "1" + "".join(map(_ue_bits, (0, coded_w - out_w, 0, coded_h - out_h)))
    new += _ue_bits(bit_depth - 8) * 2
    bitstring = (old[:start] + new + old[bits.pos :]).rstrip("0")  # up to and with the stop bit
    bitstring += "0" * (-len(bitstring) % 8)
    body = bytes(int(bitstring[i : i + 8], 2) for i in range(0, len(bitstring), 8))
    units[index] = units[index][:2] + _escape(body)
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def test_hevc_sps_forger_is_faithful():
    codec = _available("coarse", "hevc")
    image = np.full((16, 16, 3), 90, np.uint8)
    payload = codec.encode(image)
    same = _forge_sps(payload, (16, 16), (16, 16))
    assert np.array_equal(codec.decode(same, 16, 16), codec.decode(payload, 16, 16))


@pytest.mark.parametrize("bit_depth", [8, 10, 12])
def test_hevc_coded_size_cropped_by_its_conformance_window_is_refused(bit_depth):
    """A 14000x14000 picture cropped back to 16x16 (119 bytes) is refused before ffmpeg runs."""
    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((16, 16, 3), 90, np.uint8))
    forged = _forge_sps(payload, (14000, 14000), (16, 16), bit_depth)
    with pytest.raises(BitstreamError, match="codes a 14000x14000 picture"):
        _bounded(lambda: codec.decode(forged, 16, 16), seconds=2)


@pytest.mark.parametrize("bit_depth", [10, 12])
def test_hevc_bit_depth_other_than_the_encoders_is_refused(bit_depth):
    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((16, 16, 3), 90, np.uint8))
    with pytest.raises(BitstreamError, match=f"{bit_depth}/{bit_depth}-bit"):
        codec.decode(_forge_sps(payload, (16, 16), (16, 16), bit_depth), 16, 16)


def test_hevc_alignment_padding_within_the_margin_still_decodes():
    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((16, 16, 3), 90, np.uint8))
    with pytest.raises(BitstreamError, match="codes a 88x16 picture"):
        hevc_size(_forge_sps(payload, (88, 16), (16, 16)), "test")
    assert hevc_size(_forge_sps(payload, (80, 16), (16, 16)), "test") == (16, 16)


@pytest.mark.parametrize(
    "unit, count, match",
    [
        (b"\x4e\x01\x05\x01\x00\x80", 100_000, "SEI units"),  # prefix SEI, user data
        (b"\x50\x01\x05\x01\x00\x80", 5, "SEI units"),  # suffix SEI
        (b"\x40\x01\x0c\x01", 2, "more than one video"),
        (b"\x44\x01\xc1\x72", 2, "more than one picture"),
        (b"\x28\x01\x00\x80", 1, "1 smallest CTUs|slices"),  # a second slice segment of the same picture
        (b"\x02\x01\x80\x80", 1, "unexpected NAL unit of type 1"),  # a non-intra slice
        (b"\x28\x09\x80\x80", 1, "layer 1"),
        (b"\x46\x01\x50", 50_000, "unexpected NAL unit of type 35"),  # access-unit delimiters
    ],
)
def test_hevc_padding_with_extra_nal_units_is_refused(unit, count, match):
    """Hundreds of thousands of empty SEI, parameter sets or slices: counted against one intra picture."""
    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((16, 16, 3), 90, np.uint8))
    padded = payload + (b"\x00\x00\x01" + unit) * count
    with pytest.raises(BitstreamError, match=match):
        _bounded(lambda: codec.decode(padded, 16, 16), seconds=2)


def test_x265_payloads_pass_the_nal_unit_counts():
    _available("coarse", "hevc")
    for chroma in ("444", "420"):
        payload = get_coarse_codec("hevc", chroma=chroma).encode(np.full((40, 72, 3), 90, np.uint8))
        assert hevc_size(payload, "test") == (40, 72)


def test_decoder_subprocess_runs_under_its_own_bounds():
    """Defence in depth: ffmpeg itself runs with an address-space and CPU limit."""
    from spic_diffusers.codec import coarse

    codec = _available("coarse", "hevc")
    payload = codec.encode(np.full((16, 16, 3), 90, np.uint8))
    saved = coarse._DECODER_BASE_BYTES
    coarse._DECODER_BASE_BYTES = 8 << 20  # too little for ffmpeg to start
    try:
        with pytest.raises(BitstreamError, match="cannot be decoded"):
            codec.decode(payload, 16, 16)
    finally:
        coarse._DECODER_BASE_BYTES = saved
    assert codec.decode(payload, 16, 16).shape == (16, 16, 3)


def _heif_property(payload: bytes, kind: bytes) -> int:
    """Offset of an item property's body (after its 8-byte box header) in a HEIF/AVIF payload."""
    at = payload.find(kind)
    assert at > 0, kind
    return at + 4


@pytest.mark.parametrize("name", ["heif", "avif"])
def test_heif_image_size_property_cropped_by_a_clean_aperture_is_refused(name):
    """16000x16000 in ``ispe``, cropped to 24x32: Pillow reports 24x32, the property check refuses it."""
    codec = _available("coarse", name)
    data = bytearray(codec.encode(np.full((24, 32, 3), 90, np.uint8)))
    at = _heif_property(bytes(data), b"ispe") + 4
    data[at : at + 8] = (16000).to_bytes(4, "big") * 2
    with pytest.raises(BitstreamError, match="image size property says 16000x16000"):
        _bounded(lambda: codec.decode(bytes(data), 24, 32), seconds=2)


def test_heif_coded_hevc_size_beyond_its_image_size_is_refused():
    codec = _available("coarse", "heif")
    payload = codec.encode(np.full((24, 32, 3), 90, np.uint8))
    at = _heif_property(payload, b"hvcC")
    length = int.from_bytes(payload[at - 8 : at - 4], "big") - 8
    hvcc = payload[at : at + length]
    sps_at = hvcc.index(b"\x42\x01")  # the SPS's NAL header inside the configuration
    sps_length = int.from_bytes(hvcc[sps_at - 2 : sps_at], "big")
    sps = hvcc[sps_at : sps_at + sps_length]
    annexb = b"\x00\x00\x00\x01" + sps
    forged_sps = _forge_sps_from_chroma(annexb, (16000, 16000))
    new_hvcc = hvcc[: sps_at - 2] + len(forged_sps).to_bytes(2, "big") + forged_sps + hvcc[sps_at + sps_length :]
    grow = len(new_hvcc) - len(hvcc)
    forged = bytearray(payload[: at - 8] + (8 + len(new_hvcc)).to_bytes(4, "big") + b"hvcC" + new_hvcc
                       + payload[at + length :])
    for box in (b"meta", b"iprp", b"ipco"):  # the boxes around it grow with it
        box_at = forged.find(box) - 4
        size = int.from_bytes(forged[box_at : box_at + 4], "big")
        forged[box_at : box_at + 4] = (size + grow).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="codes a 16000x16000 picture"):
        _bounded(lambda: codec.decode(bytes(forged), 24, 32), seconds=2)


def _forge_sps_from_chroma(annexb_sps: bytes, coded: tuple[int, int]) -> bytes:
    """An SPS NAL unit (Annex-B framed on input, bare on output) coding ``coded``, cropped to its old output."""
    from spic_diffusers.codec.payload_headers import _nal_units, hevc_sequence

    seq = hevc_sequence(_nal_units(annexb_sps, "test")[0][2:], "test")
    forged = _forge_sps(annexb_sps, coded, (seq.height, seq.width))
    return _nal_units(forged, "test")[0]


@pytest.mark.parametrize("name", ["heif", "avif"])
@pytest.mark.parametrize("transform", [b"irot", b"imir"])
def test_heif_transforms_are_refused_for_coarse_payloads(name, transform):
    codec = _available("coarse", name)
    payload = codec.encode(np.full((24, 32, 3), 90, np.uint8))
    forged = payload.replace(b"pixi", transform, 1)  # same box size: only the property's type changes
    with pytest.raises(BitstreamError, match=f"'{transform.decode()}' transform"):
        codec.decode(forged, 24, 32)


def test_heif_clean_aperture_must_crop_to_the_declared_size():
    codec = _available("coarse", "heif")
    data = bytearray(codec.encode(np.full((24, 32, 3), 90, np.uint8)))
    at = _heif_property(bytes(data), b"clap")
    assert int.from_bytes(data[at : at + 4], "big") == 32 * int.from_bytes(data[at + 4 : at + 8], "big")
    data[at : at + 4] = (30 * int.from_bytes(data[at + 4 : at + 8], "big")).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="clean aperture"):
        codec.decode(bytes(data), 24, 32)


@pytest.mark.parametrize("name", ["heif", "avif"])
@pytest.mark.parametrize("size", [(1, 1), (24, 32), (65, 70), (100, 200)])
def test_heif_and_avif_encoder_output_passes_the_property_checks(name, size):
    codec = _available("coarse", name)
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(image), *size).shape == (*size, 3)
