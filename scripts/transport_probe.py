#!/usr/bin/env python3
"""Camera-like image traffic between two processes: a paced rgb8 publisher or a counting
subscriber (``python scripts/transport_probe.py pub|sub ...``), best effort as cameras send.

Run by scripts/bench_transport.py and the transport tests; each process loads the Fast DDS
profile named in its environment (``pspnet_ros.live.transport.profile_env``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.sizes import parse_size  # noqa: E402


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
    return {'sent': count, 'matched_subscribers': matched, 'size': [h, w], 'rate_hz': rate,
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
    p.add_argument('--size', default='720x1280', help='frame HEIGHTxWIDTH (pub)')
    p.add_argument('--rate', type=float, default=10.0, help='frames per second (pub)')
    p.add_argument('--count', type=int, default=40, help='frames to send (pub) or expect (sub)')
    p.add_argument('--duration', type=float, default=30.0, help='seconds to listen (sub)')
    args = p.parse_args(argv)
    if args.role == 'pub':
        out = publish(args.topic, parse_size(args.size, 'frame size'), args.rate, args.count)
    else:
        out = subscribe(args.topic, args.duration, args.count)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
