"""Live mode: publish a bag's images into a running node at (a factor of) real rate over DDS,
collect the node's masks and score accuracy, end-to-end latency and drops."""
from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ..core.metrics import confusion_matrix, scores
from ..core.rosimage import compressed_to_rgb, image_to_labels, image_to_rgb
from ..evaluation.bagio import BagSource, stamp_ns, typestore
from .client import LiveClient, diag_values, stamp_key

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')


def _to_rclpy(msgtype: str, msg):
    if msgtype.endswith('CompressedImage'):
        out = CompressedImage(format=msg.format)
    else:
        out = Image(height=msg.height, width=msg.width, encoding=msg.encoding,
                    is_bigendian=msg.is_bigendian, step=msg.step)
    out.data = np.asarray(msg.data, np.uint8).tobytes()
    out.header.frame_id = msg.header.frame_id
    out.header.stamp.sec, out.header.stamp.nanosec = msg.header.stamp.sec, \
        msg.header.stamp.nanosec
    return out


def replay_live(bag: str, client: LiveClient, executor, image_topic: str, label_topic: str = '',
                num_classes: int = 0, ignore_index: int | None = None, rate_factor: float = 1.0,
                limit: int | None = None, settle: float = 5.0, keep: int = 3) -> dict:
    """Replay ``bag`` through the node that ``client`` is connected to and score the masks.

    Frames are published at their bag timing divided by ``rate_factor``. Labels (same header
    stamp, mono8/16UC1) are kept only for frames not yet scored, so memory stays flat.
    Returns a report dict; ``samples`` holds up to ``keep`` (image, labels, prediction, overlay)
    tuples (overlay is the node's ``~/overlay`` when the client subscribed to it, else None).
    """
    return replay_cameras(bag, {client.camera: (client, image_topic, label_topic)}, executor,
                          num_classes, ignore_index, rate_factor, limit, settle,
                          keep)[client.camera]


def replay_cameras(bag: str, cameras: dict[str, tuple[LiveClient, str, str]], executor,
                   num_classes: int = 0, ignore_index: int | None = None,
                   rate_factor: float = 1.0, limit: int | None = None, settle: float = 5.0,
                   keep: int = 3) -> dict[str, dict]:
    """Replay ``bag`` into several cameras of one node at once and score each camera.

    ``cameras`` maps a camera name to ``(client, image topic in the bag, label topic or '')``;
    several cameras may share a bag topic (one bag replayed onto N cameras). ``limit`` counts
    frames per camera. Returns one ``replay_live`` report per camera.
    """
    ts = typestore()
    state = {cam: {'labels': {}, 'images': {}, 'sent': []} for cam in cameras}
    t0_wall = t0_bag = None
    itypes = {}
    with BagSource(bag) as src:
        for cam, (_, image_topic, label_topic) in cameras.items():
            itypes[cam] = src.require(image_topic, IMAGE_TYPES, 'image')
            if label_topic:
                src.require(label_topic, ('sensor_msgs/msg/Image',), 'label')
        topics = sorted({t for _, it, lt in cameras.values() for t in (it, lt) if t})
        for topic, msgtype, t, raw in src.messages(topics):
            msg = ts.deserialize_cdr(raw, msgtype)
            key = stamp_ns(msg.header)
            label_of = [c for c, (_, _, lt) in cameras.items() if lt == topic]
            if label_of:
                labels = image_to_labels(msg.height, msg.width, msg.encoding,
                                         msg.is_bigendian, msg.step,
                                         np.asarray(msg.data, np.uint8).tobytes())
                for cam in label_of:
                    state[cam]['labels'][key] = labels
            targets = [c for c, (_, it, _) in cameras.items() if it == topic
                       and (limit is None or len(state[c]['sent']) < limit)]
            if not targets:
                continue
            if t0_wall is None:
                t0_wall, t0_bag = time.monotonic(), t
            due = t0_wall + (t - t0_bag) / 1e9 / rate_factor
            first = cameras[targets[0]][0]
            first.spin_until(executor, lambda: time.monotonic() >= due, 60.0)
            for cam in targets:
                client = cameras[cam][0]
                out = _to_rclpy(itypes[cam], msg)
                client.publish(out)
                st = state[cam]
                st['sent'].append(stamp_key(out.header))
                if len(st['images']) < keep:
                    st['images'][st['sent'][-1]] = msg
        read_error = src.read_error
    # Diagnostics from while frames flowed: the node's rates are over its last 5 s, so after
    # the settle wait below they read 0.
    for cam in cameras:
        client = cameras[cam][0]
        state[cam]['during'] = client.diagnostics[-1] if client.diagnostics else None
    any_client = next(iter(cameras.values()))[0]
    any_client.spin_until(executor, lambda: all(
        cameras[c][0].complete(k) for c in cameras for k in state[c]['sent']), settle)
    return {cam: _report(bag, cameras[cam][0], itypes[cam], state[cam], read_error,
                         num_classes, ignore_index, keep) for cam in cameras}


