"""Ground-plane semantic grid: class labels of a camera projected into cells around the robot.

Frames follow REP-103/REP-105: the base frame has x forward, y left and z up, and the ground
is the plane ``z = ground_z`` in it; a camera's optical frame has z forward, x right and y
down (the frame an image header names). Pose parameters describe the camera body frame
(x forward, like a URDF ``camera_link``); ``CameraPose.from_rpy`` turns that into the optical
frame.

Without depth, ground classes (road, pavement...) land where their pixel rays meet the ground,
and obstacle classes mark only their footprint: the lowest pixel of each vertical run of
obstacle pixels in each image column whose pixel below is ground, projected at the boundary
between the two pixels, where the obstacle stands. The rest of an obstacle is never spread
along its rays, and the ground it hides stays unknown. Cells above the horizon, beyond
``max_range`` or outside the view are unknown. Far away, where one pixel row spans several
cells, a cell that no pixel centre lands in takes the class of the pixel that sees its centre
(if that is a ground class). The per-pixel cell lookup and that far-cell table are built once
per intrinsics/pose change (``GroundProjector.set_camera``), so a frame costs a few table
lookups and one ``np.bincount``.

With an aligned depth image every labelled pixel goes to its 3D point: ground classes where
they are, obstacle pixels where they stand if their height above the ground lies in
``height_band``.

The parts: ``grid`` (grid spec, class roles, per-cell classes), ``camera`` (pose and
intrinsics), ``projector`` (the projection), ``depth`` (depth checks and pairing) and ``fusion``
(evidence over cameras).
"""
from __future__ import annotations

from .camera import BODY_FROM_OPTICAL, CameraPose, Intrinsics, rotation_rpy
from .depth import check_depth, DEPTH_ENCODINGS, DepthPairer
from .fusion import Evidence, fuse, GroundFusion
from .grid import (cell_classes, CLASS_ROLES, ClassRoles, DEFAULT_GROUPS, GridSpec, GroundError,
                   group_grid, UNKNOWN)
from .projector import GroundProjector

__all__ = ['BODY_FROM_OPTICAL', 'CameraPose', 'cell_classes', 'check_depth', 'CLASS_ROLES',
           'ClassRoles', 'DEFAULT_GROUPS', 'DEPTH_ENCODINGS', 'DepthPairer', 'Evidence', 'fuse',
           'GridSpec', 'GroundError', 'GroundFusion', 'GroundProjector', 'group_grid',
           'Intrinsics', 'rotation_rpy', 'UNKNOWN']
