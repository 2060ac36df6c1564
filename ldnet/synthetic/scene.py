"""One synthetic photograph: a background, 1-4 people, and their COCO annotations.

Visibility follows COCO: v = 2 visible, v = 1 labelled but hidden (here: covered by a person
drawn later, i.e. standing in front), v = 0 unlabelled (outside the image, or a face point
turned away from the camera, which COCO annotators leave out too) with x = y = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .background import make_background
from .body import NUM_COCO, P, sample_body
from .render import Appearance, PlacedBody, Placement, draw_person, place

FACE_POINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are composed. Sizes in pixels."""

    image_size: tuple[int, int] = (320, 240)  # (width, height)
    people: tuple[int, int] = (1, 4)  # inclusive range of people per image
    height_px: tuple[float, float] = (60.0, 220.0)  # standing height range
    # Close-ups: people taller than the frame, cut off by its border, as photographs often
    # have. Their silhouettes give the COCO "large" area range (> 96^2 px) its members.
    closeup_fraction: float = 0.12
    closeup_height_px: tuple[float, float] = (220.0, 340.0)
    # A person's box may reach this fraction of its size past the image border (truncation).
    truncation: float = 0.3
    # Placements overlapping an earlier person's box more than this are redrawn: partial
    # occlusion is wanted, a person hidden entirely behind another is not learnable.
    max_overlap_iou: float = 0.45
    min_joints_in_image: int = 6
    tilted_fraction: float = 0.1  # people tilted far from upright (falling, acrobatics)
    max_attempts: int = 25

    def __post_init__(self) -> None:
        width, height = self.image_size
        if width < 32 or height < 32:
            raise ValueError(f"image size {width}x{height} is too small (at least 32x32)")
        low, high = self.people
        if not 1 <= low <= high:
            raise ValueError(f"people per image {self.people}: need 1 <= min <= max")
        if not 0 < self.height_px[0] <= self.height_px[1]:
            raise ValueError(f"person height range {self.height_px} is not increasing")


@dataclass(frozen=True)
class PersonAnnotation:
    keypoints: np.ndarray  # (17, 3): x, y, v
    bbox_xywh: tuple[float, float, float, float]
    area: float  # silhouette pixels inside the image
    segmentation: list[list[float]]  # polygons of the silhouette
    hidden_fraction: float  # share of the silhouette covered by people in front

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # BGR uint8
    people: list[PersonAnnotation]


def box_of(points: np.ndarray, margin: float) -> np.ndarray:
    low, high = points.min(0) - margin, points.max(0) + margin
    return np.concatenate([low, high])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1y1x2y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def in_image(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    return (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)


def sample_placement(rng, config: SceneConfig, body) -> tuple[PlacedBody, np.ndarray]:
    """Size, tilt and position; the box centre is drawn so that the box stays within the
    image enlarged by ``truncation`` of the box's size on every side."""
    width, height = config.image_size
    closeup = rng.random() < config.closeup_fraction
    tall = float(rng.uniform(*(config.closeup_height_px if closeup else config.height_px)))
    tilted = rng.random() < config.tilted_fraction
    roll = float(rng.uniform(-70, 70) if tilted else np.clip(rng.normal(0, 7), -20, 20))
    at_origin = place(body, Placement(tall, roll, (0.0, 0.0)))
    box = box_of(at_origin.xy, 0.04 * tall)
    size = box[2:] - box[:2]
    slack = config.truncation * size
    low = -box[:2] - slack
    high = np.array([width, height]) - box[2:] + slack
    pelvis = rng.uniform(np.minimum(low, high), np.maximum(low, high))
    placed = place(body, Placement(tall, roll, (float(pelvis[0]), float(pelvis[1]))))
    return placed, box + np.tile(pelvis, 2)


def choose_people(rng, config: SceneConfig) -> list[tuple[PlacedBody, Appearance]]:
    width, height = config.image_size
    count = int(rng.integers(config.people[0], config.people[1] + 1))
    chosen, boxes = [], []
    for _ in range(count):
        for _ in range(config.max_attempts):
            body = sample_body(rng)
            placed, box = sample_placement(rng, config, body)
            inside = in_image(placed.xy[:NUM_COCO], width, height).sum()
            if inside < config.min_joints_in_image:
                continue
            if any(iou(box, other) > config.max_overlap_iou for other in boxes):
                continue
            chosen.append((placed, Appearance.sample(rng)))
            boxes.append(box)
            break
    # Draw far to near: people whose feet are higher in the frame stand farther away.
    chosen.sort(key=lambda item: item[0].xy[:, 1].max())
    return chosen


def polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    result = []
    for contour in contours:
        simple = cv2.approxPolyDP(contour, 1.0, True).reshape(-1, 2)
        if len(simple) >= 3:
            result.append([float(v) for v in simple.reshape(-1)])
    return result


def annotate(
    placed: PlacedBody, mask: np.ndarray, label: np.ndarray, index: int
) -> PersonAnnotation:
    """Keypoints with COCO visibility, box and area from the silhouette. ``label`` holds,
    per pixel, 1 + the index of the front-most person painted there."""
    height, width = mask.shape
    xy = placed.xy[:NUM_COCO]
    visible = in_image(xy, width, height)
    for name in FACE_POINTS:
        visible[P[name]] &= not placed.body.face_hidden(name)
    cols = np.clip(np.round(xy[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(int), 0, height - 1)
    covered = label[rows, cols] > index + 1  # a later (nearer) person is painted there
    flags = np.where(visible, np.where(covered, 1, 2), 0)
    keypoints = np.zeros((NUM_COCO, 3))
    keypoints[:, :2] = np.where(visible[:, None], xy, 0.0)
    keypoints[:, 2] = flags

    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    # The box spans the silhouette's pixels, its width counting whole pixels as COCO's does.
    shown = keypoints[flags > 0, :2]
    if len(shown):  # guard: a joint on the outline's outer edge rounds into the silhouette
        x0, y0 = min(x0, np.floor(shown[:, 0].min())), min(y0, np.floor(shown[:, 1].min()))
        x1, y1 = max(x1, np.ceil(shown[:, 0].max())), max(y1, np.ceil(shown[:, 1].max()))
    area = float(np.count_nonzero(mask))
    front = float(np.count_nonzero(label[ys, xs] == index + 1))
    return PersonAnnotation(
        keypoints=keypoints,
        bbox_xywh=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
        area=area,
        segmentation=polygons(mask),
        hidden_fraction=1.0 - front / area,
    )


def finish(rng, image: np.ndarray) -> np.ndarray:
    """Camera effects over the whole picture: slight defocus and sensor noise."""
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 0.9)))
    sigma = float(rng.uniform(0, 6))
    noisy = image.astype(np.float32) + sigma * rng.standard_normal(image.shape, np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    width, height = config.image_size
    image = make_background(rng, width, height)
    label = np.zeros((height, width), np.int32)
    drawn = []
    for index, (placed, look) in enumerate(choose_people(rng, config)):
        mask = draw_person(image, placed, look, rng)
        label[mask > 0] = index + 1
        drawn.append((placed, mask))
    people = [annotate(p, mask, label, i) for i, (p, mask) in enumerate(drawn)]
    return Scene(image=finish(rng, image), people=people)
