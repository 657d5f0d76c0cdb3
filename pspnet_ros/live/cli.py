"""``pspnet-ros live``: replay a bag through a running (or freshly started) node and score it."""
from __future__ import annotations

import json
import os
from pathlib import Path
import random
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'live', help='publish a bag into segment_node over DDS at real rate; score what comes '
        'back (accuracy, end-to-end latency, drops)')
    p.add_argument('bag', help='bag folder or .db3/.mcap file (e.g. from make-bag)')
    p.add_argument('--image-topic', default='/camera/image_raw', help='image topic in the bag')
    p.add_argument('--label-topic', default='', help='ground-truth label topic in the bag')
    p.add_argument('--rate-factor', type=float, default=1.0,
                   help='playback speed (2 = twice real rate)')
    p.add_argument('--limit', type=int, default=None, help='at most this many frames')
    p.add_argument('--node', default='/pspnet_segmentation',
                   help='fully qualified name of the node to talk to')
    p.add_argument('--publish-topic', default='image',
                   help='topic the node listens on (after remapping)')
    p.add_argument('--start-node', action='store_true',
                   help='start segment_node in its own process (in a private DDS domain)')
    p.add_argument('--params-file', default='', help='parameters for --start-node')
    p.add_argument('--out', default='live_out', help='report folder')
    p.set_defaults(func=cmd_live)


def cmd_live(args) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from ..core import get_label_set
    from ..evaluation.bagio import BagError, BagSource
    from .client import LiveClient, default_params_file, start_node, stop_node
    from .replay import IMAGE_TYPES, replay_live
    from .transport import use_large_frames_profile
    try:      # check the bag before starting anything; its image type picks the publisher
        with BagSource(args.bag) as src:
            image_type = src.require(args.image_topic, IMAGE_TYPES, 'image')
    except BagError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc = None
    if args.start_node:
        domain = random.randint(120, 200)
        os.environ['ROS_DOMAIN_ID'] = str(domain)
        proc = start_node(args.params_file or default_params_file(), domain,
                          log_path=out / 'node.log')
    # Frames of camera size need the large-frames Fast DDS profile here and in the node
    # (start_node gives it one; a node started elsewhere needs it too: docs/ROS_INTERFACE.md).
    use_large_frames_profile()
    rclpy.init()
    # CompressedImage frames go to '<topic>/compressed' (the node needs
    # input_transport: compressed for them).
    client = LiveClient(node_ns=args.node, image_topic=args.publish_topic,
                        compressed=image_type.endswith('CompressedImage'), outputs=('mask',))
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    try:
        if not client.wait_for_node(ex, 120):
            print(f'error: no node at {args.node} subscribed to {args.publish_topic} within '
                  '120 s (start one, or pass --start-node)', file=sys.stderr)
            return 2
        client.spin_until(ex, lambda: False, 1.0)
        ls = get_label_set(client.label_info['label_set'])
        try:
            rep = replay_live(args.bag, client, ex, args.image_topic, args.label_topic,
                              num_classes=ls.num_classes, ignore_index=ls.ignore_index,
                              rate_factor=args.rate_factor, limit=args.limit)
        except BagError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
    finally:
        if proc is not None:
            stop_node(proc)
        ex.remove_node(client)
        client.destroy_node()
        rclpy.try_shutdown()
    rep.pop('samples', None)      # images: not for JSON
    (out / 'live_report.json').write_text(json.dumps(rep, indent=1, default=float) + '\n')
    lat = rep['latency_ms']
    print(f'sent {rep["frames_sent"]}, answered {rep["frames_answered"]}, dropped '
          f'{rep["frames_dropped"]}; input {rep["input_rate_hz"]:.1f} Hz, output '
          f'{rep["output_rate_hz"]:.1f} Hz')
    if lat:
        print(f'end-to-end latency p50 {lat["p50"]:.0f} ms, p99 {lat["p99"]:.0f} ms')
    if 'metrics' in rep:
        print(f'mIoU {rep["metrics"]["miou"]:.3f} over {rep["frames_scored"]} frames')
    print(f'wrote {out / "live_report.json"}')
    return 0
