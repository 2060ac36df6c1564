"""Schemathesis hooks for ``ldnet serve`` (named by ``schemathesis.toml``; only schemathesis
imports this module): a real image for each image type the OpenAPI schema names, and no
multipart case whose "wrong type" vanishes on the wire.

A raw body or the multipart field ``image`` is ``format: binary`` of a stated media type, and
JSON schema cannot say "a decodable JPEG". Schemathesis brings 1x1 samples of some types and
none of BMP, so a schema-valid case could carry bytes that are no image of their type and be
refused with 400. Here each type gets small real images instead; ``application/octet-stream``
(the server reads the format from the bytes) gets any of them.
"""

from __future__ import annotations

import cv2
import numpy as np
import schemathesis
from hypothesis import strategies as st

from .contract import RAW_BODY_TYPES

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/bmp": ".bmp"}
SIZES = ((48, 64), (97, 61))  # (height, width): small, and odd on one side


def sample_images() -> dict[str, list[bytes]]:
    """Per media type, the same few gradient images encoded in that format."""
    images = []
    for height, width in SIZES:
        rows, cols = np.mgrid[0:height, 0:width]
        images.append(np.dstack([rows * 255 // height, cols * 255 // width, rows * 0 + 128]))
    encoded = {}
    for media_type, extension in EXTENSIONS.items():
        encoded[media_type] = [
            cv2.imencode(extension, i.astype(np.uint8))[1].tobytes() for i in images
        ]
    return encoded


def register_media_types() -> None:
    samples = sample_images()
    everything = [data for datas in samples.values() for data in datas]
    for media_type in RAW_BODY_TYPES:
        schemathesis.openapi.media_type(
            media_type, st.sampled_from(samples.get(media_type, everything))
        )


@schemathesis.hook
def filter_case(context, case) -> bool:
    """Drop a multipart body with a field drawn as an empty list (a type mutation of the
    negative phase): it is sent as no part at all, so the request on the wire is the valid one
    without that field, and its 200 would be reported as "schema-violating request accepted"
    (schemathesis 4.32.5). A list with items is sent as a repeated field, which the server
    refuses (400), and stays in."""
    body = case.body
    multipart = (case.media_type or "").startswith("multipart/")
    return not (multipart and isinstance(body, dict) and any(v == [] for v in body.values()))


register_media_types()
