"""An articulated 3D stick body over the 17 COCO keypoints, posed at random.

The body lives in its own frame, in units of standing height: ``x`` toward the person's
left, ``y`` down, ``z`` away from the camera when the person faces it (so a person facing
the camera shows their left side on the image's right, as in a photograph). A pose is a few
joint angles per limb; the whole body is then turned (yaw) and projected orthographically.
Orthographic is enough at these sizes and keeps limb lengths honest under foreshortening.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ldnet.data.keypoints import COCO

NUM_COCO = COCO.num_joints
# Points the renderer needs beyond the 17 keypoints (limb ends, torso and head centres).
EXTRA_POINTS = ("pelvis", "neck", "head", "left_hand", "right_hand", "left_toe", "right_toe")
POINT_NAMES = COCO.joint_names + EXTRA_POINTS
P = {name: i for i, name in enumerate(POINT_NAMES)}

# Head ellipsoid radii (x, y, z) and face landmarks relative to the head centre, in the
# head's own frame: the nose and eyes sit on the front (-z) surface, the ears on the sides.
HEAD_RADII = np.array([0.058, 0.075, 0.066])
FACE_POINTS = {
    "nose": (0.0, 0.014, -0.068),
    "left_eye": (0.027, -0.012, -0.057),
    "right_eye": (-0.027, -0.012, -0.057),
    "left_ear": (0.062, 0.004, 0.006),
    "right_ear": (-0.062, 0.004, 0.006),
}
SIDES = (("left", 1.0), ("right", -1.0))


@dataclass(frozen=True)
class Proportions:
    """Segment lengths as fractions of standing height (adult anthropometry, rounded)."""

    shoulder_half_width: float = 0.112
    hip_half_width: float = 0.078
    torso: float = 0.30  # pelvis centre -> shoulder line
    neck: float = 0.045  # shoulder line -> base of the head
    head_above_neck: float = 0.065  # base of the head -> head centre
    upper_arm: float = 0.165
    forearm: float = 0.145
    hand: float = 0.065
    thigh: float = 0.245
    shin: float = 0.24
    foot: float = 0.085

    @staticmethod
    def sample(rng: np.random.Generator) -> Proportions:
        """Per-person variety: each length jittered by a few per cent, the build by more."""
        base = Proportions()
        build = rng.uniform(0.9, 1.12)  # shoulders and hips together: slim to broad
        values = {}
        for name, value in base.__dict__.items():
            jitter = rng.uniform(0.94, 1.06)
            if name.endswith("half_width"):
                jitter *= build
            values[name] = value * jitter
        return Proportions(**values)


@dataclass(frozen=True)
class Body:
    """A posed body after the yaw turn: ``points`` (len(POINT_NAMES), 3) in height units,
    pelvis at the origin, ``x`` image right, ``y`` image down, ``z`` depth (larger = farther).
    ``upper_frame`` and ``head_frame`` are the rotations of the torso and head (to lay out
    the torso hull and the head ellipse); ``proportions`` the segment lengths."""

    points: np.ndarray
    upper_frame: np.ndarray
    lower_frame: np.ndarray
    head_frame: np.ndarray
    proportions: Proportions

    def face_hidden(self, name: str) -> bool:
        """A face landmark turned away from the camera (behind the head's silhouette centre).
        Annotators leave such points unlabelled in COCO; so do we (v = 0)."""
        local = self.head_frame.T @ (self.points[P[name]] - self.points[P["head"]])
        toward_camera = self.head_frame.T @ np.array([0.0, 0.0, -1.0])
        # Ears are on the sides, so they stay visible until the head is turned well past
        # profile; eyes and nose vanish as soon as they face away.
        margin = 0.35 if name.endswith("ear") else 0.05
        return float(local @ toward_camera) < -margin * np.linalg.norm(local)


def rot_x(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


DOWN = np.array([0.0, 1.0, 0.0])
FORWARD = np.array([0.0, 0.0, -1.0])  # toward the camera for a person facing it


def limb_direction(side: float, abduction_deg: float, flexion_deg: float) -> np.ndarray:
    """Direction of a limb hanging down, raised sideways (abduction, away from the body's
    midline) and then forward (flexion, toward the person's front)."""
    # rot_x turns +y toward +z (backward), hence the minus for a forward flexion.
    return rot_x(-flexion_deg) @ rot_z(-side * abduction_deg) @ DOWN


def bend(direction: np.ndarray, hint: np.ndarray, angle_deg: float) -> np.ndarray:
    """``direction`` turned by ``angle_deg`` toward ``hint`` (within their common plane):
    how an elbow or knee folds the next segment."""
    across = hint - (hint @ direction) * direction
    norm = np.linalg.norm(across)
    if norm < 1e-6:  # hint along the limb: any perpendicular will do
        across = np.cross(direction, [1.0, 0.0, 0.0])
        norm = np.linalg.norm(across)
    across /= norm
    a = np.deg2rad(angle_deg)
    return np.cos(a) * direction + np.sin(a) * across


@dataclass(frozen=True)
class LimbAngles:
    abduction_deg: float
    flexion_deg: float
    fold_deg: float  # elbow or knee


@dataclass(frozen=True)
class PoseAngles:
    """Everything random about a pose, in degrees. Limb angles are keyed by side."""

    yaw_deg: float  # 0: facing the camera, 180: back to it
    torso_pitch_deg: float  # bending forward
    torso_side_deg: float
    torso_twist_deg: float
    head_yaw_deg: float
    head_pitch_deg: float
    head_roll_deg: float
    arms: dict[str, LimbAngles]
    legs: dict[str, LimbAngles]
    elbow_hints: dict[str, np.ndarray]


POSE_STYLES = ("stand", "walk", "reach", "free", "crouch")
POSE_STYLE_PROBS = (0.2, 0.25, 0.2, 0.25, 0.1)


def sample_yaw(rng: np.random.Generator) -> float:
    """Degrees; 0 faces the camera. Photographs mostly show people facing the camera, some
    from behind, and the rest at any angle; COCO's annotations lean the same way."""
    pick = rng.random()
    if pick < 0.6:
        return float(rng.normal(0.0, 35.0)) % 360.0
    if pick < 0.75:
        return float(rng.normal(180.0, 35.0)) % 360.0
    return float(rng.uniform(0.0, 360.0))


def sample_pose(rng: np.random.Generator) -> PoseAngles:
    """Joint angles from one of a few styles, so that both everyday poses (standing,
    walking) and unusual ones (arms overhead, crouching, anything within joint limits)
    are common."""
    style = POSE_STYLES[rng.choice(len(POSE_STYLES), p=POSE_STYLE_PROBS)]
    u = rng.uniform
    arms, legs = {}, {}
    swing = u(15, 40) * rng.choice([-1, 1])
    for name, side in SIDES:
        phase = side * swing  # walking: each arm swings against the leg on its side
        if style == "stand":
            arms[name] = LimbAngles(u(5, 30), u(-20, 30), u(0, 50))
            legs[name] = LimbAngles(u(0, 12), u(-10, 15), u(0, 15))
        elif style == "walk":
            arms[name] = LimbAngles(u(5, 20), -phase, u(10, 70))
            legs[name] = LimbAngles(u(0, 8), phase, u(5, 50) if phase < 0 else u(0, 20))
        elif style == "reach":
            raised = rng.random() < 0.7
            arm = LimbAngles(u(30, 170), u(-30, 160), u(0, 90)) if raised else None
            arms[name] = arm or LimbAngles(u(5, 40), u(-20, 40), u(0, 100))
            legs[name] = LimbAngles(u(0, 20), u(-15, 25), u(0, 25))
        elif style == "free":
            arms[name] = LimbAngles(u(0, 170), u(-50, 170), u(0, 150))
            legs[name] = LimbAngles(u(-5, 45), u(-30, 100), u(0, 130))
        else:  # crouch
            arms[name] = LimbAngles(u(0, 90), u(-20, 110), u(0, 130))
            legs[name] = LimbAngles(u(5, 35), u(50, 110), u(80, 140))
    # Elbows fold mostly forward; the random part lets the forearm leave the body's plane.
    hints = {name: FORWARD + rng.normal(0.0, 0.7, 3) for name, _ in SIDES}
    yaw = sample_yaw(rng)
    return PoseAngles(
        yaw_deg=yaw,
        torso_pitch_deg=u(10, 45) if style == "crouch" else rng.normal(0, 8),
        torso_side_deg=rng.normal(0, 6),
        torso_twist_deg=rng.normal(0, 12),
        head_yaw_deg=float(np.clip(rng.normal(0, 25), -70, 70)),
        head_pitch_deg=rng.normal(0, 10),
        head_roll_deg=rng.normal(0, 8),
        arms=arms,
        legs=legs,
        elbow_hints=hints,
    )


def pose_body(angles: PoseAngles, prop: Proportions) -> Body:
    """Forward kinematics: angles and proportions -> 3D points, turned by the yaw."""
    points = np.zeros((len(POINT_NAMES), 3))
    upper = rot_y(angles.torso_twist_deg) @ rot_z(angles.torso_side_deg)
    upper = upper @ rot_x(angles.torso_pitch_deg)
    lower = np.eye(3)
    shoulder_line = upper @ np.array([0.0, -prop.torso, 0.0])
    points[P["neck"]] = upper @ np.array([0.0, -prop.torso - prop.neck, 0.0])
    head = upper @ rot_y(angles.head_yaw_deg) @ rot_x(-angles.head_pitch_deg)
    head = head @ rot_z(angles.head_roll_deg)
    points[P["head"]] = points[P["neck"]] + upper @ np.array([0, -prop.head_above_neck, 0])
    for name, offset in FACE_POINTS.items():
        points[P[name]] = points[P["head"]] + head @ np.array(offset)

    for name, side in SIDES:
        shoulder = shoulder_line + upper @ np.array([side * prop.shoulder_half_width, 0, 0])
        arm = angles.arms[name]
        upper_arm = upper @ limb_direction(side, arm.abduction_deg, arm.flexion_deg)
        forearm = bend(upper_arm, upper @ angles.elbow_hints[name], arm.fold_deg)
        points[P[f"{name}_shoulder"]] = shoulder
        points[P[f"{name}_elbow"]] = shoulder + prop.upper_arm * upper_arm
        points[P[f"{name}_wrist"]] = points[P[f"{name}_elbow"]] + prop.forearm * forearm
        points[P[f"{name}_hand"]] = points[P[f"{name}_wrist"]] + prop.hand * forearm

        hip = lower @ np.array([side * prop.hip_half_width, 0.0, 0.0])
        leg = angles.legs[name]
        thigh = lower @ limb_direction(side, leg.abduction_deg, leg.flexion_deg)
        # Knees fold backward (and down when the thigh is raised forward, as in sitting).
        shin = bend(thigh, -FORWARD + 0.5 * DOWN, leg.fold_deg)
        foot = bend(shin, FORWARD, 90.0)
        points[P[f"{name}_hip"]] = hip
        points[P[f"{name}_knee"]] = hip + prop.thigh * thigh
        points[P[f"{name}_ankle"]] = points[P[f"{name}_knee"]] + prop.shin * shin
        points[P[f"{name}_toe"]] = points[P[f"{name}_ankle"]] + prop.foot * foot

    yaw = rot_y(angles.yaw_deg)
    return Body(
        points=points @ yaw.T,
        upper_frame=yaw @ upper,
        lower_frame=yaw @ lower,
        head_frame=yaw @ head,
        proportions=prop,
    )


def sample_body(rng: np.random.Generator) -> Body:
    return pose_body(sample_pose(rng), Proportions.sample(rng))
