"""ROS side of the ground-plane semantic grid: camera_info, depth and camera pose in;
nav_msgs/OccupancyGrid per class group and a PointCloud2 of obstacle points out.

The projection itself is ``core.ground`` and the message conversions ``ground_msgs``; this
module keeps the latest evidence of each camera and publishes the fused grids in the base
frame, stamped with the frame's stamp. The segmentation node calls ``GroundGrid.on_frame`` once per
published frame; nothing is computed while nobody subscribes to a ground output.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import threading
from typing import Callable, Mapping, Sequence

import numpy as np

from ..core.ground import (CameraPose, cell_classes, ClassRoles, DepthPairer, Evidence,
                           GridSpec, GroundError, GroundFusion, GroundProjector, group_grid)
from ..core.labels import LabelSet
from .ground_msgs import depth_from_msg, grid_to_msg, intrinsics_from_msg, points_to_msg, stamp_ns
from .parameters import PARAMETERS

POSE_SOURCES = ('auto', 'tf', 'parameters')
# (name, label, topic, output) of a camera: see GroundGrid
CameraSpec = tuple[str, str, Callable[[str], str], Callable[[str], str]]
POINTS = 'obstacle_points'

# name -> (default, description) of the ground_* parameters; the node's schema
# (parameters.SCHEMA) declares them with the rest.
GROUND_PARAMETERS = {n: (p.default, p.description) for n, p in PARAMETERS.items()
                     if n.startswith('ground_')}


@dataclass(frozen=True)
class GroundConfig:
    """The ground grid's settings, checked."""

    base_frame: str
    pose_source: str
    poses: dict
    grid: GridSpec
    roles: ClassRoles
    costs: dict
    max_range: float = 10.0
    ground_z: float = 0.0
    use_depth: bool = False
    depth_tolerance: float = 0.0
    height_band: tuple = (0.05, 2.0)
    sync_tolerance: float = 0.1
    rectified: bool = False


def _names(values) -> list[str]:
    return [v.strip() for v in (values or []) if v and v.strip()]


def ground_config(p: Mapping, labels: LabelSet, cameras: Sequence[str]) -> GroundConfig | None:
    """``GroundConfig`` from the node's parameter values (``ground_*``), or None when
    disabled. ``cameras`` are the node's camera names ('' for a single camera). Raises
    ``ValueError`` naming the parameter at fault."""
    if not p.get('ground_enabled', False):
        return None
    source = p.get('ground_pose_source', 'auto')
    if source not in POSE_SOURCES:
        raise ValueError(f'ground_pose_source must be one of {", ".join(POSE_SOURCES)}, got '
                         f'{source!r}')
    poses = {}
    for entry in _names(p.get('ground_camera_poses')):
        name, _, nums = entry.rpartition(':')
        name = name.strip()
        if name not in cameras:
            raise ValueError(f'ground_camera_poses entry {entry!r}: camera {name or "(none)"!r} '
                             f'is not one of the cameras {[c or "(single)" for c in cameras]}'
                             + ('; a single-camera node takes "x,y,z,roll,pitch,yaw"'
                                if cameras == [''] or list(cameras) == [''] else ''))
        try:
            vals = tuple(float(v) for v in nums.split(','))
        except ValueError:
            vals = ()
        if len(vals) != 6 or not all(math.isfinite(v) for v in vals):
            raise ValueError(f'ground_camera_poses entry {entry!r}: expected six numbers '
                             'x,y,z,roll,pitch,yaw (metres, radians)')
        poses[name] = vals
    if source == 'parameters':
        missing = [c or '(single)' for c in cameras if c not in poses]
        if missing:
            raise ValueError(f'ground_pose_source is parameters but ground_camera_poses has no '
                             f'pose for camera(s) {missing}')
    band = (float(p.get('ground_min_obstacle_height', 0.05)),
            float(p.get('ground_max_obstacle_height', 2.0)))
    if band[0] > band[1]:
        raise ValueError(f'ground_min_obstacle_height {band[0]} is above '
                         f'ground_max_obstacle_height {band[1]}')
    groups = None
    if _names(p.get('ground_groups')):
        groups = {}
        for entry in _names(p.get('ground_groups')):
            name, sep, classes = entry.partition(':')
            if not sep or not name.strip() or not _names(classes.split(',')):
                raise ValueError(f'ground_groups entry {entry!r}: expected "name:class,class"')
            groups[name.strip()] = _names(classes.split(','))
    try:
        grid = GridSpec.from_extent(float(p.get('ground_size_x', 20.0)),
                                    float(p.get('ground_size_y', 20.0)),
                                    float(p.get('ground_resolution', 0.1)),
                                    float(p.get('ground_origin_x', -10.0)),
                                    float(p.get('ground_origin_y', -10.0)))
        roles = ClassRoles.for_label_set(
            labels, _names(p.get('ground_classes')) or None,
            _names(p.get('ground_obstacle_classes')) or None, groups)
    except GroundError as exc:
        raise ValueError(f'ground: {exc}') from None
    if not roles.groups:
        raise ValueError(f'ground_groups is empty and label set {labels.name!r} has no default '
                         'groups: give at least one "name:class,class"')
    costs = {g: (0, 100) if g == 'drivable' else (100, 0) for g in roles.groups}
    for entry in _names(p.get('ground_group_costs')):
        name, _, nums = entry.partition(':')
        try:
            cost, other = (int(v) for v in nums.split(','))
        except ValueError:
            cost = other = -1
        if name.strip() not in roles.groups or not (0 <= cost <= 100 and 0 <= other <= 100):
            raise ValueError(f'ground_group_costs entry {entry!r}: expected "group:cost,'
                             f'other_cost" with a group of {sorted(roles.groups)} and costs '
                             '0..100')
        costs[name.strip()] = (cost, other)
    return GroundConfig(
        base_frame=p.get('ground_base_frame', 'base_link'), pose_source=source, poses=poses,
        grid=grid, roles=roles, costs=costs, max_range=float(p.get('ground_max_range', 10.0)),
        ground_z=float(p.get('ground_plane_z', 0.0)),
        use_depth=bool(p.get('ground_use_depth', False)),
        depth_tolerance=float(p.get('ground_depth_tolerance', 0.0)),
        height_band=band,
        sync_tolerance=float(p.get('ground_sync_tolerance', 0.1)),
        rectified=bool(p.get('ground_rectified', False)))


