"""What to predict on: one image, a folder of images, a video file or a camera.

Each yields ``Frame``s. A frame of a folder that cannot be read carries its ``error``
instead of an image, so the caller can report it and go on with the rest. Image ids follow
COCO: a file named by its COCO id (``000000000139.jpg``) gets that id, so the results can be
scored against COCO annotations; other files get their position in the folder, and video
frames their index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ldnet.data.images import ImageError, read_image

from .errors import PredictInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class SourceError(PredictInputError):
    """A source that cannot be read at all."""


@dataclass
class Frame:
    name: str  # file name, or "frame 000012"
    image_id: int
    index: int  # position in the source
    image: np.ndarray | None  # uint8 BGR (H, W, 3); None when unreadable
    error: str | None = None
    time_s: float | None = None  # video/camera: presentation time


def image_id_of(path: Path, position: int) -> int:
    return int(path.stem) if path.stem.isdigit() else position


class ImageSource:
    kind = "image"

    def __init__(self, paths: list[Path], source: str):
        self.paths, self.source, self.fps = paths, source, None
        self.skipped: list[tuple[str, str]] = []  # (name, reason) of files left out up front

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for position, path in enumerate(self.paths):
            image_id = image_id_of(path, position)
            try:
                image = read_image(path)
            except ImageError as error:
                yield Frame(path.name, image_id, position, None, str(error))
                continue
            yield Frame(path.name, image_id, position, image)


class VideoSource:
    def __init__(self, capture: cv2.VideoCapture, source: str, kind: str):
        self.capture, self.source, self.kind = capture, source, kind
        self.skipped: list[tuple[str, str]] = []
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else 30.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if kind == "video" and count > 0 else None

    def __len__(self) -> int:
        return self.frame_count or 0

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, image = self.capture.read()
                if not ok:
                    break
                yield Frame(f"frame {index:06d}", index, index, image, time_s=index / self.fps)
                index += 1
        finally:
            self.capture.release()
        if index == 0:
            raise SourceError(f"{self.source}: no frame could be decoded")


def _single_image(path: Path) -> ImageSource:
    try:
        read_image(path)
    except ImageError as error:
        raise SourceError(f"{path}: {error}") from None
    return ImageSource([path], str(path))


def _folder(path: Path) -> ImageSource:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise SourceError(
            f"{path}: no images in the folder (supported: {' '.join(IMAGE_SUFFIXES)})"
        )
    source = ImageSource(images, str(path))
    source.skipped = [
        (p.name, f"unsupported file type {p.suffix or '(none)'!r}")
        for p in files
        if p.suffix.lower() not in IMAGE_SUFFIXES
    ]
    return source


def _video(path: Path) -> VideoSource:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"{path}: video cannot be opened (unsupported or corrupt)")
    return VideoSource(capture, str(path), "video")


def open_source(spec: str | Path) -> ImageSource | VideoSource:
    """An image file, a folder of images, a video file, or a camera index (``"0"``)."""
    text = str(spec)
    path = Path(text)
    if not path.exists() and text.isdigit():
        capture = cv2.VideoCapture(int(text))
        if not capture.isOpened():
            raise SourceError(f"camera {text} cannot be opened")
        return VideoSource(capture, f"camera {text}", "camera")
    if path.is_dir():
        return _folder(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file, folder or camera")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _single_image(path)
    if suffix in VIDEO_SUFFIXES:
        return _video(path)
    raise SourceError(
        f"{path}: unsupported file type {suffix or '(none)'!r} (images: "
        f"{' '.join(IMAGE_SUFFIXES)}; videos: {' '.join(VIDEO_SUFFIXES)})"
    )
