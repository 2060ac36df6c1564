"""Drawing one posed body into an image: limbs as outlined capsules, the torso as a hull,
the head as a shaded ellipsoid with hair and a face.

Parts are painted far to near (painter's algorithm on each part's mean depth), so a person's
own limbs hide each other as they would in a photograph. Every part is also drawn into a
binary mask: the person's silhouette, used for occlusion by later people, the bounding box
and the COCO ``area``.

Left and right limbs are drawn alike. A person-frame cue (say, left limbs lighter) would not
survive a mirror: the mirror image of such a person is not such a person, so flip
augmentation and the flip test would teach and ask the opposite of the labels. As in
photographs, left and right follow from the face (front or back view), the depth order of the
limbs and the pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .body import HEAD_RADII, SIDES, Body, P, rot_z

SHIFT = 4  # cv2 sub-pixel drawing: coordinates are fixed point with 4 fractional bits
ONE = 1 << SHIFT
Colour = tuple[int, int, int]  # BGR

SKIN_TONES: tuple[Colour, ...] = (
    (189, 224, 255),
    (150, 196, 241),
    (125, 172, 224),
    (96, 144, 198),
    (66, 105, 161),
    (45, 70, 110),
)
HAIR_COLOURS: tuple[Colour, ...] = (
    (20, 20, 25),
    (30, 45, 70),
    (45, 80, 130),
    (90, 150, 200),
    (160, 160, 165),
)
# Widths of the parts, as fractions of standing height.
WIDTHS = {
    "upper_arm": 0.058,
    "forearm": 0.048,
    "hand": 0.038,
    "thigh": 0.084,
    "shin": 0.062,
    "foot": 0.04,
    "neck": 0.05,
}
MOUTH = np.array([0.0, 0.038, -0.058])


@dataclass(frozen=True)
class Appearance:
    """Clothing and skin of one person."""

    skin: Colour
    hair: Colour
    shirt: Colour
    pants: Colour
    shoes: Colour
    long_sleeves: bool
    long_pants: bool
    bald: bool
    texture_strength: float  # amplitude of the multiplicative cloth/light noise
    texture_cells: int  # coarseness of that noise (cells across the person)

    @staticmethod
    def sample(rng: np.random.Generator) -> Appearance:
        return Appearance(
            skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
            hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
            shirt=random_colour(rng),
            pants=random_colour(rng, max_value=200),
            shoes=random_colour(rng, max_value=120),
            long_sleeves=bool(rng.random() < 0.5),
            long_pants=bool(rng.random() < 0.7),
            bald=bool(rng.random() < 0.08),
            texture_strength=float(rng.uniform(0.03, 0.18)),
            texture_cells=int(rng.integers(3, 12)),
        )


def random_colour(rng: np.random.Generator, max_value: int = 255) -> Colour:
    hsv = np.array(
        [[[rng.integers(0, 180), rng.integers(30, 256), rng.integers(40, max_value + 1)]]],
        dtype=np.uint8,
    )
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def darker(colour: Colour, factor: float = 0.45) -> Colour:
    return tuple(int(v * factor) for v in colour)


@dataclass(frozen=True)
class Placement:
    """Where a body goes: standing height in pixels, in-plane tilt, pelvis position."""

    height_px: float
    roll_deg: float
    pelvis_xy: tuple[float, float]


@dataclass(frozen=True)
class PlacedBody:
    """A body in image coordinates: ``xy`` (N, 2) pixels (pixel centres at integers, the
    cv2 and HRNet convention), ``z`` (N,) depth in height units (larger = farther), and the
    head's rotation including the tilt."""

    body: Body
    placement: Placement
    xy: np.ndarray
    z: np.ndarray
    head_frame: np.ndarray
    upper_frame: np.ndarray
    lower_frame: np.ndarray

    def px(self, length: float) -> float:
        return length * self.placement.height_px


def place(body: Body, placement: Placement) -> PlacedBody:
    # The in-plane tilt is a rotation about the camera axis, so it also turns the head frame.
    roll = rot_z(placement.roll_deg)
    points = body.points @ roll.T
    xy = points[:, :2] * placement.height_px + np.asarray(placement.pelvis_xy)
    return PlacedBody(
        body=body,
        placement=placement,
        xy=xy,
        z=points[:, 2],
        head_frame=roll @ body.head_frame,
        upper_frame=roll @ body.upper_frame,
        lower_frame=roll @ body.lower_frame,
    )


def fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * ONE).astype(np.int32)


