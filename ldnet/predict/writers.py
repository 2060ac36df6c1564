"""Outputs of ``ldnet predict``, each written to a temporary file beside its target and
renamed into place when complete: an interrupted or failed run leaves no half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ldnet.files import atomic_path

from .errors import PredictInputError


def write_image(path: str | Path, image_bgr: np.ndarray) -> Path:
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".jpg", image_bgr)
    if not ok:
        raise PredictInputError(f"{path}: OpenCV cannot encode this image format")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
    return path


class VideoWriter:
    """An MP4 (``mp4v``) written frame by frame into a temporary file; ``close()`` renames
    it into place, ``abort()`` (or an exception inside ``with``) deletes it."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=".mp4", dir=self.path.parent
        )
        os.close(handle)
        self.temporary = Path(name)
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if self.writer is None:
            height, width = frame_bgr.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(str(self.temporary), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                raise PredictInputError(f"{self.path}: OpenCV cannot write an mp4v video here")
        self.writer.write(frame_bgr)
        self.frames += 1

    def close(self) -> Path | None:
        if self.writer is not None:
            self.writer.release()
        if self.frames == 0:
            self.temporary.unlink(missing_ok=True)
            return None
        os.replace(self.temporary, self.path)
        return self.path

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
