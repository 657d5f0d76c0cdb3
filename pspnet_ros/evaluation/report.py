"""Evaluation report: assembly from the evaluation state, JSON, Markdown summary, matplotlib
plots, a sample montage and the exit status."""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Sequence, TYPE_CHECKING

import numpy as np

from ..core.metrics import scores

if TYPE_CHECKING:
    from .evaluator import EvalConfig
    from .state import EvalState

MODEL_STAGES = ('convert', 'preprocess', 'inference', 'postprocess', 'total')
STAGES = ('decode', *MODEL_STAGES, 'evaluator')
SAMPLE_WIDTH = 320
# Bag entry fields that are problems (error) or warnings, in the order they are printed.
BAG_PROBLEMS = ('error', 'recovered', 'read_error', 'count_mismatch')


def bag_summary(info: dict, class_names: Sequence[str], worst: int = 3) -> dict:
    """A bag's report entry: ``info`` without its confusion matrix ``_conf``, plus its mIoU
    and the ``worst`` classes (lowest IoU among those in the bag's ground truth)."""
    out = {k: v for k, v in info.items() if k != '_conf'}
    conf = info['_conf']
    out['miou'], out['worst_classes'] = None, []
    if info['frames_scored'] and conf.sum():
        s = scores(conf)
        present = np.flatnonzero(conf.sum(1) > 0)
        out['miou'] = s['miou']
        order = sorted(present.tolist(), key=lambda i: (s['iou'][i], i))[:worst]
        out['worst_classes'] = [{'class': class_names[i], 'iou': s['iou'][i]} for i in order]
    return out


def build_report(cfg: 'EvalConfig', st: 'EvalState', bags: list[dict], wall: float,
                 described: dict, written: int = 0, workers: int = 1) -> dict:
    """The report (``report.json``) of a run whose frames are all in ``st``. ``workers`` > 1
    (parallel runs) only changes ``evaluator_frames_per_s``: model time is spread over them.
    ``metrics`` is None when no ground-truth pixel was scored."""
    class_names = described['class_names']
    model_s = float(np.sum(st.timings.get('total', [])))
    metrics = None
    if st.scored and st.conf.sum():
        s = scores(st.conf)
        gt = st.conf.sum(1)
        metrics = {'miou': s['miou'], 'iou': dict(zip(class_names, s['iou'])),
                   'pixel_accuracy': s['pixel_accuracy'],
                   'mean_accuracy': s['mean_accuracy'], 'fwiou': s['fwiou'],
                   'pixels': s['pixels'], 'classes_present': int((gt > 0).sum()),
                   'gt_pixels': dict(zip(class_names, gt.tolist()))}
    done = st.read
    model_wall = model_s / max(workers, 1)
    return {
        'tool': 'pspnet-ros eval',
        'created': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'mode': 'predictions' if cfg.pred_topic else 'model',
        'ground_truth': described['ground_truth'],
        'topics': {'frames': cfg.pred_topic or cfg.image_topic, 'labels': cfg.label_topic},
        'stamp_tolerance_s': cfg.stamp_tolerance,
        'bags': [bag_summary(b, class_names) for b in bags],
        'model': described['model'],
        'class_names': list(class_names),
        'ignore_index': described['ignore_index'],
        'frames': {'read': st.read, 'processed': st.processed, 'scored': st.scored,
                   'skipped': sum(st.skipped.values()),
                   'skipped_by_reason': dict(sorted(st.skipped.items())),
                   'skip_examples': st.examples,
                   'labels_unmatched': st.labels_unmatched, 'labels_bad': st.labels_bad,
                   'labels_outside_class_set': {
                       'pixels': st.label_pixels_outside, 'frames': st.frames_labels_outside,
                       'ids': sorted(int(i) for i in st.outside_ids)},
                   'written_to_bag': written},
        'metrics': metrics,
        'confusion': st.conf.tolist(),
        'latency_ms': {k: percentiles(st.timings.get(k, [])) for k in STAGES},
        'throughput': {
            'wall_s': wall,
            'frames_per_s': done / wall if wall > 0 else None,
            'evaluator_frames_per_s': done / (wall - model_wall) if wall > model_wall else None,
            'model_frames_per_s': len(st.timings.get('total', [])) / model_s
            if model_s else None},
        'write_bag': cfg.write_bag or None,
    }


