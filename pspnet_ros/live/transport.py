"""Camera-like image traffic between processes: the Fast DDS large-frames profile and a paced
rgb8 publisher / counting subscriber (``python -m pspnet_ros.live.transport pub|sub ...``).

Used by the transport tests, ``scripts/bench_transport.py`` and ``scripts/soak.py``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import time

PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
PROFILE_NAME = 'fastdds_large_frames.xml'


def large_frames_profile() -> Path:
    """The shipped Fast DDS profile for camera-sized frames (source tree or installed share)."""
    from ..core.files import shipped_file
    return shipped_file('config', PROFILE_NAME)


def profile_env(env: dict | None = None, profile: str | os.PathLike | None = None) -> dict:
    """A copy of ``env`` (default ``os.environ``) that loads ``profile`` (default: the shipped
    large-frames profile); ``profile=''`` removes any profile instead."""
    out = dict(os.environ if env is None else env)
    if profile == '':
        out.pop(PROFILE_ENV, None)
    else:
        out[PROFILE_ENV] = str(profile or large_frames_profile())
    return out


def use_large_frames_profile() -> str:
    """Load the large-frames profile in this process unless one is set already. Call it before
    ``rclpy.init()``: Fast DDS reads the variable when the participant is created."""
    return os.environ.setdefault(PROFILE_ENV, str(large_frames_profile()))


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (camera convention, e.g. 1280x720) -> (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'frame size must be WIDTHxHEIGHT like 1280x720, got {text!r}') from None
    return h, w


def publish(topic: str, size: tuple[int, int], rate: float, count: int,
            wait_subscribers: float = 30.0, settle: float = 1.0) -> dict:
    """Publish ``count`` rgb8 frames of ``size`` (h, w) at ``rate`` Hz, best effort (sensor
    data QoS), stamped with the wall clock at publish time; returns what was sent."""
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('pspnet_transport_pub')
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
    h, w = size
    end = time.monotonic() + wait_subscribers
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    matched = pub.get_subscription_count()
    time.sleep(settle)              # let discovery finish both ways
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), np.uint8).tobytes() for _ in range(4)]
    msg = Image(height=h, width=w, encoding='rgb8', step=w * 3)
    msg.header.frame_id = 'camera'
    period = 1.0 / rate
    t0 = time.monotonic()
    for i in range(count):
        target = t0 + i * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg.data = frames[i % len(frames)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        pub.publish(msg)
    late = time.monotonic() - (t0 + (count - 1) * period)
    time.sleep(0.5)                 # let the last frames leave before the participant goes
    node.destroy_node()
    rclpy.try_shutdown()
    return {'sent': count, 'matched_subscribers': matched, 'size': [w, h], 'rate_hz': rate,
            'finished_late_s': round(late, 3)}


def subscribe(topic: str, duration: float, expect: int = 0) -> dict:
    """Count best-effort frames on ``topic`` for ``duration`` s (or until ``expect`` arrived),
    with the latency from each header stamp (wall clock) to its arrival."""
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('pspnet_transport_sub')
    latencies: list[float] = []
    lost = [0]

    def on_image(msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((time.time_ns() - stamp) / 1e6)

    def on_lost(event) -> None:
        lost[0] = int(event.total_count)

    node.create_subscription(Image, topic, on_image, qos_profile_sensor_data,
                             event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))
    print('ready', flush=True)
    end = time.monotonic() + duration
    while time.monotonic() < end and not (expect and len(latencies) >= expect):
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    return {'received': len(latencies), 'lost_reported': lost[0],
            'latency_ms': latencies}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('role', choices=('pub', 'sub'))
    p.add_argument('--topic', default='image')
    p.add_argument('--size', default='1280x720', help='WIDTHxHEIGHT (pub)')
    p.add_argument('--rate', type=float, default=10.0, help='frames per second (pub)')
    p.add_argument('--count', type=int, default=40, help='frames to send (pub) or expect (sub)')
    p.add_argument('--duration', type=float, default=30.0, help='seconds to listen (sub)')
    args = p.parse_args(argv)
    if args.role == 'pub':
        out = publish(args.topic, parse_size(args.size), args.rate, args.count)
    else:
        out = subscribe(args.topic, args.duration, args.count)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
