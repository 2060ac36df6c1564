"""Outputs of ``ldnet predict``, each written to a temporary file beside its target and
renamed into place when complete: an interrupted or failed run leaves no half-written file."""

from __future__ import annotations

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


class _Discarded(Exception):
    """Thrown into `atomic_path` to leave it the failing way (delete, no rename)."""


class VideoWriter:
    """An MP4 (``mp4v``) written frame by frame into a temporary file; ``close()`` renames
    it into place, ``abort()`` (or an exception inside ``with``) deletes it."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # `atomic_path` held open across calls: entered here, left by close() (rename into
        # place) or abort() (delete). The suffix stays .mp4 whatever the target's name, since
        # OpenCV picks the container by it.
        self._output = atomic_path(self.path, suffix=".mp4")
        self.temporary = self._output.__enter__()
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
        """Rename the video into place; with no frame written, delete it and return None."""
        kept = self._finish(keep=self.frames > 0)
        return self.path if kept else None

    def abort(self) -> None:
        self._finish(keep=False)

    def _finish(self, keep: bool) -> bool:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self._output is None:  # already closed or aborted
            return False
        output, self._output = self._output, None
        if keep:
            output.__exit__(None, None, None)
        else:  # leaving the block with an exception is what makes atomic_path delete
            discarded = _Discarded(f"{self.path}: discarded")
            output.__exit__(_Discarded, discarded, None)
        return keep

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
