"""PortraitGAN landmark map and landmark edits: exact against direct OpenCV drawings and hand formulas."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from datamodules.synthetic import SyntheticFaceWorld
from portrait_models.portraitgan.landmark_map import (
    LANDMARK_GROUPS,
    draw_landmark_canvas,
    face_slim,
    fig5_schedule,
    group_extents,
    interpolate_landmarks,
    landmark_groups,
    landmark_thickness,
    modality_planes,
    mouth_close,
    mouth_open,
    render_landmark_map,
)


def _world_points(size: int, identity: int = 0, emotion: int = 7) -> np.ndarray:
    return SyntheticFaceWorld(0).render(identity, emotion, 0, size).landmarks


def _integer_points(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(size // 8, size - size // 8, (68, 2)).astype(np.float64)


def test_map_equals_direct_opencv_drawing_of_the_nine_groups_at_512():
    points = _integer_points(512)
    expected = np.zeros((512, 512), np.uint8)
    p = points.astype(np.int32)
    for part, closed in (
        (p[0:17], False),
        (p[17:22], False),
        (p[22:27], False),
        (p[27:31], False),
        (p[30:35], True),
        (p[36:42], True),
        (p[42:48], True),
        (p[48:60], True),
        (p[60:68], True),
    ):
        cv2.polylines(expected, [part], closed, 255, 3)  # gen_landmark.py: thickness 3, LINE_8, no shift
    got = render_landmark_map(points, 512)
    assert got.shape == (1, 1, 512, 512) and got.dtype == torch.float32
    assert set(got.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(got[0, 0], torch.from_numpy(expected).float() / 127.5 - 1)
    assert torch.equal(got, render_landmark_map(torch.from_numpy(points), 512))  # deterministic, tensor input


def test_closed_contours_close_and_open_ones_do_not():
    points = _world_points(256)
    lit = render_landmark_map(points, 256, thickness=1)[0, 0] > 0
    for a, b in ((41, 36), (67, 60), (59, 48), (47, 42), (34, 30)):  # closing segments are drawn
        for t in np.linspace(0, 1, 9):
            x, y = np.round((1 - t) * points[a] + t * points[b]).astype(int)
            window = lit[y - 1 : y + 2, x - 1 : x + 2]
            assert window.any(), f"closing segment {a}->{b} not drawn at t={t:.2f}"
    # The jaw is open: on a jaw-only canvas, the midpoint of 16 -> 0 (across the face) is dark.
    jaw = draw_landmark_canvas(points, (256, 256), 1, groups=[0])
    x, y = np.round((points[0] + points[16]) / 2).astype(int)
    assert np.abs(points[0] - points[16]).sum() > 40 and not jaw[y - 1 : y + 2, x - 1 : x + 2].any()


def test_point_35_is_not_drawn_but_inner_lips_are():
    points = _world_points(128)
    base = render_landmark_map(points, 128)
    moved = points.copy()
    moved[35] += (9, 5)
    assert torch.equal(render_landmark_map(moved, 128), base)
    assert not torch.equal(
        render_landmark_map(moved, 128, include_point_35=True), render_landmark_map(points, 128, include_point_35=True)
    )
    moved = points.copy()
    moved[62] += (0, 4)
    assert not torch.equal(render_landmark_map(moved, 128), base)


def test_thickness_rule_and_cross_sections():
    assert [landmark_thickness(s) for s in (512, 256, 128, 64)] == [3, 2, 1, 1]
    points = np.full((68, 2), 10.0)
    points[0:17, 0] = np.linspace(8, 56, 17)
    points[0:17, 1] = 32.0  # the jaw as a horizontal segment, every other group collapsed to (10, 10)
    for thickness, rows in ((1, 1), (2, 3), (3, 5)):
        lit = render_landmark_map(points, 64, thickness=thickness)[0, 0] > 0
        assert int(lit[:, 32].sum()) == rows


def test_subpixel_drawing_equals_integer_drawing_for_integer_points():
    points = _integer_points(256, seed=3)
    canvas = np.zeros((256, 256), np.uint8)
    for _, first, last, closed in LANDMARK_GROUPS:
        cv2.polylines(canvas, [points[first : last + 1].astype(np.int32)], closed, 255, 2)
    assert torch.equal(render_landmark_map(points, 256)[0, 0] > 0, torch.from_numpy(canvas > 0))


def test_points_map_points_within_one_pixel_on_the_synthetic_world():
    """Each group's extent recovered from its own map equals the extent of its points within 1 px."""
    for size in (64, 256):
        points = _world_points(size, identity=2, emotion=7)
        t = landmark_thickness(size)
        for k, (indices, _) in enumerate(landmark_groups()):
            canvas = draw_landmark_canvas(points, (size, size), t, groups=[k])
            got = np.array(group_extents(canvas, t))
            want = np.array([*points[indices].min(0), *points[indices].max(0)])
            assert np.abs(got - want).max() <= 1.0, (size, LANDMARK_GROUPS[k][0], got, want)


