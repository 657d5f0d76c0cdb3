"""Ground-plane projection (core/ground.py) against scenes whose geometry is worked out by hand.

The scene: a 160x120 pinhole camera (fx = fy = 100, principal point (79.5, 59.5)) 1 m above
the ground, level (pitch 0), looking along base +x. A ground point (X, Y) then appears at
    u = 79.5 - 100 * Y / X,   v = 59.5 + 100 / X
so pixel row v sees the ground at X = 100 / (v - 59.5) and pixel (u, v) at
Y = -(u - 79.5) * X / 100. Road is painted for |Y| <= 1.5 m, pavement beyond, sky above the
horizon (v < 59.5). A pedestrian box stands on the road with its front face at X = 5 m,
|Y| <= 0.5 m, 1.5 m tall: columns |u - 79.5| <= 10 (70..89); its top, 0.5 m above the camera,
is 100 * 0.5 / 5 = 10 rows above the horizon and its foot 100 / 5 = 20 rows below it, so rows
49.5 <= v <= 79.5 (50..79). Its footprint is the boundary between rows 79 and 80, v = 79.5,
X = 100 / 20 = 5.0 m exactly.
"""
import math

import numpy as np
import pytest

from pspnet_ros.core.ground import (CameraPose, cell_classes, ClassRoles, DepthPairer,
                                    Evidence, GridSpec, GroundError, GroundFusion, GroundProjector,
                                    group_grid, Intrinsics, UNKNOWN)
from pspnet_ros.core.labels import CAMVID

from conftest import packages_loaded_by

W, H, F, CX, CY = 160, 120, 100.0, 79.5, 59.5
CAM_Z = 1.0
ROAD, PAVEMENT, SKY = (CAMVID.classes.index(n) for n in ('road', 'pavement', 'sky'))
PEDESTRIAN, SIGN = CAMVID.classes.index('pedestrian'), CAMVID.classes.index('sign_symbol')
INTR = Intrinsics(W, H, (F, 0, CX, 0, F, CY, 0, 0, 1), (0, 0, 0, 0, 0))
LEVEL = CameraPose.from_rpy(0, 0, CAM_Z, 0, 0, 0)
GRID = GridSpec(resolution=0.1, width=200, height=200, origin_x=-10.0, origin_y=-10.0)
ROLES = ClassRoles.for_label_set(CAMVID)


def scene(box=True, sign=False):
    """Labels and the depth along the optical axis (metres, 0 = none) of the scene above."""
    labels = np.full((H, W), SKY, np.uint8)
    depth = np.zeros((H, W), np.float32)
    for v in range(H):
        if v <= CY:
            continue
        x = F * CAM_Z / (v - CY)
        for u in range(W):
            y = -(u - CX) * x / F
            labels[v, u] = ROAD if abs(y) <= 1.5 else PAVEMENT
            depth[v, u] = x                     # level camera: optical z is base x
    if box:  # front face at X = 5: u = 79.5 -+ 10, v from 59.5 - 0.5 * 100 / 5 to 59.5 + 20
        labels[50:80, 70:90] = PEDESTRIAN
        depth[50:80, 70:90] = 5.0
    if sign:  # a sign 2.5-3.0 m up at X = 7, Y = 2.0..2.5: u = 79.5 - 100 Y / 7, v = 59.5 -
        # 100 (z - 1) / 7: columns 44..50, rows 31..38 (sky below it, not ground)
        labels[31:39, 44:51] = SIGN
        depth[31:39, 44:51] = 7.0
    return labels, depth


def cell(x, y):
    """(column, row) of the cell holding base point (x, y) in GRID, by hand."""
    return int(math.floor((x + 10) / 0.1)), int(math.floor((y + 10) / 0.1))


def grid_classes(evidence):
    return cell_classes(evidence.counts, ROLES).reshape(GRID.height, GRID.width)


@pytest.fixture(scope='module')
def projector():
    p = GroundProjector(GRID, ROLES, max_range=10.0)
    p.set_camera(INTR, LEVEL)
    return p


