"""Request inputs -> a decoded BGR image, checked person boxes and the flip flag.

Status codes follow what the client got wrong: a format the server does not read is 415, bytes
that claim to be an image but do not decode are 400, ``boxes`` or ``flip`` not in their format
(``BOXES_PATTERN``, ``FLIP_VALUES``: the OpenAPI schema states the same constants) are 400,
boxes that cannot be a person in this image (outside it, zero size) are 422.
"""

from __future__ import annotations

import json
import re
import struct

import cv2
import numpy as np

from ldnet.predict.boxes import box_problem

from .errors import ServeError

# Magic bytes of the formats OpenCV decodes and browsers send (camera frames are JPEG).
FORMATS = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/bmp": (b"BM",),
    "image/webp": (b"RIFF",),  # + "WEBP" at offset 8, checked below
}
# Content types that say nothing about the format: the bytes decide.
UNTYPED = ("", "application/octet-stream", "image/*")
SUPPORTED_TEXT = "JPEG, PNG, WebP or BMP"
# ``boxes``: JSON [[x, y, w, h], ...] of JSON numbers (so no NaN or Infinity, which Python's
# json reads), JSON whitespace only. The regex is the whole format: what matches it parses into
# (N, 4) numbers, what does not is refused; it has no nested ambiguity, so matching is linear.
_JSON_WS = r"[ \t\n\r]*"
_JSON_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
_BOX = rf"\[{_JSON_WS}{_JSON_NUMBER}{_JSON_WS}(,{_JSON_WS}{_JSON_NUMBER}{_JSON_WS}){{3}}\]"
BOXES_PATTERN = (
    rf"^{_JSON_WS}\[{_JSON_WS}({_BOX}{_JSON_WS}(,{_JSON_WS}{_BOX}{_JSON_WS})*)?\]{_JSON_WS}$"
)
BOXES_FORMAT = "JSON [[x, y, w, h], ...] of numbers in image pixels"
# ``flip`` as OpenAPI writes a boolean in a query or a form field: exactly these two words.
FLIP_VALUES = {"true": True, "false": False}
# Larger images are refused before decoding: a small, highly compressed PNG can decode to
# gigabytes (a "decompression bomb"). 50 megapixels is a 8660 x 5773 photo.
MAX_PIXELS = 50_000_000


def sniff_format(data: bytes) -> str | None:
    """The content type the bytes start like, or None."""
    for content_type, magics in FORMATS.items():
        if any(data.startswith(magic) for magic in magics):
            if content_type == "image/webp" and data[8:12] != b"WEBP":
                continue
            return content_type
    return None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def decode_image(data: bytes, content_type: str | None, field: str = "body") -> np.ndarray:
    """Image bytes -> uint8 BGR (H, W, 3), decoded as ``ldnet predict`` reads a file
    (EXIF orientation ignored, so keypoints match the stored pixels)."""
    declared = _media_type(content_type)
    if declared not in UNTYPED and declared not in FORMATS:
        raise ServeError(
            f"{field}: unsupported content type {declared!r}; send {SUPPORTED_TEXT}", 415
        )
    if not data:
        raise ServeError(f"{field}: empty image", 400)
    found = sniff_format(data)
    if found is None:
        if declared in UNTYPED:
            raise ServeError(f"{field}: not a {SUPPORTED_TEXT} image", 415)
        raise ServeError(f"{field}: corrupt image (not {declared} data)", 400)
    if found == "image/jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise ServeError(f"{field}: truncated JPEG (no end-of-image marker)", 400)
    size = _header_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ServeError(
            f"{field}: {size[0]}x{size[1]} image is larger than {MAX_PIXELS // 1_000_000} "
            "megapixels",
            413,
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ServeError(f"{field}: corrupt image (cannot be decoded)", 400)
    return image


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone, before any pixel is decoded; None if not
    found (OpenCV's own limit still applies then)."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data.startswith(b"RIFF") and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return (
                int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1,
            )
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    return _jpeg_size(data)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame marker (SOF0..SOF15 but DHT, JPG
    and DAC), which holds height and width."""
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return None


def parse_boxes(text: str | None, image_shape: tuple[int, ...]) -> np.ndarray | None:
    """``boxes`` as sent (``BOXES_PATTERN``) -> (N, 4) floats; None if absent."""
    if text is None:
        return None
    check_boxes_format(text)
    # Every number as a float: a 5000-digit integer is inf (then refused below), not the
    # ValueError of Python's limit on integer digits.
    values = json.loads(text, parse_int=float)
    boxes = np.asarray(values, dtype=np.float64).reshape(-1, 4)
    for index, box in enumerate(boxes):
        problem = box_problem(box, image_shape)
        if problem:
            values_text = ", ".join(f"{v:g}" for v in box)
            raise ServeError(f"boxes: box {index} ({values_text}) {problem}", 422)
    return boxes


def check_boxes_format(text: str | None) -> None:
    """400 unless ``boxes`` is absent or matches ``BOXES_PATTERN``."""
    if text is not None and re.fullmatch(BOXES_PATTERN, text) is None:
        raise ServeError(f"boxes: expected {BOXES_FORMAT}, got {text[:40]!r}", 400)


def parse_flip(text: str | None, default: bool = True) -> bool:
    """``flip`` as sent (``FLIP_VALUES``) -> bool; ``default`` if absent."""
    if text is None:
        return default
    if text not in FLIP_VALUES:
        raise ServeError(f"flip: expected true or false, got {text[:40]!r}", 400)
    return FLIP_VALUES[text]