def _report(bag, client: LiveClient, itype: str, st: dict, read_error, num_classes: int,
            ignore_index: int | None, keep: int) -> dict:
    """Score what came back for one camera's sent frames."""
    sent, labels, images = st['sent'], st['labels'], st['images']
    conf = np.zeros((num_classes, num_classes), np.int64) if num_classes else None
    latencies, answered, scored = [], 0, 0
    samples = []
    for k in sent:
        rec = client.received.get(k)
        if rec is None or 'mask' not in rec.msgs:
            continue
        answered += 1
        latencies.append(rec.times['mask'] - client.sent[k])
        m = rec.msgs['mask']
        pred = image_to_labels(m.height, m.width, m.encoding, m.is_bigendian, m.step,
                               bytes(m.data))
        gt = labels.pop(k, None)
        if conf is not None and gt is not None and gt.shape == pred.shape:
            conf += confusion_matrix(pred, gt, num_classes, ignore_index)
            scored += 1
        if k in images and len(samples) < keep:
            im = images[k]
            data = np.asarray(im.data, np.uint8).tobytes()
            rgb = (compressed_to_rgb(im.format, data) if itype.endswith('CompressedImage')
                   else image_to_rgb(im.height, im.width, im.encoding, im.is_bigendian,
                                     im.step, data))
            ov = rec.msgs.get('overlay')
            overlay = (np.frombuffer(bytes(ov.data), np.uint8).reshape(ov.height, ov.width, 3)
                       if ov is not None and ov.encoding == 'rgb8' else None)
            samples.append((rgb, gt, pred, overlay))
    span = (max(client.sent[k] for k in sent) - min(client.sent[k] for k in sent)) \
        if len(sent) > 1 else 0.0
    lat = np.asarray(latencies) * 1e3
    report = {
        'bag': str(bag), 'frames_sent': len(sent), 'frames_answered': answered,
        'frames_dropped': len(sent) - answered, 'frames_scored': scored,
        'input_rate_hz': (len(sent) - 1) / span if span > 0 else 0.0,
        'output_rate_hz': answered / span if span > 0 else 0.0,
        'latency_ms': ({q: float(np.percentile(lat, p)) for q, p in
                        (('p50', 50), ('p90', 90), ('p99', 99), ('max', 100))}
                       if lat.size else {}),
        'per_frame_latency_ms': [round(float(v), 2) for v in lat],
        # Every published frame in bag order: latency in ms, or None if it was dropped.
        'per_frame': [{'frame': i, 'stamp_ns': k,
                       'latency_ms': (round(1e3 * (client.received[k].times['mask']
                                                   - client.sent[k]), 2)
                                      if k in client.received
                                      and 'mask' in client.received[k].times else None)}
                      for i, k in enumerate(sent)],
        'read_error': read_error,
        'samples': samples,
    }
    if conf is not None and scored:
        report['metrics'] = scores(conf)
    if client.diagnostics:
        report['node_diagnostics'] = diag_values(client.diagnostics[-1], client.node_name,
                                                 client.camera)
    if st.get('during') is not None:
        report['node_diagnostics_during_replay'] = diag_values(st['during'], client.node_name,
                                                               client.camera)
    return report