class Canvas:
    """The image and the person's mask, drawn together so the mask is the silhouette."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.mask = np.zeros(image.shape[:2], np.uint8)

    def capsule(self, a, b, width_px: float, colour: Colour, outline_px: int) -> None:
        pa, pb = (tuple(p) for p in fixed([a, b]))
        inner = max(1, int(round(width_px)))
        outer = inner + 2 * outline_px
        cv2.line(self.image, pa, pb, darker(colour), outer, cv2.LINE_AA, SHIFT)
        cv2.line(self.image, pa, pb, colour, inner, cv2.LINE_AA, SHIFT)
        cv2.line(self.mask, pa, pb, 255, outer, cv2.LINE_8, SHIFT)

    def hull(self, points: np.ndarray, colour: Colour, outline_px: int) -> None:
        hull = cv2.convexHull(fixed(points).reshape(-1, 1, 2))
        cv2.fillConvexPoly(self.image, hull, colour, cv2.LINE_AA, SHIFT)
        cv2.polylines(self.image, [hull], True, darker(colour), outline_px, cv2.LINE_AA, SHIFT)
        cv2.fillConvexPoly(self.mask, hull, 255, cv2.LINE_8, SHIFT)
        cv2.polylines(self.mask, [hull], True, 255, outline_px, cv2.LINE_8, SHIFT)

    def dot(self, centre, radius_px: float, colour: Colour, mask: bool = False) -> None:
        c = tuple(fixed(centre))
        r = max(ONE // 2, int(round(radius_px * ONE)))
        cv2.circle(self.image, c, r, colour, -1, cv2.LINE_AA, SHIFT)
        if mask:
            cv2.circle(self.mask, c, r, 255, -1, cv2.LINE_8, SHIFT)


def ring(centre: np.ndarray, frame: np.ndarray, half_width: float, half_depth: float):
    """Points of a horizontal ellipse (a torso cross-section) in a body frame, 3D."""
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    local = np.stack([half_width * np.cos(t), np.zeros_like(t), half_depth * np.sin(t)], 1)
    return centre + local @ frame.T


def torso_hulls(pb: PlacedBody) -> tuple[np.ndarray, np.ndarray, float]:
    """The shirt (shoulders to waist) and pants (waist to hips) outlines in pixels, and the
    torso's depth. Cross-sections are ellipses so the torso keeps its depth in profile."""
    prop, points = pb.body.proportions, pb.xy
    roll = rot_z(pb.placement.roll_deg)
    body_points = pb.body.points @ roll.T  # 3D, pelvis at origin, height units
    shoulders = (body_points[P["left_shoulder"]] + body_points[P["right_shoulder"]]) / 2
    top = ring(
        shoulders - 0.012 * pb.upper_frame[:, 1],
        pb.upper_frame,
        prop.shoulder_half_width + 0.02,
        0.07,
    )
    waist = ring(0.3 * shoulders, pb.upper_frame, prop.hip_half_width + 0.012, 0.065)
    hips = ring(0.035 * pb.lower_frame[:, 1], pb.lower_frame, prop.hip_half_width + 0.035, 0.07)
    origin = points[P["pelvis"]]

    def to_px(p):
        return p[:, :2] * pb.placement.height_px + origin

    depth = float(np.mean(body_points[[P["pelvis"], P["neck"]], 2]))
    return to_px(np.vstack([top, waist])), to_px(np.vstack([waist, hips])), depth


@dataclass(frozen=True)
class Part:
    depth: float
    kind: str  # capsule | hull | head
    points: tuple  # capsule: (a, b); hull: (points,)
    width: float = 0.0
    colour: Colour = (0, 0, 0)


def body_parts(pb: PlacedBody, look: Appearance) -> list[Part]:
    xy, z = pb.xy, pb.z
    parts = []

    def capsule(a: str, b: str, width_key: str, colour: Colour, behind: float = 0.0):
        depth = (z[P[a]] + z[P[b]]) / 2 + behind
        parts.append(Part(depth, "capsule", (xy[P[a]], xy[P[b]]), WIDTHS[width_key], colour))

    sleeve, skin, leg = look.shirt, look.skin, look.pants
    for name, _ in SIDES:
        capsule(f"{name}_shoulder", f"{name}_elbow", "upper_arm", sleeve)
        capsule(f"{name}_elbow", f"{name}_wrist", "forearm", sleeve if look.long_sleeves else skin)
        capsule(f"{name}_wrist", f"{name}_hand", "hand", skin)
        capsule(f"{name}_hip", f"{name}_knee", "thigh", leg)
        capsule(f"{name}_knee", f"{name}_ankle", "shin", leg if look.long_pants else skin)
        capsule(f"{name}_ankle", f"{name}_toe", "foot", look.shoes)
    shirt, pants, torso_depth = torso_hulls(pb)
    # Limbs at the torso's own depth (arms hanging at the sides) go in front of it.
    parts.append(Part(torso_depth + 0.025, "hull", (pants,), colour=look.pants))
    parts.append(Part(torso_depth + 0.02, "hull", (shirt,), colour=look.shirt))
    mid_shoulders = (xy[P["left_shoulder"]] + xy[P["right_shoulder"]]) / 2
    neck_depth = z[P["neck"]] + 0.03
    parts.append(
        Part(neck_depth, "capsule", (mid_shoulders, xy[P["head"]]), WIDTHS["neck"], look.skin)
    )
    parts.append(Part(z[P["head"]], "head", ()))
    return sorted(parts, key=lambda part: -part.depth)


