"""Read what a payload declares (its image size, where it ends) before anything decodes it.

A payload's cost is set by the size its own header claims, not by the container's: a 2 KB JPEG XL
codestream can declare 16384x16384.  Every payload codec therefore checks the declared size against
the container's and refuses trailing bytes before a decoder runs.  Pillow reads PNG, WebP, HEIF,
AVIF and JPEG headers lazily on ``Image.open``; the functions here cover what it cannot:

* JPEG XL: ``pillow-jxl-plugin`` decodes the whole image on open, so the codestream's SizeHeader
  (ISO/IEC 18181-1, a few bits after the ``FF 0A`` signature) is read here;
* raw HEVC: ffmpeg is an external process; the SPS gives the picture size, and a payload must hold
  exactly one picture (VPS, SPS, PPS, slices);
* BPG and FLIF: external tools, with short fixed headers;
* the container layers (RIFF chunks, ISO-BMFF boxes, JPEG markers, zlib) whose trailing bytes
  the libraries silently ignore.

Every failure is a :class:`BitstreamError` naming the payload.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

from .bitstream import BitstreamError


class _Bits:
    """LSB-first (JPEG XL) or MSB-first (HEVC) bit reader that fails cleanly at the end of its data."""

    def __init__(self, data: bytes, label: str, msb_first: bool):
        self.data, self.label, self.msb_first, self.pos = data, label, msb_first, 0

    def read(self, count: int) -> int:
        if self.pos + count > 8 * len(self.data):
            raise BitstreamError(f"{self.label} payload header is truncated")
        value = 0
        for i in range(count):
            byte = self.data[(self.pos + i) >> 3]
            shift = 7 - ((self.pos + i) & 7) if self.msb_first else (self.pos + i) & 7
            bit = (byte >> shift) & 1
            value = (value << 1) | bit if self.msb_first else value | (bit << i)
        self.pos += count
        return value

    def ue(self) -> int:
        """Unsigned Exp-Golomb (HEVC), at most 32 bits of prefix."""
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError(f"{self.label} payload header has a runaway Exp-Golomb code")
        return (1 << zeros) - 1 + self.read(zeros)


# ------------------------------------------------------------------------------------ JPEG XL


def _jxl_u32(bits: _Bits) -> int:
    selector = bits.read(2)
    return bits.read((9, 13, 18, 30)[selector]) + 1


_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def jxl_size(data: bytes, label: str) -> tuple[int, int]:
    """``(height, width)`` from a bare JPEG XL codestream's SizeHeader, without decoding anything."""
    if data[:2] != b"\xff\x0a":
        raise BitstreamError(f"{label} payload is not a bare JPEG XL codestream")
    bits = _Bits(data[2:], label, msb_first=False)
    div8 = bits.read(1)
    height = 8 * (bits.read(5) + 1) if div8 else _jxl_u32(bits)
    ratio = bits.read(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    else:
        width = 8 * (bits.read(5) + 1) if div8 else _jxl_u32(bits)
    return height, width


def check_jxl_end(data: bytes, label: str) -> None:
    """Refuse bytes after a JPEG XL codestream's last section (libjxl ignores them).

    The codestream's table of contents gives every section's exact length, so a codestream without
    trailing bytes cannot decode once its last byte is dropped; one that still decodes had a tail.
    Call only after the declared size passed, since this decodes the payload once more.
    """
    from pillow_jxl import Decoder

    try:
        Decoder(num_threads=0)(bytes(data[:-1]))
    except Exception:  # noqa: BLE001  (libjxl reports a truncated codestream as a generic error)
        return
    raise BitstreamError(f"{label} payload has trailing bytes after its codestream")


# --------------------------------------------------------------------------------------- HEVC

_VPS, _SPS, _PPS = 32, 33, 34
_SEI_TYPES = (39, 40)
_IRAP_SLICES = range(16, 22)  # BLA, IDR and CRA: the slices an intra picture that stands alone is made of
# What the decoder may be asked for beyond what one intra picture needs.  x265 writes one VPS, SPS and PPS and
# (with its version and hash SEI on) two SEI units; a coded picture is at most 64 samples per side larger than
# its output (CTU alignment); the project codes 8-bit samples.
MAX_PARAMETER_SETS = 1
MAX_SEI_UNITS = 4
HEVC_ALIGNMENT_MARGIN = 64
HEVC_BIT_DEPTH = 8
_MIN_CTU = 16


class HEVCSequence(NamedTuple):
    """What an HEVC sequence parameter set makes a decoder allocate, and what it outputs."""

    chroma_format: int
    coded_height: int
    coded_width: int
    height: int  # after the conformance window
    width: int
    bit_depth_luma: int
    bit_depth_chroma: int


def _nal_units(data: bytes, label: str) -> list[bytes]:
    """Split an Annex-B stream at its start codes."""
    if not (data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")):
        raise BitstreamError(f"{label} payload does not start with an Annex-B start code")
    units, start = [], data.index(b"\x00\x00\x01") + 3
    while True:
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        unit = data[start:end]
        if nxt >= 0 and unit.endswith(b"\x00"):  # the zero byte of a 4-byte start code
            unit = unit.rstrip(b"\x00")
        units.append(unit)
        if nxt < 0:
            return units
        start = nxt + 3


def _unescape(unit: bytes) -> bytes:
    """Drop the emulation-prevention byte of every ``00 00 03`` (H.265 7.4.2)."""
    return unit.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_profile_tier_level(bits: _Bits, max_sub_layers_minus1: int) -> None:
    bits.read(96)  # general profile space .. general_level_idc
    present = [(bits.read(1), bits.read(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.read(2 * (8 - max_sub_layers_minus1))
    for profile, level in present:
        bits.read(88 * profile + 8 * level)


def hevc_sequence(sps: bytes, label: str) -> HEVCSequence:
    """Parse an SPS's payload (after the 2-byte NAL header, escaped) up to its bit depths (H.265 7.3.2.2)."""
    bits = _Bits(_unescape(sps), label, msb_first=True)
    bits.read(4)
    max_sub_layers_minus1 = bits.read(3)
    bits.read(1)
    _skip_profile_tier_level(bits, max_sub_layers_minus1)
    bits.ue()  # sps_seq_parameter_set_id
    chroma = bits.ue()
    if chroma > 3:
        raise BitstreamError(f"{label} payload has an invalid chroma format {chroma}")
    if chroma == 3 and bits.read(1):
        raise BitstreamError(f"{label} payload codes its colour planes separately")
    coded_width, coded_height = bits.ue(), bits.ue()
    width, height = coded_width, coded_height
    if bits.read(1):
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_w, sub_h = (2 if chroma in (1, 2) else 1), (2 if chroma == 1 else 1)
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if width < 1 or height < 1:
        raise BitstreamError(f"{label} payload declares an empty picture")
    depth_luma, depth_chroma = bits.ue() + 8, bits.ue() + 8
    return HEVCSequence(chroma, coded_height, coded_width, height, width, depth_luma, depth_chroma)


def check_hevc_bit_depth(seq: HEVCSequence, label: str) -> None:
    """Our streams are 8-bit; a deeper one doubles what the decoder allocates per sample."""
    if (seq.bit_depth_luma, seq.bit_depth_chroma) != (HEVC_BIT_DEPTH, HEVC_BIT_DEPTH):
        raise BitstreamError(
            f"{label} payload codes {seq.bit_depth_luma}/{seq.bit_depth_chroma}-bit samples, expected"
            f" {HEVC_BIT_DEPTH}-bit"
        )


def check_hevc_sequence(seq: HEVCSequence, label: str) -> None:
    """What the decoder allocates must be close to what it outputs: coded size, then bit depth.

    A conformance window may crop a 14000x14000 coded picture to 16x16; the output size alone would pass.
    """
    margin = HEVC_ALIGNMENT_MARGIN
    if seq.coded_width > seq.width + margin or seq.coded_height > seq.height + margin:
        raise BitstreamError(
            f"{label} payload codes a {seq.coded_height}x{seq.coded_width} picture for a {seq.height}x{seq.width}"
            f" output (at most {margin} samples of alignment per side)"
        )
    check_hevc_bit_depth(seq, label)


def hevc_size(data: bytes, label: str) -> tuple[int, int]:
    """``(height, width)`` of the one picture of a raw HEVC payload (after its conformance window).

    Refuses payloads that are not exactly one VPS, SPS and PPS, a few SEI and the intra slices of one picture,
    and pictures whose coded size or bit depth ask the decoder for more than the output needs.
    """
    sps, pictures, slices, sei = None, 0, 0, 0
    counts = {_VPS: 0, _SPS: 0, _PPS: 0}
    for unit in _nal_units(data, label):
        if len(unit) < 2 or unit[0] & 0x80:
            raise BitstreamError(f"{label} payload holds a malformed NAL unit")
        kind = (unit[0] >> 1) & 0x3F
        layer, temporal_plus1 = ((unit[0] & 1) << 5) | (unit[1] >> 3), unit[1] & 7
        if layer != 0 or temporal_plus1 != 1:
            raise BitstreamError(f"{label} payload holds a NAL unit of layer {layer}, temporal id {temporal_plus1 - 1}")
        if kind in counts:
            counts[kind] += 1
            if counts[kind] > MAX_PARAMETER_SETS:
                name = {_VPS: "video", _SPS: "sequence", _PPS: "picture"}[kind]
                raise BitstreamError(f"{label} payload holds more than one {name} parameter set")
            if kind == _SPS:
                sps = unit[2:]
        elif kind in _IRAP_SLICES:  # a slice: its first bit says whether it starts a picture
            if len(unit) < 3:
                raise BitstreamError(f"{label} payload holds a truncated slice")
            pictures += unit[2] >> 7
            slices += 1
        elif kind in _SEI_TYPES:
            sei += 1
            if sei > MAX_SEI_UNITS:
                raise BitstreamError(f"{label} payload holds more than {MAX_SEI_UNITS} SEI units")
        else:
            raise BitstreamError(f"{label} payload holds an unexpected NAL unit of type {kind}")
    if sps is None:
        raise BitstreamError(f"{label} payload has no sequence parameter set")
    if pictures != 1:
        raise BitstreamError(f"{label} payload holds {pictures} pictures, expected exactly one")
    seq = hevc_sequence(sps, label)
    check_hevc_sequence(seq, label)
    # Every slice covers at least one CTU (16x16 at the smallest), so a picture has no more slices than that.
    ctus = -(-seq.coded_width // _MIN_CTU) * -(-seq.coded_height // _MIN_CTU)
    if slices > ctus:
        raise BitstreamError(f"{label} payload holds {slices} slices, more than its {ctus} smallest CTUs")
    return seq.height, seq.width


# ------------------------------------------------------------------------- BPG and FLIF tools


def _two_size_fields(data: bytes, label: str) -> list[int]:
    """The two big-endian 7-bit varints (width, height) after a 6-byte magic + format prefix (BPG and FLIF)."""
    offset, values = 6, []
    for _ in range(2):
        value = 0
        for count in range(5):
            if offset >= len(data):
                raise BitstreamError(f"{label} payload header is truncated")
            byte = data[offset]
            offset += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
            if count == 4:
                raise BitstreamError(f"{label} payload header has a runaway size field")
        values.append(value)
    return values


def bpg_size(data: bytes, label: str) -> tuple[int, int]:
    """``(height, width)`` from a BPG file header (magic, two format bytes, two ue7 sizes)."""
    if data[:4] != b"BPG\xfb":
        raise BitstreamError(f"{label} payload is not a BPG file")
    values = _two_size_fields(data, label)
    width, height = values
    return height, width


def flif_size(data: bytes, label: str) -> tuple[int, int]:
    """``(height, width)`` from a FLIF file header (magic, two format bytes, two varints of size - 1)."""
    if data[:4] != b"FLIF" or len(data) < 6:
        raise BitstreamError(f"{label} payload is not a FLIF file")
    values = [value + 1 for value in _two_size_fields(data, label)]
    width, height = values
    return height, width


# ---------------------------------------------------------------- container layers (trailing data)


_WEBP_IMAGE_CHUNKS = (b"VP8 ", b"VP8L")


def check_riff_chunks(chunks: bytes, label: str) -> None:
    """The chunks after a WebP file header: one still image, ending exactly where the payload ends.

    A simple file is one ``VP8 `` or ``VP8L`` chunk; an extended one (``VP8X`` first) may add alpha and
    metadata chunks but no animation and no second image.
    """
    offset, kinds = 0, []
    while offset < len(chunks):
        if offset + 8 > len(chunks):
            raise BitstreamError(f"{label} payload ends inside a chunk header")
        kinds.append(chunks[offset : offset + 4])
        size = int.from_bytes(chunks[offset + 4 : offset + 8], "little")
        offset += 8 + size + (size & 1)
    if offset != len(chunks) or not chunks:
        raise BitstreamError(f"{label} payload's chunks do not end where the payload ends (trailing or missing bytes)")
    images = sum(kind in _WEBP_IMAGE_CHUNKS for kind in kinds)
    if images != 1 or (kinds[0] != b"VP8X" and len(kinds) != 1) or b"ANMF" in kinds or b"ANIM" in kinds:
        raise BitstreamError(f"{label} payload is not one still image (chunks {[k.decode('latin-1') for k in kinds]})")


def check_isobmff_boxes(data: bytes, label: str) -> None:
    """Top-level ISO-BMFF boxes (HEIF, AVIF): ``ftyp`` first, no box type twice, covering the payload exactly."""
    offset, kinds = 0, []
    while offset < len(data):
        if offset + 8 > len(data):
            raise BitstreamError(f"{label} payload ends inside a box header")
        size = int.from_bytes(data[offset : offset + 4], "big")
        if size == 1:
            if offset + 16 > len(data):
                raise BitstreamError(f"{label} payload ends inside a box header")
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            raise BitstreamError(f"{label} payload holds a box of impossible size {size}")
        kinds.append(data[offset + 4 : offset + 8])
        offset += size
    if offset != len(data) or not data:
        raise BitstreamError(f"{label} payload's boxes do not end where the payload ends (trailing or missing bytes)")
    if kinds[0] != b"ftyp" or len(set(kinds)) != len(kinds):
        raise BitstreamError(f"{label} payload is not one image file (boxes {[k.decode('latin-1') for k in kinds]})")


def _boxes(data: bytes, start: int, end: int, label: str):
    """``(type, body start, body end)`` of the ISO-BMFF boxes that exactly fill ``data[start:end]``."""
    offset = start
    while offset < end:
        if offset + 8 > end:
            raise BitstreamError(f"{label} payload ends inside a box header")
        size, header = int.from_bytes(data[offset : offset + 4], "big"), 8
        if size == 1:
            if offset + 16 > end:
                raise BitstreamError(f"{label} payload ends inside a box header")
            size, header = int.from_bytes(data[offset + 8 : offset + 16], "big"), 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise BitstreamError(f"{label} payload holds a box of impossible size {size}")
        yield data[offset + 4 : offset + 8], offset + header, offset + size
        offset += size


def _child(data: bytes, start: int, end: int, kind: bytes, label: str) -> tuple[int, int]:
    found = [(s, e) for k, s, e in _boxes(data, start, end, label) if k == kind]
    if len(found) != 1:
        raise BitstreamError(f"{label} payload holds {len(found)} '{kind.decode()}' boxes, expected one")
    return found[0]


# HEIF encoders pad a picture to their coding unit (libheif with x265: at least 64x64, then to even sides).
HEIF_MIN_CODED_SIDE = 64
MAX_IMAGE_PROPERTIES = 32
_TRANSFORM_PROPERTIES = (b"irot", b"imir")


def _heif_side_limit(side: int) -> int:
    return max(side, HEIF_MIN_CODED_SIDE) + HEVC_ALIGNMENT_MARGIN


def _hvcc_sequences(data: bytes, label: str) -> list[HEVCSequence]:
    """The SPSs of an ``hvcC`` decoder configuration (ISO/IEC 14496-15 8.3.3)."""
    if len(data) < 23:
        raise BitstreamError(f"{label} payload has a truncated HEVC configuration")
    offset, sequences = 23, []
    for _ in range(data[22]):
        if offset + 3 > len(data):
            raise BitstreamError(f"{label} payload has a truncated HEVC configuration")
        kind, count = data[offset] & 0x3F, int.from_bytes(data[offset + 1 : offset + 3], "big")
        offset += 3
        for _ in range(count):
            length = int.from_bytes(data[offset : offset + 2], "big")
            unit = data[offset + 2 : offset + 2 + length]
            if len(unit) != length or length < 2:
                raise BitstreamError(f"{label} payload has a truncated HEVC configuration")
            offset += 2 + length
            if kind == _SPS:
                sequences.append(hevc_sequence(unit[2:], label))
    return sequences


def check_heif_properties(data: bytes, label: str, height: int, width: int) -> None:
    """What a HEIF or AVIF file asks its decoder for, from its item properties, before it decodes.

    Pillow reports a picture's size after its clean aperture (``clap``), so a 16000x16000 image size
    (``ispe``) cropped to 24x32 would pass the declared-size check.  Every ``ispe`` and every coded
    HEVC size (``hvcC``) must be within alignment padding of the declared ``height x width``, a ``clap``
    may only crop to exactly that size, and rotations and mirrors (``irot``, ``imir``) are refused.
    """
    meta_start, meta_end = _child(data, 0, len(data), b"meta", label)
    iprp = _child(data, meta_start + 4, meta_end, b"iprp", label)  # meta is a full box: version and flags first
    ipco = _child(data, *iprp, b"ipco", label)
    limit_h, limit_w = _heif_side_limit(height), _heif_side_limit(width)
    properties = list(_boxes(data, *ipco, label))
    if len(properties) > MAX_IMAGE_PROPERTIES:
        raise BitstreamError(f"{label} payload holds {len(properties)} item properties")
    for kind, start, end in properties:
        body = data[start:end]
        if kind in _TRANSFORM_PROPERTIES:
            raise BitstreamError(f"{label} payload has a '{kind.decode()}' transform, refused for a coarse image")
        if kind == b"ispe":
            if len(body) < 12:
                raise BitstreamError(f"{label} payload has a truncated image size")
            ispe_w, ispe_h = int.from_bytes(body[4:8], "big"), int.from_bytes(body[8:12], "big")
            if ispe_w > limit_w or ispe_h > limit_h:
                raise BitstreamError(
                    f"{label} payload's image size property says {ispe_h}x{ispe_w} for a {height}x{width} image"
                )
        elif kind == b"clap":
            if len(body) < 16:
                raise BitstreamError(f"{label} payload has a truncated clean aperture")
            fields = [int.from_bytes(body[i : i + 4], "big") for i in range(0, 16, 4)]
            if fields[1] == 0 or fields[3] == 0 or (fields[0], fields[2]) != (width * fields[1], height * fields[3]):
                raise BitstreamError(f"{label} payload's clean aperture is not its {height}x{width} image")
        elif kind == b"hvcC":
            for seq in _hvcc_sequences(body, label):
                if seq.coded_width > limit_w or seq.coded_height > limit_h:
                    raise BitstreamError(
                        f"{label} payload codes a {seq.coded_height}x{seq.coded_width} picture for a"
                        f" {height}x{width} image"
                    )
                check_hevc_bit_depth(seq, label)


def check_jpeg_markers(data: bytes, label: str) -> None:
    """A JPEG payload must run from SOI through its segments and scans to an EOI that is its last byte."""
    if data[:2] != b"\xff\xd8":
        raise BitstreamError(f"{label} payload is not a JPEG file")
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise BitstreamError(f"{label} payload has a damaged marker structure")
        marker = data[offset + 1]
        if marker == 0xD9:
            break
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 2 + length
        if marker == 0xDA:  # a scan: entropy-coded data up to the next marker that is not stuffing or RST
            while True:
                offset = data.find(b"\xff", offset)
                if offset < 0 or offset + 1 >= len(data):
                    raise BitstreamError(f"{label} payload ends inside a scan")
                following = data[offset + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    offset += 2
                    continue
                break
    if data[offset : offset + 2] != b"\xff\xd9":
        raise BitstreamError(f"{label} payload has no end-of-image marker")
    if offset + 2 != len(data):
        raise BitstreamError(f"{label} payload has {len(data) - offset - 2} bytes after its end-of-image marker")


def check_zlib(data: bytes, expected: int, label: str) -> None:
    """A zlib stream must inflate to exactly ``expected`` bytes and end where the payload ends.

    Inflating stops one byte past ``expected``, so a zlib bomb costs no more than the image it claims.
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, expected + 1)
    except zlib.error as err:
        raise BitstreamError(f"{label} payload cannot be decoded ({err})") from None
    if len(out) != expected or not inflater.eof:
        raise BitstreamError(f"{label} payload does not inflate to the {expected} bytes its size implies")
    if inflater.unused_data:
        raise BitstreamError(f"{label} payload has {len(inflater.unused_data)} bytes of trailing data")


def check_declared_size(declared: tuple[int, int], height: int, width: int, label: str) -> None:
    if tuple(declared) != (height, width):
        raise BitstreamError(
            f"{label} payload declares a {declared[0]}x{declared[1]} image, the header implies {height}x{width}"
        )
