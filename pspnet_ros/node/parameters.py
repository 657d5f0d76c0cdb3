"""The node's parameter schema: one table gives the defaults, descriptors and read-only set.

``SCHEMA`` is the only place a parameter's default, type, range and description are written.
``NodeConfig`` (``config.py``) reads its defaults from ``DEFAULTS``; ``config/segment.yaml``
states them again for users and a test checks it against this table key by key. Importing
this module needs no ROS; ``descriptor`` and ``ros_type`` import rcl_interfaces / rclpy when
the node calls them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.image import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Param:
    """One node parameter.

    ``fixed``: read-only while the node is configured (changing it needs a new model or new
    subscriptions: deactivate, clean up, set, configure). ``per_camera``: a named camera may
    override it as ``<camera>.<name>``. ``startup``: read-only for the node's lifetime.
    ``items``: the element type of an array (``str`` or ``int``), since an empty default has
    none.
    """

    name: str
    default: object
    description: str
    lo: float | None = None
    hi: float | None = None
    fixed: bool = False
    per_camera: bool = False
    startup: bool = False
    items: type | None = None

    @property
    def kind(self) -> type:
        """The Python type of the value: bool, int, float, str or list."""
        return type(self.default)


_INT31 = 2 ** 31 - 1

SCHEMA: tuple[Param, ...] = (
    Param('model', '', 'model card YAML; empty = the shipped CamVid model', fixed=True),
    Param('backend', 'auto', 'inference backend: auto, torch, onnxruntime, tflite, edgetpu; '
          'auto times the candidates that run here at configure (auto_budget_s) and runs the '
          'fastest within 1 mIoU point of the float model, cached for the next start; with '
          'model empty, onnxruntime and tflite run the shipped ONNX and int8 TFLite exports',
          fixed=True),
    Param('auto_budget_s', 10.0, 'seconds backend auto may spend timing its candidates at '
          'configure (once per CPU, model and runtime versions: the choice is cached); 0 = no '
          'measuring, the fixed chain edgetpu, tflite, onnxruntime, torch', lo=0.0, hi=600.0,
          fixed=True),
    Param('device', 'cpu', 'backend device: cpu, cuda, cuda:N, or an Edge TPU selector',
          fixed=True),
    Param('fallback_backends', '', 'comma-separated backends to try, in order, if the main one '
          'is unavailable or fails; empty = no fallback', fixed=True),
    Param('backend_options', [], 'backend options as "key=value" strings, e.g. fp16=true '
          '(torch), providers=cpu (onnxruntime); empty = the defaults of the backend (torch: '
          'channels_last=true, fuse_bn=true); options of other backends are ignored with a '
          'warning', fixed=True, items=str),
    Param('input_size', [0, 0], 'network input [height, width]; [0, 0] = model card',
          fixed=True, items=int),
    Param('resize_mode', '', 'stretch or letterbox; empty = model card', fixed=True),
    Param('test_time_flip', False, 'also segment each mirrored frame and average the two '
          '(about 2x the inference time, a little more accuracy)', fixed=True),
    Param('max_image_pixels', DEFAULT_MAX_PIXELS, 'frames with more pixels are rejected',
          lo=1, hi=_INT31),
    Param('num_threads', 0, 'CPU threads for inference; 0 = one per usable CPU; capped at the '
          'CPUs the process may use (its affinity)', lo=0, hi=256, fixed=True),
    Param('cpu_affinity', [], 'CPUs to pin the node to, e.g. [2, 3]; empty = leave the '
          'affinity as started (taskset, cgroups)', fixed=True, items=int),
    Param('input_transport', 'raw', 'raw (sensor_msgs/Image on "image") or compressed '
          '(sensor_msgs/CompressedImage on "image/compressed")', fixed=True, per_camera=True),
    Param('image_qos', 'sensor_data', 'sensor_data (best effort) or reliable', fixed=True,
          per_camera=True),
    Param('qos_depth', 2, 'subscription queue depth', lo=1, hi=100, fixed=True,
          per_camera=True),
    Param('use_camera_info', False, 'subscribe camera_info and republish it for the mask',
          fixed=True, per_camera=True),
    Param('publish_color_mask', True, 'publish ~/color_mask (rgb8)'),
    Param('publish_overlay', True, 'publish ~/overlay (rgb8)'),
    Param('publish_confidence', False, 'publish ~/confidence (32FC1 max class probability)'),
    Param('overlay_alpha', 0.5, 'weight of the colour mask in ~/overlay', lo=0.0, hi=1.0),
    Param('occupancy_regions', ['ahead:0.3,0.5,0.7,1.0'], 'named image regions for '
          '~/occupancy, "name:x0,y0,x1,y1" as fractions of width/height', items=str),
    Param('diagnostics_period', 1.0, 'seconds between /diagnostics messages', lo=0.1, hi=60.0,
          fixed=True),
    Param('starvation_warn_sec', 3.0, 'WARN in /diagnostics when a camera got no frame for '
          'this long: no publisher, a matched publisher that never delivered (transport), or '
          'a camera that stalled', lo=0.1, hi=3600.0),
    Param('diagnostics_window_s', 10.0, 'the /diagnostics level counts frame errors of the '
          'last this many seconds (the totals stay counters): after a bad frame the level '
          'returns to OK within this window', lo=1.0, hi=86400.0),
    Param('log_throttle_sec', 5.0, 'minimum seconds between repeated warnings of one kind',
          lo=0.0, hi=3600.0),
    Param('autostart', True, 'configure and activate on start (set false under a lifecycle '
          'manager)', startup=True),
    Param('cameras', [], 'camera names; each subscribes <name>/image (or '
          '<name>/image/compressed) and <name>/camera_info and publishes ~/<name>/mask ...; '
          'empty = one camera on image, outputs ~/mask ...', fixed=True, items=str),
    Param('max_batch', 4, 'most frames (one per camera) run together in one batch', lo=1,
          hi=64, fixed=True),
    Param('sync_tolerance', 0.0, 'seconds; > 0 batches the frames of one capture instant '
          '(stamps within this of each other); 0 = off', lo=0.0, hi=10.0, fixed=True),
    Param('sync_wait', 0.1, 'seconds a synchronised set waits for its missing cameras before '
          'it runs without them (counted)', lo=0.0, hi=10.0, fixed=True),
    Param('inference_workers', 0, 'threads that run batches side by side, each on its own '
          'cameras with num_threads / workers CPU threads; 0 = auto (one camera or '
          'synchronised sets: 1; several cameras on torch or TFLite on the CPU: one per camera, '
          'at most one per CPU; TFLite with an interpreter per worker)', lo=0, hi=64,
          fixed=True),
    # The ground-plane semantic grid (node/ground.py; docs/ROS_INTERFACE.md, "Ground-plane
    # semantic grid"), read at configure.
    Param('ground_enabled', False, 'publish the ground-plane semantic grid (~/ground/<group>, '
          '~/ground/obstacle_points); needs camera_info and the camera pose', fixed=True),
    Param('ground_base_frame', 'base_link', 'frame of the grids and points (REP-105, z up); the '
          'ground is the plane z = ground_plane_z in it', fixed=True),
    Param('ground_pose_source', 'auto', 'camera pose: tf (base_frame -> the image frame_id, the '
          'optical frame), parameters (ground_camera_poses), or auto: parameters for cameras '
          'listed there, else tf when tf2_ros imports', fixed=True),
    Param('ground_camera_poses', [], 'camera body pose in base_frame, x forward (URDF '
          'camera_link): "x,y,z,roll,pitch,yaw" (metres, radians; pitch > 0 looks down) or '
          '"camera:x,y,z,roll,pitch,yaw" per camera', fixed=True, items=str),
    Param('ground_resolution', 0.1, 'grid cell size, metres', lo=0.001, hi=10.0, fixed=True),
    Param('ground_size_x', 20.0, 'grid extent along x, metres', lo=0.1, hi=1000.0, fixed=True),
    Param('ground_size_y', 20.0, 'grid extent along y, metres', lo=0.1, hi=1000.0, fixed=True),
    Param('ground_origin_x', -10.0, 'base-frame x of the grid corner (its lowest x), metres',
          lo=-1000.0, hi=1000.0, fixed=True),
    Param('ground_origin_y', -10.0, 'base-frame y of the grid corner (its lowest y), metres',
          lo=-1000.0, hi=1000.0, fixed=True),
    Param('ground_max_range', 10.0, 'metres from a camera beyond which nothing is marked',
          lo=0.1, hi=1000.0, fixed=True),
    Param('ground_plane_z', 0.0, 'height of the ground plane in base_frame, metres',
          lo=-100.0, hi=100.0, fixed=True),
    Param('ground_classes', [], 'classes projected where seen; [] = the label set '
          'default (CamVid: road, pavement)', fixed=True, items=str),
    Param('ground_obstacle_classes', [], 'classes marked at their footprint only; [] = the '
          'label set default', fixed=True, items=str),
    Param('ground_groups', [], 'one OccupancyGrid per group, "name:class,class"; [] = the label '
          'set default (CamVid: drivable:road and obstacle:car,pedestrian,...)', fixed=True,
          items=str),
    Param('ground_group_costs', [], '"name:cost,other_cost": cell value where the group is '
          'seen and where another class is; default 100,0 (drivable: 0,100)', fixed=True,
          items=str),
    Param('ground_use_depth', False, 'subscribe an aligned depth image (depth/image; 16UC1 mm '
          'or 32FC1 m) and place every pixel at its 3D point', fixed=True),
    Param('ground_depth_tolerance', 0.0, 'seconds between a frame and its depth image; 0 = the '
          'exact stamp. Unmatched frames are counted, not projected', lo=0.0, hi=10.0,
          fixed=True),
    Param('ground_min_obstacle_height', 0.05, 'with depth: obstacle points count from this '
          'height above the ground, metres', lo=-10.0, hi=100.0, fixed=True),
    Param('ground_max_obstacle_height', 2.0, 'with depth: obstacle points count up to this '
          'height above the ground, metres', lo=-10.0, hi=100.0, fixed=True),
    Param('ground_sync_tolerance', 0.1, 'the fused grid takes the latest evidence of each '
          'camera stamped within this many seconds of the frame', lo=0.0, hi=10.0, fixed=True),
    Param('ground_rectified', False, 'the image is rectified: use camera_info P and no '
          'distortion', fixed=True),
)

PARAMETERS: dict[str, Param] = {p.name: p for p in SCHEMA}
DEFAULTS: dict[str, object] = {p.name: p.default for p in SCHEMA}
READ_ONLY_AFTER_CONFIGURE = frozenset(p.name for p in SCHEMA if p.fixed)
CAMERA_OVERRIDES = tuple(p.name for p in SCHEMA if p.per_camera)


def defaults() -> dict:
    """Every parameter's default value (a fresh dict; arrays are fresh lists)."""
    return {name: list(v) if isinstance(v, list) else v for name, v in DEFAULTS.items()}


