"""Reading images: BGR decoding with OpenCV, corrupt/truncated detection, header-only size."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from ldnet.errors import LDNetError


class ImageError(LDNetError):
    """An image that cannot be used: missing, unreadable, corrupt or truncated."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 BGR (H, W, 3); raise ``ImageError`` with the reason.

    A JPEG without its end-of-image marker is reported as truncated: libjpeg would decode
    it with grey fill and only a warning on stderr.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError("missing image") from None
    except OSError as error:
        raise ImageError(f"unreadable image ({error.strerror or error})") from None
    if data.size == 0:
        raise ImageError("empty image file")
    is_jpeg = data.size > 3 and data[0] == 0xFF and data[1] == 0xD8
    if is_jpeg and b"\xff\xd9" not in data[-4096:].tobytes():
        raise ImageError("truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ImageError("corrupt image (cannot be decoded)")
    return image


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header without decoding; None if not found."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 < len(head):
        if head[pos] != 0xFF:
            pos += 1
            continue
        marker = head[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None
