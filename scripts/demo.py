#!/usr/bin/env python3
"""The one-command demo: a labelled bag -> the segmentation node over real DDS -> scores.

Builds a short bag from CamVid val frames (../shared) or, without them, from synthetic street
frames it draws itself; starts ``segment_node`` in its own process with config/segment.yaml;
publishes the frames at camera rate; prints the backend that ran, per-frame latency, rates,
drops and mIoU against the labels; writes a montage PNG (input / ground truth / mask / overlay,
captioned, with the colour legend), the legend alone (legend.png) and a JSON report.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import sys
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_frames(folder: Path, n: int) -> tuple[Path, Path]:
    """Draw simple street scenes (sky, buildings, trees, road, pavement, a moving car) with
    their CamVid labels: every pixel drawn is labelled with what was drawn there, nothing is
    left unpainted."""
    from pspnet_ros.core.labels import get_label_set
    ids = {name: i for i, name in enumerate(get_label_set('camvid').classes)}
    img_dir, lab_dir = folder / 'images', folder / 'labels'
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    regions = [   # (rows, columns, RGB, class), later ones painted over earlier ones
        (slice(0, 200), slice(0, 480), (150, 170, 200), 'sky'),
        (slice(60, 200), slice(0, 200), (120, 80, 70), 'building'),
        (slice(110, 200), slice(200, 480), (60, 100, 45), 'tree'),
        (slice(200, 360), slice(0, 480), (90, 85, 95), 'road'),
        (slice(200, 240), slice(300, 480), (150, 140, 130), 'pavement')]
    for i in range(n):
        img = np.zeros((360, 480, 3), np.uint8)
        lab = np.zeros((360, 480), np.uint8)
        x = 40 + 8 * i
        for rows, cols, rgb, name in regions + [(slice(230, 290), slice(x, x + 110),
                                                 (40, 40, 160), 'car')]:
            img[rows, cols], lab[rows, cols] = rgb, ids[name]
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        name = f'synthetic_{i:04d}.png'
        cv2.imwrite(str(img_dir / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(lab_dir / name), lab)
    return img_dir, lab_dir


# What to expect with the default config/segment.yaml. The model's accuracy on the demo's own
# frames is in the model card (metrics.demo: the Segmenter offline, as the node answers when no
# frame is dropped), next to its 101-frame val mIoU. Latency: on the 2-vCPU AMD EPYC VM this
# project is developed on, node end-to-end p50 19-21 ms and int8 inference 11-12 ms on an idle
# CPU (2026-12-07, run Y; docs/RESULTS.md, "Node against bare"); the ranges below allow for
# the slower VMs of the same kind seen before (up to about 2x). The synthetic frames are
# flat-coloured cartoons, not street photos: the CamVid model only half-recognises them.
def _card_metrics() -> dict:
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.files import default_card_path
    return ModelCard.load(default_card_path()).metrics


EXPECTED_MIOU_CAMVID_ALL = _card_metrics()['val']['miou']     # all 101 val frames
EXPECTED_P50_MS = (19, 40)


def expectations(synthetic: bool, rep: dict, rate: float) -> str:
    """The expected ranges, and what the run's own numbers say about drops and latency."""
    demo = _card_metrics().get('demo') or {}
    miou = demo.get('synthetic_miou' if synthetic else 'camvid_miou')
    lines = ['', 'expected with config/segment.yaml on an idle 2-core x86 CPU (measured):',
             (f'  mIoU {miou:.3f} (model card, metrics.demo, float model; backend auto may run '
              'the int8 export, within 0.2 points on val) when every frame is answered; '
              if miou is not None else '  (the model card has no metrics.demo figure); ')
             + 'drops change which frames are scored, so a run with drops differs a little '
             + ('(synthetic cartoon frames: the CamVid model only half-recognises them; get '
                'CamVid as README "Data" says for a real score)' if synthetic else
                f'(the first 30 CamVid val frames; all 101 give {EXPECTED_MIOU_CAMVID_ALL})'),
             f'  end-to-end p50 {EXPECTED_P50_MS[0]}-{EXPECTED_P50_MS[1]} ms and no drops at '
             f'{rate:g} Hz (int8 inference takes 11-25 ms per frame there)']
    lat, dropped = rep.get('latency_ms') or {}, rep['frames_dropped']
    if dropped:
        lines.append(f'  this run dropped {dropped} of {rep["frames_sent"]} frames: the node '
                     'keeps only the newest frame, so every frame that arrives while one is '
                     'being segmented replaces the waiting one. Drops mean the CPU was slower '
                     f'than one frame per {1e3 / rate:.0f} ms here: other processes on the '
                     'cores (see `uptime`), or a slower CPU. Nothing queues, so latency stays '
                     'bounded.')
    if lat and lat['p50'] > 2 * EXPECTED_P50_MS[1]:
        lines.append(f'  p50 {lat["p50"]:.0f} ms is well above that: the CPU is shared '
                     '(PyTorch threads wait for busy cores; see `uptime`), or the first frames '
                     'paid for warm-up; compare on an idle machine or lower --rate.')
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'), help='shared data folder')
    p.add_argument('--out', default='demo_out', help='output folder')
    p.add_argument('--frames', type=int, default=30, help='frames to replay')
    p.add_argument('--rate', type=float, default=10.0, help='camera rate in Hz')
    p.add_argument('--params-file', default=str(ROOT / 'config' / 'segment.yaml'))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()

    from pspnet_ros.evaluation.makebag import make_bag
    camvid = Path(args.shared) / 'data' / 'camvid'
    if (camvid / 'val').is_dir():
        images, labels, source = camvid / 'val', camvid / 'valannot', 'CamVid val'
    else:
        images, labels = synthetic_frames(out / 'synthetic', args.frames)
        source = 'synthetic frames (../shared/data/camvid not found)'
    synthetic = not (camvid / 'val').is_dir()
    bag = out / 'demo_bag'
    if bag.exists():
        import shutil
        shutil.rmtree(bag)
    info = make_bag(images, labels, bag, rate=args.rate, limit=args.frames)
    print(f'bag: {info["frames"]} frames of {source} at {args.rate:g} Hz -> {bag}')

    domain = random.randint(120, 200)
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from pspnet_ros.core import LabelSet
    from pspnet_ros.live import diag_values, LiveClient, node_failure, start_node, stop_node
    from pspnet_ros.live.transport import use_large_frames_profile
    from pspnet_ros.live.replay import replay_live

    log = out / 'node.log'
    # The large-frames Fast DDS profile in both processes, as segment.launch.py sets it.
    use_large_frames_profile()
    proc = start_node(args.params_file, domain, log_path=log)
    rclpy.init()
    client = LiveClient(image_topic='image', outputs=('mask', 'color_mask', 'overlay'))
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    try:
        if not client.wait_for_node(ex, 120, lambda: node_failure(proc, log)):
            why = node_failure(proc, log) or 'it did not subscribe within 120 s'
            print(f'error: the node failed: {why} (its log: {log})', file=sys.stderr)
            return 1
        client.spin_until(ex, lambda: bool(client.diagnostics), 5.0)
        ran = diag_values(client.diagnostics[-1]) if client.diagnostics else {}
        print(f'node up in {time.monotonic() - t_start:.1f} s (domain {domain}), backend '
              f'{ran.get("backend", "unknown")} on {ran.get("device", "?")}'
              + (f' ({ran["backend_note"]})' if ran.get('backend_note') else '')
              + '; replaying...')
        # The node's own class list (a custom set is embedded in its card, not a name).
        li = client.label_info
        ls = LabelSet(li['label_set'], tuple(c['name'] for c in li['classes']),
                      tuple(tuple(c['color']) for c in li['classes']), li['ignore_index'])
        rep = replay_live(str(bag), client, ex, info['image_topic'], info['label_topic'],
                          num_classes=ls.num_classes, ignore_index=ls.ignore_index)
        client.spin_until(ex, lambda: False, 1.2)     # one more diagnostics message
        if client.diagnostics:
            rep['node_diagnostics'] = diag_values(client.diagnostics[-1])
    finally:
        code = stop_node(proc)
        ex.remove_node(client)
        client.destroy_node()
        rclpy.try_shutdown()

    print('\nbag frame  end-to-end latency ms (publish -> mask received)')
    for f in rep['per_frame']:
        v = f['latency_ms']
        print(f'{f["frame"]:9d}  ' + (f'{v:10.1f}' if v is not None else '   dropped'))
    lat = rep['latency_ms']
    sent, answered, dropped = rep['frames_sent'], rep['frames_answered'], rep['frames_dropped']
    print(f'\nsent {sent}, answered {answered}, dropped {dropped} (newest frame wins)')
    print(f'input {rep["input_rate_hz"]:.1f} Hz, output {rep["output_rate_hz"]:.1f} Hz')
    if lat:
        print(f'end-to-end latency seen by the publisher: p50 {lat["p50"]:.0f} ms, p90 '
              f'{lat["p90"]:.0f} ms, max {lat["max"]:.0f} ms')
    diag = rep.get('node_diagnostics', {})
    during = rep.get('node_diagnostics_during_replay', diag)
    if diag:
        print(f'node: backend {diag.get("backend")} on {diag.get("device")}, input '
              f'{during.get("input_rate_hz")} Hz, output {during.get("output_rate_hz")} Hz '
              f'(its last 5 s while frames flowed), inference p50 '
              f'{diag.get("latency.inference.p50_ms")} ms, receive-to-publish p50 '
              f'{diag.get("latency.end_to_end.p50_ms")} ms / p99 '
              f'{diag.get("latency.end_to_end.p99_ms")} ms, dropped '
              f'{diag.get("frames.dropped")} of {diag.get("frames.received")} received')
    m = rep.get('metrics')
    if m:
        print(f'mIoU {m["miou"]:.3f}, pixel accuracy {m["pixel_accuracy"]:.3f} over '
              f'{rep["frames_scored"]} answered frames')
        for name, iou in zip(ls.classes, m['iou']):
            print(f'  {name:12s} {"-" if iou != iou else f"{iou:.3f}"}')
    print(expectations(synthetic, rep, args.rate))
    from pspnet_ros.evaluation.figures import legend_image, montage
    montage(rep.pop('samples'), ls.palette_array(), out / 'montage.png',
            captions=('camera frame', 'ground truth', 'node ~/mask', 'node ~/overlay'),
            class_names=ls.classes, ignore_index=ls.ignore_index)
    cv2.imwrite(str(out / 'legend.png'), cv2.cvtColor(
        legend_image(ls.classes, ls.palette_array(), ignore_index=ls.ignore_index),
        cv2.COLOR_RGB2BGR))
    from pspnet_ros.evaluation.report import clean
    rep['source'] = source
    # clean(): NaN (a class in neither ground truth nor prediction) -> null, valid JSON.
    (out / 'demo_report.json').write_text(json.dumps(clean(rep), indent=1, allow_nan=False)
                                          + '\n')
    print(f'\nwrote {out / "montage.png"}, {out / "legend.png"} and {out / "demo_report.json"}; '
          f'node exit code {code}; total {time.monotonic() - t_start:.1f} s')
    return 0 if rep['frames_answered'] > 0 and code == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