def draw_person(image: np.ndarray, pb: PlacedBody, look: Appearance, rng) -> np.ndarray:
    """Paint the person into ``image`` (in place); return its silhouette mask."""
    canvas = Canvas(image)
    outline = max(1, int(round(pb.px(0.006))))
    for part in body_parts(pb, look):
        if part.kind == "capsule":
            canvas.capsule(*part.points, pb.px(part.width), part.colour, outline)
        elif part.kind == "hull":
            canvas.hull(part.points[0], part.colour, outline)
        else:
            draw_head(canvas, pb, look, outline)
    add_texture(image, canvas.mask, look, rng)
    return canvas.mask


def draw_head(canvas: Canvas, pb: PlacedBody, look: Appearance, outline: int) -> None:
    xy, z = pb.xy, pb.z
    ears_behind = [n for n in ("left_ear", "right_ear") if z[P[n]] > z[P["head"]] - 0.02]
    ears_front = [n for n in ("left_ear", "right_ear") if n not in ears_behind]
    for name in ears_behind:
        canvas.dot(xy[P[name]], pb.px(0.017), darker(look.skin, 0.85), mask=True)
    head_pixels(canvas, pb, look)
    for name in ears_front:
        canvas.dot(xy[P[name]], pb.px(0.017), darker(look.skin, 0.85), mask=True)
    body = pb.body
    eye = pb.px(0.008)
    for name in ("left_eye", "right_eye"):
        if not body.face_hidden(name):
            canvas.dot(xy[P[name]], eye + 0.3, (235, 235, 235))
            canvas.dot(xy[P[name]], eye * 0.7, (40, 30, 20))
    if not body.face_hidden("nose"):
        mouth = xy[P["head"]] + (pb.head_frame @ MOUTH)[:2] * pb.placement.height_px
        canvas.dot(mouth, pb.px(0.009), (60, 40, 150))
        canvas.dot(xy[P["nose"]], pb.px(0.012), darker(look.skin, 0.7))


def head_pixels(canvas: Canvas, pb: PlacedBody, look: Appearance) -> None:
    """Ray-cast the head ellipsoid (orthographic: one ray per pixel along z), colour each
    surface point as hair or skin from where it sits on the head (top and back: hair), and
    shade it by its normal. Per pixel, so hair follows the head's turn exactly."""
    h = pb.placement.height_px
    centre = pb.xy[P["head"]]
    reach = HEAD_RADII.max() * h + 1
    height, width = canvas.mask.shape
    x0, x1 = int(max(0, np.floor(centre[0] - reach))), int(min(width, np.ceil(centre[0] + reach)))
    y0, y1 = int(max(0, np.floor(centre[1] - reach))), int(min(height, np.ceil(centre[1] + reach)))
    if x1 <= x0 or y1 <= y0:
        return
    gy, gx = np.mgrid[y0:y1, x0:x1]
    u, v = (gx - centre[0]) / h, (gy - centre[1]) / h
    m = pb.head_frame
    quad = m @ np.diag(1.0 / HEAD_RADII**2) @ m.T  # x^T Q x = 1 on the surface
    a = quad[2, 2]
    b = 2 * (quad[0, 2] * u + quad[1, 2] * v)
    c = quad[0, 0] * u * u + 2 * quad[0, 1] * u * v + quad[1, 1] * v * v - 1
    disc = b * b - 4 * a * c
    inside = disc >= 0
    if not inside.any():
        return
    zs = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)  # the near surface
    world = np.stack([u, v, zs], -1)
    local = world @ m  # head frame coordinates (m is orthonormal)
    rel = local / HEAD_RADII
    hair = (rel[..., 1] < -0.35) | (rel[..., 2] > -0.05 + 0.3 * rel[..., 1])
    if look.bald:
        hair &= False
    normal = world @ quad
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
    light = np.clip(0.55 - 0.45 * normal[..., 2] + 0.2 * normal[..., 0], 0.35, 1.0)
    colour = np.where(hair[..., None], np.array(look.hair), np.array(look.skin)) * light[..., None]
    region = canvas.image[y0:y1, x0:x1]
    region[inside] = np.clip(colour[inside], 0, 255).astype(np.uint8)
    canvas.mask[y0:y1, x0:x1][inside] = 255


def add_texture(image: np.ndarray, mask: np.ndarray, look: Appearance, rng) -> None:
    """Cloth folds and uneven light: smooth multiplicative noise over the silhouette."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    cells = look.texture_cells
    noise = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    noise = cv2.resize(noise, (int(x1 - x0), int(y1 - y0)), interpolation=cv2.INTER_CUBIC)
    gain = 1.0 + look.texture_strength * np.clip(noise, -2, 2)
    region, inside = image[y0:y1, x0:x1], mask[y0:y1, x0:x1] > 0
    region[inside] = np.clip(region[inside] * gain[inside][:, None], 0, 255).astype(np.uint8)