def test_the_box_marks_only_its_footprint_at_five_metres(projector):
    labels, _ = scene()
    classes = grid_classes(projector.project(labels))
    rows, cols = np.nonzero(classes == PEDESTRIAN)
    xs = -10 + (cols + 0.5) * 0.1
    ys = -10 + (rows + 0.5) * 0.1
    # the footprint is the line X = 5.0, |Y| <= 0.475 (pixel centres 70..89): within a cell
    assert xs.min() >= 4.9 and xs.max() <= 5.15, sorted(set(np.round(xs, 2)))
    assert ys.min() >= -0.55 and ys.max() <= 0.55
    # and it covers that line: every 0.1 m of |Y| <= 0.4 has a pedestrian cell at X ~ 5
    for y in np.arange(-0.45, 0.46, 0.1):
        c, r = cell(5.0, y)
        assert (classes[r, c - 1:c + 2] == PEDESTRIAN).any(), y
    # never smeared along the rays: the naive projection of the box's pixels reaches from
    # 5 m to the 10 m limit
    assert not (classes[:, cell(5.25, 0)[0]:] == PEDESTRIAN).any()


def test_the_ground_the_box_hides_is_unknown(projector):
    labels, _ = scene()
    classes = grid_classes(projector.project(labels))
    # behind the face, |Y| <= 0.3 and 5.3 <= X <= 9.8 project into box pixels
    for x in np.arange(5.35, 9.8, 0.1):
        for y in np.arange(-0.25, 0.26, 0.1):
            c, r = cell(x, y)
            assert classes[r, c] == UNKNOWN, (x, y, classes[r, c])


def test_painted_road_and_pavement_land_where_painted(projector):
    labels, _ = scene(box=False)
    classes = grid_classes(projector.project(labels))
    # near the camera every cell is seen (a pixel row spans X^2 / 100 < 0.09 m at X < 3)
    for x in np.arange(1.75, 2.9, 0.1):
        for y in np.arange(-1.25, 1.3, 0.1):          # road: |Y| <= 1.5, one cell margin
            c, r = cell(x, y)
            assert classes[r, c] == ROAD, (x, y, classes[r, c])
        for y in (1.65, -1.65, 1.85, -1.85):        # pavement from |Y| = 1.5 to X * 0.8
            if abs(y) + 0.05 > 0.8 * (x - 0.05):    # a cell partly outside the view
                continue
            c, r = cell(x, y)
            assert classes[r, c] == PAVEMENT, (x, y, classes[r, c])
    # every cell that is known agrees with the painting within one cell
    rows, cols = np.nonzero(classes != UNKNOWN)
    for r, c in zip(rows, cols):
        x, y = GRID.centre(c, r)
        near = {ROAD if abs(y + dy) <= 1.5 else PAVEMENT for dy in (-0.1, 0, 0.1)}
        assert classes[r, c] in near, (x, y)


def test_cells_behind_below_or_beyond_range_are_unknown(projector):
    labels = np.full((H, W), ROAD, np.uint8)      # road even above the horizon
    ev = projector.project(labels)
    classes = grid_classes(ev)
    rows, cols = np.nonzero(classes != UNKNOWN)
    xs, ys = -10 + (cols + 0.5) * 0.1, -10 + (rows + 0.5) * 0.1
    # nearest ground seen: the bottom row's lower edge, X = 100 / 60 = 1.667 m
    assert xs.min() >= 1.6
    # nothing beyond 10 m (plus half a cell diagonal) and nothing outside the view:
    # |Y| <= X * 80 / 100 (the image half-width over the focal length)
    assert np.hypot(xs, ys).max() <= 10.0 + 0.071
    assert (np.abs(ys) <= xs * 0.8 + 0.1).all()
    # and every cell whose centre is in view is known: its centre (x, y) is seen by pixel
    # (79.5 - 100 y / x, 59.5 + 100 / x), far cells included (one pixel row spans 0.81 m at
    # 9 m: the cells between pixel rows take the class of the pixel seeing their centre)
    in_view = 0
    for r in range(GRID.height):
        for c in range(GRID.width):
            x, y = GRID.centre(c, r)
            if x <= 0 or math.hypot(x, y) > 10.0:
                continue
            u, v = 79.5 - 100 * y / x, 59.5 + 100 / x
            if -0.5 <= u < 159.5 and v < 119.5:
                in_view += 1
                assert classes[r, c] == ROAD, (x, y)
    assert in_view > 5000


