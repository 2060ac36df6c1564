"""Codecs and crop geometry: round trips, flip consistency, HRNet conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldnet.data.codecs import DARKHeatmap, MSRAHeatmap, build_codec, flip_back
from ldnet.data.keypoints import COCO, CROWDPOSE, KEYPOINT_SETS, MPII
from ldnet.data.transforms import (
    affine_matrix,
    box_to_center_scale,
    input_to_image,
    transform_points,
    warp_crop,
)


def test_keypoint_sets_facts():
    assert [s.num_joints for s in (COCO, MPII, CROWDPOSE)] == [17, 16, 14]
    assert COCO.sigmas[0] == 0.026 and COCO.sigmas[11] == 0.107
    assert MPII.joint_names[6] == "pelvis" and MPII.joint_names[7] == "thorax"
    assert MPII.joint_names[0] == "right_ankle" and MPII.joint_names[15] == "left_wrist"
    assert CROWDPOSE.joint_names[12:] == ("head", "neck") and CROWDPOSE.sigmas[12] == 0.079
    for s in KEYPOINT_SETS.values():
        perm = s.flip_permutation()
        assert (perm[perm] == np.arange(s.num_joints)).all()  # an involution
        for a, b in s.flip_pairs:  # pairs really are left/right twins
            assert s.joint_names[a].replace("left", "right") == s.joint_names[b].replace(
                "left", "right"
            )


def test_box_to_center_scale_is_hrnet():
    center, scale = box_to_center_scale([10, 20, 100, 300], (256, 192))
    np.testing.assert_allclose(center, [60, 170])
    # height 300 -> width 225 at aspect 0.75; / 200 * 1.25
    np.testing.assert_allclose(scale, [225 / 200 * 1.25, 300 / 200 * 1.25])


def test_affine_inverse_and_flip():
    center, scale = np.array([320.0, 240.0]), np.array([1.5, 2.0])
    m = affine_matrix(center, scale, 30.0, (256, 192))
    mi = affine_matrix(center, scale, 30.0, (256, 192), inverse=True)
    pts = np.array([[100.0, 50.0], [320.0, 240.0], [400.0, 300.0]])
    np.testing.assert_allclose(transform_points(transform_points(pts, m), mi), pts, atol=1e-9)
    np.testing.assert_allclose(transform_points(pts[1:2], m), [[95.5, 127.5]])  # centre
    mf = affine_matrix(center, scale, 30.0, (256, 192), flip=True)
    flipped = transform_points(pts, mf)
    np.testing.assert_allclose(flipped[:, 0], 191 - transform_points(pts, m)[:, 0], atol=1e-9)
    # batched form equals the single form
    batch = affine_matrix(np.stack([center] * 2), np.stack([scale] * 2), [30.0, 30.0], (256, 192))
    np.testing.assert_allclose(batch[1], m)


@pytest.mark.parametrize("codec_name", ["msra", "dark"])
def test_roundtrip_interior(codec_name):
    codec = build_codec(codec_name, (256, 192))
    rng = np.random.default_rng(0)
    points = rng.uniform([30, 30], [160, 225], size=(50, 17, 2))
    heatmaps, weights = codec.encode(points, np.ones((50, 17)))
    assert heatmaps.shape == (50, 17, 64, 48) and heatmaps.dtype == np.float32
    assert weights.all()
    u = codec.to_heatmap(points)
    if codec_name == "dark":  # peak exp(-d^2 / 2 sigma^2), d: centre to the nearest pixel
        peak = np.exp(-((u - np.round(u)) ** 2).sum(axis=-1) / (2 * 2.0**2))
    else:  # the Gaussian sits on a whole pixel
        peak = np.ones((50, 17))
    np.testing.assert_allclose(heatmaps.max(axis=(-1, -2)), peak, rtol=1e-6)
    decoded, scores = codec.decode(heatmaps)
    np.testing.assert_allclose(scores, peak, rtol=1e-6)  # the score is the peak
    if codec_name == "dark":
        error = np.linalg.norm(decoded - points, axis=-1)
        assert error.max() < 0.01  # exact up to float error away from the border
    else:
        # The target is symmetric about its rounded centre, so the quarter offset is 0 and
        # decoding returns that pixel centre exactly (<= 2 px per axis from the point).
        np.testing.assert_array_equal(decoded, codec.to_input(np.floor(u + 0.5)))


def test_msra_target_is_hrnet_gaussian():
    codec = MSRAHeatmap((256, 192), (64, 48), 2.0)
    # input (41.5, 81.5) is the centre of heatmap pixel (10, 20)
    heatmaps, weights = codec.encode(np.array([[41.5, 81.5]]), np.array([1.0]))
    hm = heatmaps[0]
    assert hm[20, 10] == 1.0 and np.isclose(hm[20, 11], np.exp(-1 / 8))
    assert np.isclose(hm[20, 16], np.exp(-36 / 8)) and hm[20, 17] == 0  # 3-sigma window
    # unlabelled joint and a joint far outside the heatmap get weight 0 and no Gaussian
    heatmaps, weights = codec.encode(np.array([[41.5, 81.5], [-100.0, 0.0]]), np.array([0, 1]))
    assert weights.tolist() == [0.0, 0.0] and heatmaps.max() == 0.0


def test_quarter_offset_and_dark_on_subpixel_peak():
    dark, msra = DARKHeatmap(), MSRAHeatmap()
    point = np.array([[[97.3, 130.9]]])
    hm, _ = dark.encode(point, np.ones((1, 1)))
    np.testing.assert_allclose(dark.decode(hm)[0], point, atol=5e-3)
    # MSRA decoder on the same map: argmax pixel +- 0.25 toward the higher neighbour
    u = dark.to_heatmap(point)[0, 0]
    np.testing.assert_allclose(u, [23.95, 32.35])  # argmax (24, 32), higher toward (23, 33)
    expected = msra.to_input(np.array([24 - 0.25, 32 + 0.25]))
    np.testing.assert_allclose(msra.decode(hm)[0][0, 0], expected)


def test_flip_consistency_symmetric_input():
    """A left/right symmetric image and its mirror decode to the same joints after the swap."""
    codec = DARKHeatmap((256, 192), (64, 48), 2.0)
    perm = COCO.flip_permutation()
    rng = np.random.default_rng(1)
    # Symmetric synthetic person: left joints mirror the right ones about x = 95.5.
    right = rng.uniform([20, 20], [90, 230], size=(8, 2))
    joints = np.zeros((17, 2))
    joints[0] = [95.5, 30.0]
    for (a, b), r in zip(COCO.flip_pairs, right, strict=True):
        joints[b] = r
        joints[a] = [191.0 - r[0], r[1]]
    heatmaps, _ = codec.encode(joints, np.ones(17))
    # The "network" sees the mirrored crop: its output is the mirror of the heatmaps
    # with channels swapped. flip_back must restore the original exactly (shift 0).
    mirrored = heatmaps[:, :, ::-1][perm]
    restored = flip_back(mirrored[None], perm)[0]
    np.testing.assert_array_equal(restored, heatmaps)
    a, _ = codec.decode(heatmaps)
    b, _ = codec.decode(mirrored)
    b = np.stack([191.0 - b[:, 0], b[:, 1]], axis=-1)[perm]  # un-mirror and swap
    assert np.abs(a - joints).max() < 0.01  # 0.0022 measured
    assert np.abs(a - b).max() < 0.01  # 0.0034 measured: the blur is symmetric up to float
    # torch tensors take the same path; HRNet's one-pixel shift is available
    t = flip_back(torch.from_numpy(mirrored[None].copy()), perm, shift_px=1)[0].numpy()
    np.testing.assert_array_equal(t[..., 1:], heatmaps[..., :-1])


def test_flip_of_real_crop_matches_mirrored_geometry():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:44, 30:33] = 255  # a bright block, centre (31, 41.5)
    center, scale = np.array([50.0, 50.0]), np.array([0.4, 0.4])
    size = (64, 48)
    crop = warp_crop(image, affine_matrix(center, scale, 0.0, size), size)
    crop_f = warp_crop(image, affine_matrix(center, scale, 0.0, size, flip=True), size)
    np.testing.assert_array_equal(crop_f, crop[:, ::-1])


def test_input_to_image_inverts_crop():
    center, scale = np.array([[200.0, 150.0]]), np.array([[1.0, 1.333]])
    pts = np.array([[[210.0, 160.0], [180.0, 100.0]]])
    m = affine_matrix(center, scale, np.array([15.0]), (256, 192))
    back = input_to_image(transform_points(pts, m), center, scale, np.array([15.0]), (256, 192))
    np.testing.assert_allclose(back, pts, atol=1e-9)
