"""Drive a running segmentation node over real DDS: publish frames, collect what comes back.

Used by the demo, the live bag evaluation, the node benchmark and the integration tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from diagnostic_msgs.msg import DiagnosticArray

from ..core import rosimage
from ..node.convert import rgb_to_msg

NODE_NAME = 'pspnet_segmentation'


def stamp_key(header) -> int:
    """Nanoseconds of a header stamp, used to pair outputs with inputs."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def start_node(params_file: str | os.PathLike | None = None, domain_id: int | None = None,
               ros_args: list[str] | None = None, log_path: str | os.PathLike | None = None,
               env: dict | None = None,
               fastdds_profile: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start ``segment_node`` in its own process (``python -m pspnet_ros.node``).

    The node gets a Fast DDS profile as ``segment.launch.py`` gives it: ``fastdds_profile``,
    else the one already named in the environment, else the shipped large-frames profile;
    ``''`` starts it without one. The process publishing the frames needs the same profile
    (``transport.use_large_frames_profile()`` before ``rclpy.init()``). Without ``env`` it
    inherits this process's environment less the thread settings this process made for itself
    (``core.threads.child_env``): the node chooses its own.
    """
    from ..core.threads import child_env
    from .transport import PROFILE_ENV, profile_env
    cmd = [sys.executable, '-m', 'pspnet_ros.node', '--ros-args']
    if params_file:
        cmd += ['--params-file', str(params_file)]
    cmd += list(ros_args or [])
    base = child_env() if env is None else dict(env)
    if fastdds_profile is None:
        fastdds_profile = base.get(PROFILE_ENV) or None
    penv = profile_env(base, fastdds_profile)
    if domain_id is not None:
        penv['ROS_DOMAIN_ID'] = str(domain_id)
    penv.setdefault('PYTHONUNBUFFERED', '1')
    out = open(log_path, 'w') if log_path else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=penv)


def stop_node(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """Ask the node to stop with SIGINT (like Ctrl-C) and return its exit code."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def node_failure(proc: subprocess.Popen, log: Path) -> str:
    """Why a node this command started failed, in one line ('' while it looks healthy): its
    exit, or the first ERROR its log shows (e.g. ``configure failed: ...``)."""
    error = ''
    try:
        for line in log.read_text(errors='replace').splitlines():
            if '[ERROR]' in line or 'configure failed' in line:
                error = line.split(']: ', 1)[-1].strip()
                break
    except OSError:
        pass
    if len(error) > 300:
        error = error[:297] + '...'
    code = proc.poll()
    if code is not None:
        return f'it exited with code {code}' + (f': {error}' if error else '')
    return error


@dataclass
class Received:
    """Outputs collected for one input stamp, with the receive time of each."""

    msgs: dict[str, object] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)


class LiveClient(Node):
    """A camera-like publisher plus subscribers on all of the node's outputs.

    With ``camera`` set it plays that camera of a multi-camera node: it publishes on
    ``<camera>/image`` (unless ``image_topic`` says otherwise) and listens on
    ``<node_ns>/<camera>/mask`` ...; ``label_info`` and ``/diagnostics`` are the node's.
    """

    def __init__(self, node_ns: str = f'/{NODE_NAME}', image_topic: str = 'image',
                 compressed: bool = False, reliable: bool = False,
                 outputs: tuple[str, ...] = ('mask', 'color_mask', 'overlay', 'occupancy'),
                 name: str = 'pspnet_live_client', camera: str = '', context=None):
        super().__init__(f'{name}_{camera}' if camera and name == 'pspnet_live_client'
                         else name, context=context)
        if camera and image_topic == 'image':
            image_topic = f'{camera}/image'
        out_ns = f'{node_ns}/{camera}' if camera else node_ns
        self.camera = camera
        pub_qos = qos_profile_sensor_data if not reliable else QoSProfile(
            depth=5, reliability=ReliabilityPolicy.RELIABLE)
        if compressed:
            self.pub = self.create_publisher(CompressedImage, f'{image_topic}/compressed',
                                             pub_qos)
        else:
            self.pub = self.create_publisher(Image, image_topic, pub_qos)
        self.received: dict[int, Received] = {}
        self.sent: dict[int, float] = {}
        self.label_info: dict | None = None
        self.diagnostics: list[DiagnosticArray] = []
        self._lock = threading.Lock()
        # Deep reader history: a busy client must not lose outputs on its own side.
        out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        types = {'mask': Image, 'color_mask': Image, 'overlay': Image, 'confidence': Image,
                 'occupancy': PointCloud2}
        self._subs = [self.create_subscription(types[o], f'{out_ns}/{o}',
                                               self._collector(o), out_qos) for o in outputs]
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs.append(self.create_subscription(String, f'{node_ns}/label_info',
                                                   self._on_label_info, latched))
        self._subs.append(self.create_subscription(DiagnosticArray, '/diagnostics',
                                                   self._on_diag, 10))
        self.outputs = outputs
        self.node_name = node_ns.rstrip('/').rsplit('/', 1)[-1]

    def _collector(self, name: str):
        def cb(msg):
            now = time.monotonic()
            with self._lock:
                rec = self.received.setdefault(stamp_key(msg.header), Received())
                rec.msgs[name] = msg
                rec.times[name] = now
        return cb

    def _on_label_info(self, msg: String) -> None:
        import json
        self.label_info = json.loads(msg.data)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        if any(f'/{self.node_name}:' in s.name for s in msg.status):
            self.diagnostics.append(msg)

    def make_image(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = 'camera',
                   compressed: bool = False):
        if compressed:
            fmt, data = rosimage.rgb_to_compressed(rgb, 'jpeg')
            msg = CompressedImage(format=fmt)
            msg.data = data
        else:
            msg = rgb_to_msg(rgb, Header())
        msg.header.frame_id = frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return msg

    def publish(self, msg) -> None:
        with self._lock:
            self.sent[stamp_key(msg.header)] = time.monotonic()
        self.pub.publish(msg)

    def wait_for_node(self, executor, timeout: float = 60.0, failed=None) -> bool:
        """Spin until the node subscribes to our image topic and label_info arrived. With
        ``failed`` (a callable giving a reason, or '' while all is well, checked about every
        0.5 s) stop early, False, as soon as it gives one."""
        end = time.monotonic() + timeout
        check = 0.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
            if self.pub.get_subscription_count() > 0 and self.label_info is not None:
                return True
            if failed is not None and time.monotonic() >= check:
                check = time.monotonic() + 0.5
                if failed():
                    return False
        return False

    def complete(self, key: int) -> bool:
        rec = self.received.get(key)
        return rec is not None and all(o in rec.msgs for o in self.outputs)

    def spin_until(self, executor, predicate, timeout: float) -> bool:
        return spin_until(executor, predicate, timeout)


def spin_until(executor, predicate, timeout: float, step: float = 0.02) -> bool:
    """Spin ``executor`` until ``predicate()`` holds (True) or ``timeout`` seconds pass (its
    last value)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return predicate()


def diag_values(arr: DiagnosticArray, node_name: str = NODE_NAME,
                camera: str = '') -> dict[str, str]:
    """The key/value pairs of the node's status in a DiagnosticArray (with ``camera``: that
    camera's status of a multi-camera node)."""
    suffix = f': camera {camera}' if camera else ': segmentation'
    for s in arr.status:
        if f'/{node_name}:' in s.name and s.name.endswith(suffix):
            return {kv.key: kv.value for kv in s.values}
    return {}


def default_params_file() -> Path:
    from ..core.files import shipped_file
    return shipped_file('config', 'segment.yaml')