def write_outputs(report: dict, out: Path, timings: dict[str, list[float]], samples: list,
                  palette: np.ndarray) -> None:
    """report.json, summary.md, plots and the sample montage in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOT_FILES:      # a previous run's plots must not pass for this run's
        (out / name).unlink(missing_ok=True)
    written = plot_all(clean(report), timings, out)
    if samples:
        from .figures import montage
        montage(samples, palette, out / 'samples.png', SAMPLE_WIDTH,
                class_names=report['class_names'], ignore_index=report['ignore_index'])
        written.append('samples.png')
    # report.json and summary.md list the files this run wrote (the returned report does
    # not change: the same run gives the same report however it is sharded).
    on_disk = dict(report, files=['report.json', 'summary.md', *written])
    write_json(on_disk, out / 'report.json')
    (out / 'summary.md').write_text(markdown(clean(on_disk)))


def failure(report: dict) -> str:
    """Why a run gave no result ('' when it gave one): nothing read, no frame decoded, or
    ground truth given but no pixel of it could be scored."""
    fr = report['frames']
    if all(b['error'] for b in report['bags']) or not fr['read']:
        return 'no frames were read from the given bags'
    if not fr['processed']:
        kind = 'prediction' if report['mode'] == 'predictions' else 'image'
        return (f'none of the {fr["read"]} frames read could be decoded as an {kind} '
                f'({_reasons(fr)})')
    if report['ground_truth'] and not report['metrics']:
        out = fr.get('labels_outside_class_set') or {}
        if out.get('pixels'):
            n = len(report['class_names'])
            return (f'nothing could be scored: every ground-truth pixel compared was outside '
                    f'the class set [0, {n}) and not the ignore index '
                    f'{report["ignore_index"]} (label ids seen: '
                    f'{", ".join(map(str, out["ids"]))}); pass --ignore-index or check that '
                    'the labels use this label set')
        why = _reasons(fr) if fr['skipped'] else 'every label pixel was the ignore index'
        return f'nothing could be scored against the ground truth ({why})'
    return ''


def _reasons(fr: dict) -> str:
    return ', '.join(f'{k}: {v}' for k, v in fr['skipped_by_reason'].items()) or 'no reason'


def exit_code(report: dict) -> int:
    """0 when every bag was read completely, 1 when some bag (or a shard of a parallel run)
    failed, was cut short or held fewer frames than its index declares, but results were
    given, 2 when there is no result (``failure``)."""
    if failure(report):
        return 2
    if any(b['error'] or b['read_error'] or b['recovered'] or b.get('count_mismatch')
           for b in report['bags']) or (report.get('fleet') or {}).get('failed_shards'):
        return 1
    return 0


def percentiles(values: Sequence[float]) -> dict | None:
    """p50/p90/p99/mean/max in milliseconds, or None without values."""
    if not len(values):
        return None
    a = np.asarray(values, np.float64) * 1e3
    return {'p50': float(np.percentile(a, 50)), 'p90': float(np.percentile(a, 90)),
            'p99': float(np.percentile(a, 99)), 'mean': float(a.mean()), 'max': float(a.max()),
            'n': int(a.size)}


def clean(obj):
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(v, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return 'n/a'
    return f'{100 * v:.2f}' if pct else f'{v:.2f}'


def markdown(report: dict) -> str:
    """A human summary of ``report`` (the JSON structure)."""
    fr = report['frames']
    lines = ['# Bag evaluation', '',
             f'- mode: {report["mode"]}; ground truth: {report["ground_truth"] or "none"}',
             '- bags: ' + ', '.join(f'`{b["path"]}` ({b["storage"] or "?"})'
                                    for b in report['bags'])]
    for b in report['bags']:
        for key in BAG_PROBLEMS:
            if b.get(key):
                lines.append(f'- **{key.replace("_", " ")}** in `{b["path"]}`: {b[key]}')
    if report.get('model'):
        m = report['model']
        lines.append(f'- model: {m["name"]} ({m["backend"]} on {m["device"]}, input '
                     f'{m["input_size"][0]}x{m["input_size"][1]})')
    lines += ['', '## Frames', '',
              f'- read: {fr["read"]}, processed: {fr["processed"]}, scored against ground '
              f'truth: {fr["scored"]}, skipped: {fr["skipped"]}',
              f'- labels without a matching frame: {fr["labels_unmatched"]}']
    outside = fr.get('labels_outside_class_set') or {}
    if outside.get('pixels'):
        lines.append(f'- **label pixels outside the class set** (not scored): '
                     f'{outside["pixels"]} in {outside["frames"]} frames, ids '
                     f'{", ".join(map(str, outside["ids"]))}')
    if fr['skipped_by_reason']:
        lines += ['', '| reason | frames | example |', '|---|---:|---|']
        for r, n in sorted(fr['skipped_by_reason'].items()):
            ex = fr['skip_examples'].get(r, '').replace('|', '/')
            lines.append(f'| {r} | {n} | {ex} |')
    met = report.get('metrics')
    if met:
        lines += ['', '## Accuracy', '',
                  f'- mIoU: **{_fmt(met["miou"])}%** over {met["classes_present"]} classes '
                  'present in the ground truth',
                  f'- pixel accuracy: {_fmt(met["pixel_accuracy"])}%, mean class accuracy: '
                  f'{_fmt(met["mean_accuracy"])}%, frequency weighted IoU: {_fmt(met["fwiou"])}%',
                  f'- pixels scored: {met["pixels"]}', '', '| class | IoU % | GT pixels |',
                  '|---|---:|---:|']
        for name, iou in met['iou'].items():
            lines.append(f'| {name} | {_fmt(iou)} | {met["gt_pixels"][name]} |')
    lines += per_bag_table(report['bags'])
    fleet = report.get('fleet')
    if fleet:
        lines += ['', '## Parallel run (Ray)', '',
                  f'- {fleet["workers"]} workers on {fleet["nodes"]} node(s) '
                  f'({fleet["ray_address"] or "local Ray instance"}), {len(fleet["shards"])} '
                  f'shards, {fleet["retries"]} retried, {fleet["failed_shards"]} failed',
                  f'- Ray start and model loading {fleet["startup_s"]:.2f} s, evaluation '
                  f'{fleet["eval_s"]:.2f} s']
        for sh in fleet['shards']:
            if sh['status'] != 'done':
                lines.append(f'- **failed shard** {sh["id"]} of `{sh["bag"]}` (bag time '
                             f'{sh["range"]}, {sh["attempts"]} attempts): {sh["error"]}')
    lat = report['latency_ms']
    if any(lat.values()):
        lines += ['', '## Latency (ms per frame)', '', '| stage | p50 | p90 | p99 | mean |',
                  '|---|---:|---:|---:|---:|']
        for stage, p in lat.items():
            if p:
                lines.append(f'| {stage} | {p["p50"]:.2f} | {p["p90"]:.2f} | {p["p99"]:.2f} '
                             f'| {p["mean"]:.2f} |')
    th = report['throughput']
    lines += ['', '## Throughput', '',
              f'- wall time {th["wall_s"]:.2f} s, {_fmt(th["frames_per_s"], False)} frames/s '
              'end to end',
              f'- evaluator alone (excluding model time): '
              f'{_fmt(th["evaluator_frames_per_s"], False)} frames/s']
    if th.get('model_frames_per_s'):
        lines.append(f'- model alone: {_fmt(th["model_frames_per_s"], False)} frames/s')
    files = report.get('files') or ['report.json']
    lines += ['', 'Files: ' + ', '.join(f'`{f}`' for f in files if f != 'summary.md') + '.',
              '']
    return '\n'.join(lines)


# Plot files an eval run may write (removed first, so a folder never mixes two runs).
PLOT_FILES = ('iou.png', 'confusion.png', 'latency.png', 'samples.png')


def per_bag_table(bags: Sequence[dict]) -> list[str]:
    """Markdown lines: one row per bag, lowest mIoU first (bags with nothing scored first)."""
    if len(bags) < 2 or not any('miou' in b for b in bags):
        return []
    lines = ['', '## Per bag (worst first)', '',
             '| bag | frames | scored | mIoU % | worst classes (IoU %) |',
             '|---|---:|---:|---:|---|']
    for b in sorted(bags, key=lambda b: (b['miou'] is not None, b['miou'] or 0.0)):
        worst = ', '.join(f'{c["class"]} {_fmt(c["iou"])}' for c in b['worst_classes'])
        note = ' (error)' if b['error'] else ''
        lines.append(f'| `{b["path"]}`{note} | {b["frames_read"]} | {b["frames_scored"]} | '
                     f'{_fmt(b["miou"])} | {worst} |')
    return lines


def plot_all(report: dict, timings: dict[str, list[float]], out: Path) -> list[str]:
    """Per-class IoU bars, row-normalised confusion matrix, latency histogram; returns the
    files written."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    written = []
    met = report.get('metrics')
    if met:
        names = list(met['iou'])
        vals = [np.nan if v is None else 100 * v for v in met['iou'].values()]
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names)), 4))
        ax.bar(range(len(names)), np.nan_to_num(vals), color='tab:blue')
        ax.set_xticks(range(len(names)), names, rotation=60, ha='right', fontsize=8)
        ax.set_ylabel('IoU %')
        ax.set_ylim(0, 100)
        ax.set_title(f'per-class IoU (mIoU {_fmt(met["miou"])}%)')
        fig.tight_layout()
        fig.savefig(out / 'iou.png', dpi=100)
        plt.close(fig)
        conf = np.asarray(report['confusion'], np.float64)
        with np.errstate(invalid='ignore', divide='ignore'):
            norm = np.nan_to_num(conf / conf.sum(1, keepdims=True))
        size = max(5, 0.4 * len(names))
        fig, ax = plt.subplots(figsize=(size + 1, size))
        im = ax.imshow(norm, cmap='viridis', vmin=0, vmax=1)
        if len(names) <= 40:
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel('prediction')
        ax.set_ylabel('ground truth')
        ax.set_title('confusion (rows normalised)')
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(out / 'confusion.png', dpi=100)
        plt.close(fig)
        written += ['iou.png', 'confusion.png']
    series = {k: np.asarray(v) * 1e3 for k, v in timings.items()
              if len(v) and k in ('total', 'inference', 'evaluator')}
    if series:
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, v in series.items():
            ax.hist(v, bins=min(50, max(5, v.size // 2)), alpha=0.6, label=k)
        ax.set_xlabel('ms per frame')
        ax.set_ylabel('frames')
        ax.legend()
        ax.set_title('latency')
        fig.tight_layout()
        fig.savefig(out / 'latency.png', dpi=100)
        plt.close(fig)
        written.append('latency.png')
    return written


def write_json(report: dict, path: Path) -> None:
    path.write_text(json.dumps(clean(report), indent=1) + '\n')