def test_footprint_points_lie_on_the_ground_at_the_box_front(projector):
    labels, _ = scene()
    pts = projector.project(labels).points
    assert pts.shape == (20, 3)                    # one per box column
    np.testing.assert_allclose(pts[:, 0], 5.0, atol=1e-4)
    np.testing.assert_allclose(pts[:, 2], 0.0, atol=1e-5)
    np.testing.assert_allclose(np.sort(pts[:, 1]), -(np.arange(70, 90)[::-1] - CX) * 0.05,
                               atol=1e-4)


def test_an_obstacle_over_sky_or_off_the_bottom_marks_nothing(projector):
    labels, _ = scene(box=False, sign=True)
    labels[110:, 0:10] = PEDESTRIAN               # cut off by the image's lower edge
    ev = projector.project(labels)
    assert ev.points.shape == (0, 3)
    assert not np.isin(grid_classes(ev), [PEDESTRIAN, SIGN]).any()


def test_pitched_camera_centre_column_by_hand():
    # 1.2 m up, pitched 0.3 rad down, principal point on a pixel centre (80, 60): row v
    # looks 0.3 + atan((v - 60) / 100) below the horizon, so X = 1.2 / tan(that)
    intr = Intrinsics(W, H, (F, 0, 80.0, 0, F, 60.0, 0, 0, 1))
    p = GroundProjector(GRID, ROLES)
    p.set_camera(intr, CameraPose.from_rpy(0.5, 0, 1.2, 0, 0.3, 0))
    for v in (45, 60, 100, 119):
        labels = np.full((H, W), SKY, np.uint8)
        labels[v, 80] = ROAD
        x = 0.5 + 1.2 / math.tan(0.3 + math.atan((v - 60) / 100))
        rows, cols = np.nonzero(grid_classes(p.project(labels)) == ROAD)
        assert len(rows) == 1
        assert abs(GRID.centre(cols[0], rows[0])[0] - x) <= 0.1, (v, x)
        assert abs(GRID.centre(cols[0], rows[0])[1]) <= 0.1


def test_yawed_camera_sees_the_ground_to_its_left():
    # yaw +90 degrees: the camera looks along base +y, image right is base +x
    p = GroundProjector(GRID, ROLES)
    p.set_camera(INTR, CameraPose.from_rpy(0, 0, CAM_Z, 0, 0, math.pi / 2))
    labels = np.full((H, W), SKY, np.uint8)
    labels[99, 99] = ROAD          # v - 59.5 = 39.5: 2.532 m ahead; u - 79.5 = 19.5 to the right
    rows, cols = np.nonzero(grid_classes(p.project(labels)) == ROAD)
    fwd = 100 / 39.5
    assert len(rows) == 1
    x, y = GRID.centre(cols[0], rows[0])
    assert abs(y - fwd) <= 0.1 and abs(x - 19.5 * fwd / 100) <= 0.1


