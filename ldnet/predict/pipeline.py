"""The ``ldnet predict`` loop: source -> person boxes -> PoseEstimator -> (smoothing) ->
overlays and a COCO results file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ldnet.data.visualize import draw_poses
from ldnet.evaluation.results import write_coco_results
from ldnet.inference import coco_results_rows

from .boxes import box_problem
from .errors import PredictInputError
from .estimator import PoseEstimator, oks_suppress
from .smoothing import PoseSmoother
from .sources import Frame, ImageSource, VideoSource
from .writers import VideoWriter, write_image

# frame -> (boxes (N, 4) x, y, w, h, scores (N,)); None: the whole frame is one person.
BoxProvider = Callable[[Frame], "tuple[np.ndarray, np.ndarray] | None"]


@dataclass
class PredictOptions:
    output_dir: Path
    overlay: bool = True  # overlay images / video
    threshold: float = 0.3  # joints below this confidence are not drawn
    oks_nms_threshold: float = 0.9
    smoother: PoseSmoother | None = None  # video and camera only
    max_frames: int | None = None
    progress: bool = True


@dataclass
class PredictSummary:
    frames: int = 0
    people: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    notes: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    interrupted: bool = False

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _boxes_of(frame: Frame, provider: BoxProvider, summary: PredictSummary):
    found = provider(frame)
    if found is None:
        return None, None
    boxes, scores = found
    keep = [box_problem(box, frame.image.shape) is None for box in boxes]
    if not all(keep):
        summary.notes.append(
            f"{frame.name}: {len(keep) - sum(keep)} box(es) with zero size or outside the "
            "image left out"
        )
    return boxes[keep], scores[keep]


def predict_source(
    estimator: PoseEstimator,
    source: ImageSource | VideoSource,
    boxes_for: BoxProvider,
    options: PredictOptions,
) -> PredictSummary:
    """Predict every frame of ``source``; write overlays and ``results.json`` into
    ``options.output_dir``. A frame that cannot be used (unreadable file, bad box) is
    skipped and listed in the summary; if no frame could be used, nothing is written and
    ``PredictInputError`` names the first problem."""
    summary = PredictSummary(skipped=list(source.skipped))
    output_dir = Path(options.output_dir)
    height, width = estimator.input_size
    results: list[dict] = []
    is_video = isinstance(source, VideoSource)
    stem = Path(source.source).stem if source.kind == "video" else source.source.replace(" ", "")
    video = None
    if is_video and options.overlay:
        video = VideoWriter(output_dir / f"{stem}.mp4", source.fps)
    total = len(source) or None
    if total and options.max_frames:
        total = min(total, options.max_frames)
    start = time.perf_counter()
    bar = tqdm(total=total, desc="predict", unit="frame", disable=not options.progress, leave=False)
    try:
        for frame in source:
            if options.max_frames and summary.frames >= options.max_frames:
                break
            bar.update(1)
            if frame.error:
                summary.skipped.append((frame.name, frame.error))
                continue
            try:
                boxes, scores = _boxes_of(frame, boxes_for, summary)
                poses = estimator(frame.image, boxes, scores)
            except PredictInputError as error:
                summary.skipped.append((frame.name, str(error)))
                continue
            small = frame.image.shape[0] < height or frame.image.shape[1] < width
            if small and (not is_video or summary.frames == 0):
                summary.notes.append(
                    f"{frame.name}: {frame.image.shape[1]}x{frame.image.shape[0]} image is "
                    f"smaller than the {width}x{height} network input; crops are upsampled"
                )
            poses = oks_suppress(poses, estimator.keypoint_set, options.oks_nms_threshold)
            if options.smoother is not None and frame.time_s is not None:
                poses.keypoints = options.smoother(poses.keypoints, poses.boxes, frame.time_s)
            results.extend(coco_results_rows(frame.image_id, poses.keypoints, poses.scores))
            summary.frames += 1
            summary.people += len(poses)
            if options.overlay:
                canvas = draw_poses(
                    frame.image,
                    poses.keypoints,
                    estimator.keypoint_set,
                    options.threshold,
                    poses.boxes,
                )
                if video is not None:
                    video.write(canvas)
                else:
                    summary.outputs.append(write_image(output_dir / frame.name, canvas))
    except KeyboardInterrupt:  # the way to stop a camera: keep what was done
        summary.interrupted = True
    except BaseException:
        if video is not None:
            video.abort()
        raise
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    if summary.frames == 0:
        if video is not None:
            video.abort()
        reason = summary.skipped[0] if summary.skipped else (source.source, "no frames")
        raise PredictInputError(f"{reason[0]}: {reason[1]} (nothing predicted)")
    if video is not None:
        summary.outputs.append(video.close())
    results_path = output_dir / "results.json"
    output_dir.mkdir(parents=True, exist_ok=True)
    write_coco_results(results_path, results)
    summary.outputs.append(results_path)
    return summary
