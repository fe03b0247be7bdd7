"""Frame sizes read from JPEG / PNG headers without decoding (checked before any decode).

Ours, not simplejpeg.decode_jpeg_header: that refuses JPEGs of uncommon chroma sampling that the
reader's OpenCV fallback decodes (KeyError on 4:4:1), and is no faster (1.5 us a header either way).

Reading a few header bytes costs microseconds; a full image library open costs a few hundred,
which is most of the time a loader spends per frame after the decode itself.
"""

from __future__ import annotations

from typing import NamedTuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IHDR_END = 24  # signature (8) + chunk length (4) + "IHDR" (4) + width (4) + height (4)
PNG_HEADER_BYTES = PNG_IHDR_END + 2  # ... + bit depth (1) + colour type (1)
JPEG_START = b"\xff\xd8"
# Start-of-frame markers carry the image size; C4 (Huffman), C8 (reserved), CC (arithmetic) do not.
JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # no length field follows these


class PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    colour_type: int  # 6 is RGBA, 2 RGB, 0 grey, 4 grey + alpha, 3 palette


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG; ValueError if the bytes are not a PNG header."""
    if len(data) < PNG_IHDR_END or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def png_header(data: bytes) -> PngHeader:
    """Size, bit depth and colour type of a PNG from its first PNG_HEADER_BYTES bytes;
    ValueError if the bytes do not start a PNG."""
    width, height = png_size(data)
    if len(data) < PNG_HEADER_BYTES:
        raise ValueError("not a PNG image (header cut short)")
    return PngHeader(width, height, data[PNG_IHDR_END], data[PNG_IHDR_END + 1])


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment; ValueError if there is none."""
    if not data.startswith(JPEG_START):
        raise ValueError("not a JPEG image")
    position = len(JPEG_START)
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError("not a JPEG image (broken marker sequence)")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in JPEG_FRAME_MARKERS:
            if position + 9 > len(data):
                break
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    raise ValueError("not a JPEG image (no frame header)")


def image_size(data: bytes, codec: str) -> tuple[int, int]:
    """(width, height) of a frame encoded as `codec` ("jpg" or "png")."""
    return jpeg_size(data) if codec == "jpg" else png_size(data)