def test_distortion_is_undone_with_plumb_bob():
    # ground point X = 2, Y = 1.5: undistorted normalised (-0.75, 0.5), r^2 = 0.8125; k1 = -0.1
    # scales it by 1 - 0.1 * 0.8125 = 0.91875 on the sensor: pixel (79.5 - 68.906,
    # 59.5 + 45.938) = (10.59, 105.44). Read without undistortion, pixel (11, 105) would be
    # X = 100 / 45.5 = 2.20, Y = 68.5 / 45.5 = 1.51: two cells off.
    intr = Intrinsics(W, H, (F, 0, CX, 0, F, CY, 0, 0, 1), (-0.1, 0, 0, 0, 0))
    p = GroundProjector(GRID, ROLES)
    p.set_camera(intr, LEVEL)
    labels = np.full((H, W), SKY, np.uint8)
    labels[105, 11] = ROAD
    rows, cols = np.nonzero(grid_classes(p.project(labels)) == ROAD)
    x, y = GRID.centre(cols[0], rows[0])
    assert abs(x - 2.0) <= 0.1 and abs(y - 1.5) <= 0.1, (x, y)
    # barrel distortion (k1 < 0) pulls the corners in: a corner pixel's true ray is further
    # from the optical axis, so steeper, and meets the ground nearer than without undistortion
    p2 = GroundProjector(GRID, ROLES)
    p2.set_camera(Intrinsics(W, H, INTR.k), LEVEL)
    labels2 = np.full((H, W), SKY, np.uint8)
    labels2[119, 0] = ROAD
    a = grid_classes(p.project(labels2))
    b = grid_classes(p2.project(labels2))
    (ra,), (ca,) = np.nonzero(a == ROAD)
    (rb,), (cb,) = np.nonzero(b == ROAD)
    assert GRID.centre(ca, ra)[0] < GRID.centre(cb, rb)[0]


def test_depth_puts_every_box_pixel_where_the_box_stands(projector):
    labels, depth = scene(sign=True)
    ev = projector.project_depth(labels, depth, '32FC1')
    classes = grid_classes(ev)
    rows, cols = np.nonzero(classes == PEDESTRIAN)
    xs, ys = -10 + (cols + 0.5) * 0.1, -10 + (rows + 0.5) * 0.1
    assert xs.min() >= 4.95 and xs.max() <= 5.1      # X = 5.0 exactly: cell [5.0, 5.1)
    assert ys.min() >= -0.5 and ys.max() <= 0.5
    assert len(set(rows)) == 10                      # |Y| <= 0.475: the 10 cells -0.5..0.5
    # the sign floats 2.5-3 m up, outside the default 0.05-2.0 m band
    assert not (classes == SIGN).any()
    # the box's points: x = 5, its full height up to the band's top, all 600 pixels with
    # a height in the band (rows 50..79: z = 1 - (v - 59.5) * 0.05 from 1.475 to 0.025; the
    # lowest row, 0.025 m, is below the band's 0.05)
    pts = ev.points
    assert pts.shape == (29 * 20, 3)
    np.testing.assert_allclose(pts[:, 0], 5.0, atol=1e-5)
    assert pts[:, 2].min() >= 0.05 and pts[:, 2].max() == pytest.approx(1.475, abs=1e-5)


def test_depth_with_a_higher_band_places_the_floating_sign():
    p = GroundProjector(GRID, ROLES, height_band=(0.05, 3.5))
    p.set_camera(INTR, LEVEL)
    labels, depth = scene(box=False, sign=True)
    depth_mm = np.round(depth * 1000).astype(np.uint16)     # 16UC1: millimetres
    classes = grid_classes(p.project_depth(labels, depth_mm, '16UC1'))
    rows, cols = np.nonzero(classes == SIGN)
    xs, ys = -10 + (cols + 0.5) * 0.1, -10 + (rows + 0.5) * 0.1
    assert xs.min() >= 6.95 and xs.max() <= 7.1
    # columns 44..50: Y = (79.5 - u) * 7 / 100 from 2.065 to 2.485
    assert ys.min() >= 2.0 and ys.max() <= 2.5


def test_bad_inputs_give_clear_errors_and_no_grid(projector):
    labels, depth = scene()
    fresh = GroundProjector(GRID, ROLES)
    with pytest.raises(GroundError, match='waiting for camera_info'):
        fresh.project(labels)
    # looking 1 rad up: the whole +-31 degree view is above the horizon
    with pytest.raises(GroundError, match='no pixel of the camera sees the grid'):
        fresh.set_camera(INTR, CameraPose.from_rpy(0, 0, CAM_Z, 0, -1.0, 0))
    with pytest.raises(GroundError, match='waiting for camera_info'):
        fresh.project(labels)                         # still no grid after the failure
    with pytest.raises(GroundError, match='aligned'):
        projector.project_depth(labels, depth[:, :100], '32FC1')
    with pytest.raises(GroundError, match='16UC1'):
        projector.project_depth(labels, depth, 'rgb8')
    with pytest.raises(GroundError, match='needs uint16'):
        projector.project_depth(labels, depth, '16UC1')
    with pytest.raises(GroundError, match='camera resolution'):
        projector.project(labels[:60])
    with pytest.raises(GroundError, match='not calibrated'):
        Intrinsics(W, H, (0.0,) * 9)


