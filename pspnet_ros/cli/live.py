"""``pspnet-ros live``: replay a bag through a running (or freshly started) node and score
it."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'live', help='publish a bag into segment_node over DDS at real rate; score what comes '
        'back (accuracy, end-to-end latency, drops)',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('bag', help='bag folder or .db3/.mcap file (e.g. from make-bag)')
    p.add_argument('--image-topic', action='append', default=None,
                   help='image topic in the bag (default /camera/image_raw); with --cameras '
                        'give it once per camera, or once to replay one topic onto every '
                        'camera')
    p.add_argument('--label-topic', action='append', default=None,
                   help='ground-truth label topic in the bag (once, or once per camera)')
    p.add_argument('--cameras', default='',
                   help='comma-separated camera names of a multi-camera node (its cameras '
                        'parameter): frames go to <name>/image and each camera is reported')
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
    p.add_argument('--wait', type=float, default=120.0,
                   help='seconds to wait for the node to come up and subscribe')
    p.set_defaults(func=cmd_live)


def _camera_topics(args) -> dict[str, tuple[str, str]]:
    """Camera name -> (image topic, label topic) from the command line ('' for the single
    camera of a node without cameras)."""
    names = [n.strip() for n in args.cameras.split(',') if n.strip()] or ['']
    images = args.image_topic or ['/camera/image_raw']
    labels = args.label_topic or ['']
    for what, given in (('--image-topic', images), ('--label-topic', labels)):
        if len(given) not in (1, len(names)):
            raise ValueError(f'{what} given {len(given)} times for {len(names)} cameras; '
                             'give it once (the same topic for every camera) or once per '
                             'camera')
    return {n: (images[i if len(images) > 1 else 0], labels[i if len(labels) > 1 else 0])
            for i, n in enumerate(names)}


def cmd_live(args) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from ..evaluation.bagio import BagError, BagSource
    from ..live.client import diag_values, LiveClient, default_params_file, node_failure, \
        start_node, stop_node
    from ..live.replay import IMAGE_TYPES, replay_cameras
    from ..live.transport import use_large_frames_profile
    if args.rate_factor <= 0:
        raise ValueError(f'--rate-factor must be > 0, got {args.rate_factor}')
    if args.limit is not None and args.limit < 1:
        raise ValueError(f'--limit must be >= 1, got {args.limit}')
    if args.wait <= 0:
        raise ValueError(f'--wait must be > 0 seconds, got {args.wait}')
    try:      # check the bag before starting anything; its image type picks the publisher
        cameras = _camera_topics(args)
        with BagSource(args.bag) as src:
            image_types = {cam: src.require(topic, IMAGE_TYPES, 'image')
                           for cam, (topic, _) in cameras.items()}
    except (BagError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    multi = list(cameras) != ['']
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc = None
    if args.start_node:
        domain = random.randint(120, 200)
        os.environ['ROS_DOMAIN_ID'] = str(domain)
        ros_args = ['-p', f'cameras:=[{",".join(cameras)}]'] if multi else []
        proc = start_node(args.params_file or default_params_file(), domain, ros_args,
                          log_path=out / 'node.log')
    # Frames of camera size need the large-frames Fast DDS profile here and in the node
    # (start_node gives it one; a node started elsewhere needs it too: docs/ROS_INTERFACE.md).
    use_large_frames_profile()
    # A context of its own: the command also runs inside processes (tests, notebooks) that
    # may hold rclpy's default context already.
    context = rclpy.Context()
    rclpy.init(context=context)
    # CompressedImage frames go to '<topic>/compressed' (the node needs
    # input_transport: compressed for them).
    clients = {cam: LiveClient(node_ns=args.node, camera=cam,
                               image_topic=f'{cam}/image' if cam else args.publish_topic,
                               compressed=image_types[cam].endswith('CompressedImage'),
                               outputs=('mask',), context=context) for cam in cameras}
    ex = SingleThreadedExecutor(context=context)
    for client in clients.values():
        ex.add_node(client)
    domain = os.environ.get('ROS_DOMAIN_ID', '0')
    print(f'waiting up to {args.wait:g} s for {args.node} to subscribe to '
          + ', '.join(c.pub.topic_name for c in clients.values())
          + f' and publish ~/label_info (ROS_DOMAIN_ID {domain}'
          + (', starting it' if proc is not None else '') + '; Ctrl-C to stop)...',
          file=sys.stderr, flush=True)
    failed = (lambda: node_failure(proc, out / 'node.log')) if proc is not None else None
    try:
        for cam, client in clients.items():
            if not client.wait_for_node(ex, args.wait, failed):
                why = failed() if failed is not None else ''
                if why:
                    print(f'error: the node started here failed: {why} (its log: '
                          f'{out / "node.log"})', file=sys.stderr)
                elif proc is not None:
                    print(f'error: the node started here did not subscribe to '
                          f'{client.pub.topic_name} within {args.wait:g} s (its log: '
                          f'{out / "node.log"})', file=sys.stderr)
                else:
                    print(f'error: no node at {args.node} subscribed to '
                          f'{client.pub.topic_name} within {args.wait:g} s in ROS_DOMAIN_ID '
                          f'{domain} (start one, or pass --start-node)', file=sys.stderr)
                return 2
        # The backend that actually runs (after any fallback) is in the node's diagnostics.
        client.spin_until(ex, lambda: bool(client.diagnostics), 5.0)
        ran = diag_values(client.diagnostics[-1], client.node_name) \
            if client.diagnostics else {}
        backend = ran.get('backend', '')
        if ran.get('backend_note'):
            print(f'warning: {ran["backend_note"]}', file=sys.stderr)
        print(f'node up (backend {backend or "unknown: no diagnostics yet"}'
              + (f' on {ran["device"]}' if ran.get('device') else '')
              + f'); publishing {args.bag} at {args.rate_factor:g}x real rate...',
              file=sys.stderr, flush=True)
        # The node's own class list (a custom set is embedded in its card, not a name).
        n_classes = len(client.label_info['classes'])
        ignore = client.label_info['ignore_index']
        try:
            reps = replay_cameras(args.bag, {c: (clients[c], *cameras[c]) for c in cameras},
                                  ex, num_classes=n_classes, ignore_index=ignore,
                                  rate_factor=args.rate_factor, limit=args.limit)
        except BagError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        # Ctrl-C: rclpy's signal handler shuts the context down mid-spin.
        print('interrupted', file=sys.stderr)
        return 130
    finally:
        if proc is not None:
            stop_node(proc)
        for client in clients.values():
            ex.remove_node(client)
            client.destroy_node()
        context.try_shutdown()
    for rep in reps.values():
        rep.pop('samples', None)      # images: not for JSON
    doc = reps[''] if not multi else {'cameras': reps, **_spread(reps)}
    doc['backend'] = backend
    (out / 'live_report.json').write_text(json.dumps(doc, indent=1, default=float) + '\n')
    print(f'backend {backend or "unknown"}')
    for cam, rep in reps.items():
        _print_report(rep, f'{cam}: ' if multi else '')
    if multi:
        print(f'all cameras: output {doc["aggregate_output_rate_hz"]:.1f} Hz, per-camera rate '
              f'spread {doc["output_rate_spread"] * 100:.1f} % of the mean')
    print(f'wrote {out / "live_report.json"}')
    return 0


def _spread(reps: dict[str, dict]) -> dict:
    rates = [r['output_rate_hz'] for r in reps.values()]
    mean = sum(rates) / len(rates)
    return {'aggregate_output_rate_hz': sum(rates),
            'output_rate_spread': max(abs(r - mean) for r in rates) / mean if mean else 0.0}


def _print_report(rep: dict, prefix: str) -> None:
    lat = rep['latency_ms']
    print(f'{prefix}sent {rep["frames_sent"]}, answered {rep["frames_answered"]}, dropped '
          f'{rep["frames_dropped"]}; input {rep["input_rate_hz"]:.1f} Hz, output '
          f'{rep["output_rate_hz"]:.1f} Hz')
    if lat:
        print(f'{prefix}end-to-end latency p50 {lat["p50"]:.0f} ms, p99 {lat["p99"]:.0f} ms')
    if 'metrics' in rep:
        print(f'{prefix}mIoU {rep["metrics"]["miou"]:.3f} over {rep["frames_scored"]} frames')