def test_outside_points_and_bad_shapes():
    points = _world_points(64) + 500.0
    assert (render_landmark_map(points, 64) == -1).all()
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        render_landmark_map(np.zeros((5, 2)), 64)


def test_interpolation_map_equals_map_of_midpoints():
    a, b = _world_points(128, emotion=5), _world_points(128, emotion=7)
    assert torch.equal(
        render_landmark_map(interpolate_landmarks(a, b, 0.5), 128), render_landmark_map((a + b) / 2, 128)
    )


def test_modality_planes_are_one_hot_constant_planes():
    planes = modality_planes(torch.tensor([0, 3, 1]), 4, (5, 7))
    assert planes.shape == (3, 4, 5, 7)
    assert torch.equal(planes.sum(1), torch.ones(3, 5, 7))
    assert torch.equal(planes[:, :, 2, 3], torch.eye(4)[[0, 3, 1]])
    assert (planes.amax((2, 3)) == planes.amin((2, 3))).all()
    with pytest.raises(ValueError, match="0..3"):
        modality_planes(torch.tensor([4]), 4, (2, 2))


def test_mouth_close_merges_the_inner_lips_and_keeps_the_corners():
    points = _world_points(128, emotion=7)  # surprised: open mouth
    closed = mouth_close(points)
    for upper, lower in ((61, 67), (62, 66), (63, 65)):
        assert np.allclose(closed[upper], closed[lower])
    for corner in (48, 54, 60, 64):
        assert np.array_equal(closed[corner], points[corner])
    assert np.allclose(closed[51] - points[51], closed[62] - points[62])
    assert np.array_equal(closed[:48], points[:48])


def test_mouth_open_and_face_slim_formulas():
    points = _world_points(128, emotion=5)
    opened = mouth_open(points, 6.0)
    assert np.allclose(opened[[56, 57, 58, 65, 66, 67], 1] - points[[56, 57, 58, 65, 66, 67], 1], 6.0)
    assert np.allclose(opened[[55, 59], 1] - points[[55, 59], 1], 3.0)
    assert np.array_equal(opened[[48, 54, 60, 64]], points[[48, 54, 60, 64]])
    slim = face_slim(points, 0.2)
    assert np.abs(slim[[0, 16]] - points[[0, 16]]).max() < 1e-6
    assert np.isclose(slim[8, 0] - points[30, 0], 0.8 * (points[8, 0] - points[30, 0]))
    assert np.array_equal(slim[:, 1], points[:, 1]) and np.array_equal(slim[17:], points[17:])


def test_fig5_schedule_order_and_positions():
    schedule = fig5_schedule()
    assert [face for face, _ in schedule] == [1, 7, 4, 2, 5, 3, 6]
    assert sorted(t for _, t in schedule) == [0, 0.25, 0.375, 0.5, 0.75, 0.875, 1]