def test_depth_pairing_exact_or_within_tolerance_and_counts_the_rest():
    d = np.zeros((2, 2), np.float32)
    exact = DepthPairer(0.0)
    exact.add(1_000_000_000, d, '32FC1')
    assert exact.match(1_000_000_000) is not None
    assert exact.match(1_000_000_001) is None
    assert (exact.matched, exact.unmatched) == (1, 1)
    loose = DepthPairer(0.02)
    loose.add(1_000_000_000, d, '32FC1')
    near = np.ones((2, 2), np.float32)
    loose.add(1_015_000_000, near, '32FC1')
    got = loose.match(1_012_000_000)              # 3 ms from the second, 12 ms from the first
    assert got is not None and got[0] is near
    assert loose.match(1_040_000_000) is None     # 25 ms from the nearest
    assert (loose.matched, loose.unmatched) == (1, 1)


def test_fusion_takes_each_cameras_latest_evidence_within_the_tolerance():
    def ev(cell_, cls):
        e = np.zeros((4, 11), np.int32)
        e[cell_, cls] = 1
        return _evidence(e)

    f = GroundFusion(0.05)
    f.update('front', 1_000_000_000, ev(0, ROAD))
    f.update('rear', 1_030_000_000, ev(1, PEDESTRIAN))
    f.update('front', 900_000_000, ev(2, ROAD))         # older than front's latest: ignored
    fused, names = f.fused(1_030_000_000)
    assert names == ['front', 'rear']
    assert fused.counts[0, ROAD] == 1 and fused.counts[1, PEDESTRIAN] == 1
    assert fused.counts[2].sum() == 0
    fused, names = f.fused(1_070_000_000)              # front is 70 ms old: left out
    assert names == ['rear']
    assert f.fused(2_000_000_000) is None


def _evidence(counts):
    return Evidence(counts, np.zeros((0, 3), np.float32))


def test_group_grids_cost_other_cost_and_unknown():
    classes = np.array([ROAD, PAVEMENT, PEDESTRIAN, UNKNOWN], np.int16)
    drivable = group_grid(classes, [ROAD], cost=0, other_cost=100)
    obstacle = group_grid(classes, [PEDESTRIAN], cost=100, other_cost=0)
    assert drivable.tolist() == [0, 100, 100, -1]
    assert obstacle.tolist() == [0, 0, 100, -1]
    assert drivable.dtype == np.int8
    # an obstacle footprint wins over ground pixels in the same cell
    counts = np.zeros((2, 11), np.int32)
    counts[0, ROAD] = 50
    counts[0, PEDESTRIAN] = 1
    counts[1, PAVEMENT] = 3
    counts[1, ROAD] = 2
    assert cell_classes(counts, ROLES).tolist() == [PEDESTRIAN, PAVEMENT]


def test_class_roles_reject_names_outside_the_label_set():
    with pytest.raises(GroundError, match="'lawn' is not in label set 'camvid'"):
        ClassRoles.for_label_set(CAMVID, ground=['road', 'lawn'])
    with pytest.raises(GroundError, match='neither ground nor obstacle'):
        ClassRoles.for_label_set(CAMVID, groups={'up': ['sky']})


def test_the_core_projection_imports_no_ros_package():
    assert packages_loaded_by('import pspnet_ros.core.ground', (
        'rclpy', 'nav_msgs', 'geometry_msgs', 'sensor_msgs', 'std_msgs', 'tf2_ros')) == []