def override_of(name: str) -> str:
    """The parameter a ``<camera>.<parameter>`` name overrides, or '' for any other name."""
    camera, dot, key = name.rpartition('.')
    return key if dot and camera and key in CAMERA_OVERRIDES else ''


def matches(param: Param, value) -> bool:
    """Whether ``value`` (e.g. from a YAML file) has exactly ``param``'s type, as a ROS
    parameter of that type needs (``1`` is not a double, ``true`` not an integer)."""
    if param.kind is list:
        return type(value) is list and all(type(v) is param.items for v in value)
    return type(value) is param.kind


def ros_type(param: Param):
    """The rclpy ``Parameter.Type`` of ``param``."""
    from rclpy.parameter import Parameter
    t = Parameter.Type
    if param.kind is list:
        return t.STRING_ARRAY if param.items is str else t.INTEGER_ARRAY
    return {bool: t.BOOL, int: t.INTEGER, float: t.DOUBLE, str: t.STRING}[param.kind]


def descriptor(param: Param, camera: str = ''):
    """The ``ParameterDescriptor`` of ``param`` (of its override for ``camera``)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    if camera:
        return ParameterDescriptor(
            description=f'{param.name} for camera {camera}; unset = the node-wide '
                        f'{param.name}')
    d = ParameterDescriptor(description=param.description, read_only=param.startup)
    if param.lo is not None and param.kind is int:
        d.integer_range = [IntegerRange(from_value=int(param.lo), to_value=int(param.hi),
                                        step=1)]
    elif param.lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(param.lo),
                                                     to_value=float(param.hi), step=0.0)]
    return d


# -- on a node (rclpy) -----------------------------------------------------------------------
def declare(node) -> None:
    """Declare every parameter of ``SCHEMA`` on ``node`` with its descriptor, then the camera
    overrides. Arrays are declared by type (an empty default has none) and get their default
    when the parameter file leaves them out."""
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter
    for param in SCHEMA:
        if param.kind is not list:
            node.declare_parameter(param.name, param.default, descriptor(param))
            continue
        node.declare_parameter(param.name, ros_type(param), descriptor(param))
        try:
            unset = node.get_parameter(param.name).value is None
        except ParameterUninitializedException:   # not in the params file
            unset = True
        if unset:
            node.set_parameters([Parameter(param.name, ros_type(param), list(param.default))])
    declare_camera_overrides(node)


def declare_camera_overrides(node) -> None:
    """Declare ``<camera>.<parameter>`` for every camera in ``cameras`` (by type, unset unless
    the parameter file sets it: unset means the node-wide value)."""
    for camera in node.get_parameter('cameras').value or []:
        for key in CAMERA_OVERRIDES:
            full = f'{camera}.{key}'
            if not node.has_parameter(full):
                node.declare_parameter(full, ros_type(PARAMETERS[key]),
                                       descriptor(PARAMETERS[key], camera))


def values(node, changes: dict | None = None) -> dict:
    """The node's parameter values (camera overrides included, None where unset), with
    ``changes`` applied."""
    from rclpy.exceptions import ParameterUninitializedException
    out = {name: node.get_parameter(name).value for name in PARAMETERS}
    cameras = (changes or {}).get('cameras', out['cameras'])
    for camera in cameras or []:
        for key in CAMERA_OVERRIDES:
            full = f'{camera}.{key}'
            try:
                out[full] = node.get_parameter(full).value if node.has_parameter(full) else None
            except ParameterUninitializedException:
                out[full] = None
    out.update(changes or {})
    return out


def refusal(names, configured: bool) -> str:
    """Why setting the parameters ``names`` is refused now ('' if it is not)."""
    if not configured:
        return ''
    for name in names:
        if name in READ_ONLY_AFTER_CONFIGURE or override_of(name):
            return (f'{name} is read-only while configured; deactivate and clean up the node, '
                    'change it, then configure again')
    return ''