def tf2_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


class _Cam:
    """One camera's ground state."""

    def __init__(self, name: str, label: str, source: str, pose: CameraPose | None,
                 projector: GroundProjector, tolerance: float):
        self.name, self.label, self.source, self.pose = name, label, source, pose
        self.projector = projector
        self.info = None
        self.info_topic = ''
        self.pairer = DepthPairer(tolerance)
        self.error = ''          # why the last frame gave no grid ('' = it did)
        self.pubs: dict = {}
        self.subs: list = []


class GroundGrid:
    """Publishes the ground grids of a node's cameras.

    Args:
        node: the rclpy node (a lifecycle node gets lifecycle publishers).
        cfg: settings from ``ground_config``.
        cameras: ``(name, label, topic, output)`` per camera: the camera's name ('' for a
            single camera), its name in logs, and functions giving an input topic
            (``camera_info``) and an output topic (``ground/drivable``) of it.
    """

    def __init__(self, node, cfg: GroundConfig, cameras: Sequence[CameraSpec]):
        self.node, self.cfg = node, cfg
        self.log = node.get_logger()
        self.lock = threading.Lock()
        self.fusion = GroundFusion(cfg.sync_tolerance)
        self.counts = dict.fromkeys(('frames_projected', 'frames_failed', 'frames_skipped',
                                     'grids_published', 'lookup_builds'), 0)
        self.pubs: dict = {}
        self._topic, self._output = {}, {}
        self._tf = None
        tf_ok = tf2_available()
        self.cams: dict[str, _Cam] = {}
        for name, label, topic, output in cameras:
            if cfg.pose_source == 'parameters' or (cfg.pose_source == 'auto'
                                                   and name in cfg.poses):
                source = 'parameters'
                pose = CameraPose.from_rpy(*cfg.poses[name])
            elif cfg.pose_source == 'tf' or tf_ok:
                source, pose = 'tf', None
            else:
                raise ValueError(f'ground: camera {label!r} has no pose: tf2_ros is not '
                                 'installed (pip environment), so give it in '
                                 'ground_camera_poses as "x,y,z,roll,pitch,yaw"')
            if source == 'tf' and not tf_ok:
                raise ValueError('ground_pose_source is tf but tf2_ros cannot be imported: '
                                 'install ros-<distro>-tf2-ros or use ground_camera_poses')
            proj = GroundProjector(cfg.grid, cfg.roles, cfg.max_range, cfg.ground_z,
                                   cfg.height_band)
            self.cams[name] = _Cam(name, label, source, pose, proj, cfg.depth_tolerance)
            self._topic[name], self._output[name] = topic, output
            where = (f'TF ({cfg.base_frame} -> the image frame_id)' if source == 'tf' else
                     'parameters (ground_camera_poses: '
                     + ','.join(f'{v:g}' for v in cfg.poses[name]) + ')')
            self.log.info(f'ground: camera {label} pose from {where}')
        self.multi = len(self.cams) > 1

    # -- lifecycle -------------------------------------------------------------------------

    def make_publishers(self) -> None:
        """The grid and points publishers (reliable, transient local: Nav2's StaticLayer
        subscribes that way by default)."""
        from nav_msgs.msg import OccupancyGrid
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        make = getattr(self.node, 'create_lifecycle_publisher', self.node.create_publisher)
        # the fused outputs; with several cameras each also has its own
        for group in self.cfg.roles.groups:
            self.pubs[group] = make(OccupancyGrid, f'~/ground/{group}', qos)
        self.pubs[POINTS] = make(PointCloud2, f'~/ground/{POINTS}', qos)
        if self.multi:
            for cam in self.cams.values():
                out = self._output[cam.name]
                for group in self.cfg.roles.groups:
                    cam.pubs[group] = make(OccupancyGrid, out(f'ground/{group}'), qos)
                cam.pubs[POINTS] = make(PointCloud2, out(f'ground/{POINTS}'), qos)

    def subscribe(self) -> None:
        """camera_info (and depth) per camera; the TF listener if a camera uses TF."""
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        for cam in self.cams.values():
            cam.info_topic = self._topic[cam.name]('camera_info')
            cam.subs.append(self.node.create_subscription(
                CameraInfo, cam.info_topic, lambda msg, c=cam: self._on_info(c, msg),
                qos_profile_sensor_data))
            if self.cfg.use_depth:
                cam.subs.append(self.node.create_subscription(
                    Image, self._topic[cam.name]('depth/image'),
                    lambda msg, c=cam: self._on_depth(c, msg), qos_profile_sensor_data))
        if self._tf is None and any(c.source == 'tf' for c in self.cams.values()):
            import tf2_ros
            buffer = tf2_ros.Buffer()
            self._tf = (buffer, tf2_ros.TransformListener(buffer, self.node))

    def unsubscribe(self) -> None:
        for cam in self.cams.values():
            for s in cam.subs:
                self.node.destroy_subscription(s)
            cam.subs = []

    def release(self) -> None:
        """Subscriptions and publishers destroyed (cleanup)."""
        self.unsubscribe()
        destroy = getattr(self.node, 'destroy_lifecycle_publisher', self.node.destroy_publisher)
        for pubs in [self.pubs] + [c.pubs for c in self.cams.values()]:
            for pub in pubs.values():
                destroy(pub)
            pubs.clear()
        self._tf = None

    # -- inputs ----------------------------------------------------------------------------

    def _on_info(self, cam: _Cam, msg) -> None:
        with self.lock:
            cam.info = msg

    def _on_depth(self, cam: _Cam, msg) -> None:
        try:
            depth, enc = depth_from_msg(msg)
        except GroundError as exc:
            cam.error = str(exc)
            return
        with self.lock:
            cam.pairer.add(stamp_ns(msg.header.stamp), depth, enc)

    def _pose(self, cam: _Cam, header) -> CameraPose:
        if cam.source == 'parameters':
            return cam.pose
        from rclpy.time import Time
        buffer = self._tf[0]
        try:
            tf = buffer.lookup_transform(self.cfg.base_frame, header.frame_id,
                                         Time.from_msg(header.stamp)).transform
        except Exception as exc:    # tf2 raises several lookup exception types
            raise GroundError(f'no transform {self.cfg.base_frame} -> {header.frame_id!r} at '
                              f'the frame stamp: {exc}') from None
        t, q = tf.translation, tf.rotation
        # rounded so that TF jitter does not rebuild the lookup every frame
        return CameraPose.from_quaternion(
            [round(v, 4) for v in (t.x, t.y, t.z)], [round(v, 6) for v in (q.x, q.y, q.z, q.w)])

    # -- per frame -------------------------------------------------------------------------

    def wanted(self) -> bool:
        """Whether anyone subscribes to a ground output."""
        pubs = list(self.pubs.values()) + [p for c in self.cams.values()
                                           for p in c.pubs.values()]
        return any(p.get_subscription_count() > 0 for p in pubs)

    def on_frame(self, camera: str, header, labels: np.ndarray) -> bool:
        """Project one segmented frame (class ids at camera resolution) and publish the
        grids; returns whether grids went out. Errors are recorded for diagnostics, never
        raised: the frame's other outputs are not affected."""
        cam = self.cams[camera]
        if not self.wanted():
            self.counts['frames_skipped'] += 1
            return False
        try:
            evidence = self._project(cam, header, labels)
        except GroundError as exc:
            self.counts['frames_failed'] += 1
            if str(exc) != cam.error:
                self.log.warning(f'ground ({cam.label}): {exc}')
            cam.error = str(exc)
            return False
        cam.error = ''
        self.counts['frames_projected'] += 1
        stamp = stamp_ns(header.stamp)
        with self.lock:
            self.fusion.update(camera, stamp, evidence)
            fused = self.fusion.fused(stamp)
        out = header.__class__(stamp=header.stamp, frame_id=self.cfg.base_frame)
        if self.multi:
            self._publish(cam.pubs, evidence, out)
        self._publish(self.pubs, fused[0], out)
        self.counts['grids_published'] += 1
        return True

    def _project(self, cam: _Cam, header, labels: np.ndarray) -> Evidence:
        with self.lock:
            info = cam.info
        if info is None:
            raise GroundError(f'no camera_info received on {cam.info_topic or "camera_info"} '
                              'yet: no grid until it arrives')
        intr = intrinsics_from_msg(info, self.cfg.rectified)
        if cam.projector.set_camera(intr, self._pose(cam, header)):
            self.counts['lookup_builds'] += 1
        if not self.cfg.use_depth:
            return cam.projector.project(labels)
        with self.lock:
            depth = cam.pairer.match(stamp_ns(header.stamp))
        if depth is None:
            raise GroundError(
                f'no depth image on {self._topic[cam.name]("depth/image")} '
                + ('stamped exactly as the frame' if not self.cfg.depth_tolerance else
                   f'within {self.cfg.depth_tolerance} s of the frame') + ': frame not '
                'projected (ground_depth_tolerance)')
        return cam.projector.project_depth(labels, *depth)

    def _publish(self, pubs: dict, evidence: Evidence, header) -> None:
        classes = None
        for group, ids in self.cfg.roles.groups.items():
            pub = pubs.get(group)
            if pub is None or pub.get_subscription_count() == 0:
                continue
            if classes is None:
                classes = cell_classes(evidence.counts, self.cfg.roles)
            cost, other = self.cfg.costs[group]
            pub.publish(grid_to_msg(self.cfg.grid, group_grid(classes, ids, cost, other),
                                    header, self.cfg.ground_z))
        pub = pubs.get(POINTS)
        if pub is not None and pub.get_subscription_count() > 0:
            pub.publish(points_to_msg(evidence.points, header))

    # -- diagnostics -----------------------------------------------------------------------

    def values(self) -> dict[str, str]:
        """Diagnostics key/values (``ground_*``)."""
        vals = {f'ground.{k}': str(v) for k, v in self.counts.items()}
        for cam in self.cams.values():
            pre = f'ground.{cam.name}.' if self.multi else 'ground.'
            vals[pre + 'pose_source'] = cam.source
            vals[pre + 'camera_info'] = 'received' if cam.info is not None else 'waiting'
            if self.cfg.use_depth:
                vals[pre + 'depth_matched'] = str(cam.pairer.matched)
                vals[pre + 'depth_unmatched'] = str(cam.pairer.unmatched)
            if cam.error:
                vals[pre + 'error'] = cam.error
        return vals

    def status(self) -> tuple[int, str]:
        """(level, message): 0 OK, 1 WARN (waiting for camera_info), 2 ERROR (a camera's last
        frame gave no grid for another reason)."""
        errors = [(c.label, c.error) for c in self.cams.values() if c.error]
        if not errors:
            return 0, (f'{self.counts["frames_projected"]} frames projected'
                       if self.counts['frames_projected'] else 'no frame projected yet')
        level = 1 if all('no camera_info' in e for _, e in errors) else 2
        return level, '; '.join(f'{label}: {e}' for label, e in errors)
