"""Benchmark helpers: per-stage latency and throughput of backends side by side
(``pspnet-ros bench``), and the frames every benchmark script uses."""
from __future__ import annotations

import os
from pathlib import Path
import platform
import sys
import time

STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'total')
# CamVid's val frames in the shared data folder beside the source tree (README "Data").
DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'camvid' / 'val'
SYNTHETIC_SIZE = (360, 480)


def parse_spec(spec: str) -> tuple[str, str, str, dict]:
    """``backend[:card.yaml][@key=value;key=value]`` -> (label, backend, card, options)."""
    from .core.backends import parse_option_value
    head, _, opts = spec.partition('@')
    backend, _, card = head.partition(':')
    options = {}
    for item in filter(None, opts.split(';')):
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'bench option {item!r} in {spec!r} must be key=value')
        options[key] = parse_option_value(value, key)
    label = backend + (f'[{Path(card).name}]' if card else '') + (f'@{opts}' if opts else '')
    return label, backend, card, options


def frame_files(folder: str | os.PathLike | None = DEFAULT_IMAGES, count: int = 10
                ) -> list[Path]:
    """The first ``count`` images of ``folder`` in name order; [] when it does not exist."""
    from .core.files import list_images
    if folder is None or not Path(folder).is_dir():
        return []
    return list_images(folder)[:count]


def load_frames(folder: str | os.PathLike | None = DEFAULT_IMAGES, count: int = 10,
                size: tuple[int, int] | None = None) -> tuple[list, str]:
    """``count`` RGB frames for a benchmark and where they came from: real images from
    ``folder`` (default CamVid val) when it has any, otherwise synthetic 360x480 noise (seed
    0); each resized to ``size`` (height, width) when given. Fewer real images than ``count``
    are repeated in turn."""
    import cv2
    import numpy as np
    from .core.image import read_image
    files = frame_files(folder, count)
    if files:
        frames = [read_image(p) for p in files]
        source = f'{len(files)} images from {folder}'
    else:
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (*SYNTHETIC_SIZE, 3), np.uint8) for _ in range(count)]
        source = f'synthetic {SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]} noise'
    frames = [frames[i % len(frames)] for i in range(count)]
    if size is not None:
        h, w = size
        frames = [f if f.shape[:2] == (h, w) else
                  cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    return frames, source


def load_encoded(folder: str | os.PathLike | None, count: int) -> list[bytes]:
    """``count`` encoded frames (the files' own PNG/JPEG bytes, so decoding is timed as a
    camera pipeline would see it), else ``load_frames``' synthetic frames as PNGs."""
    import cv2
    files = frame_files(folder, count)
    if files:
        return [p.read_bytes() for p in files]
    return [cv2.imencode('.png', cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes()
            for f in load_frames(None, count)[0]]


def bench_one(segmenter, encoded: list[bytes], warmup: int, repeats: int) -> dict:
    """Median/p90 per stage (ms) and sequential throughput (frames/s)."""
    import cv2
    import numpy as np
    for data in encoded[:warmup]:
        segmenter(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB))
    samples = {s: [] for s in STAGES}
    around = []         # conversion, preprocessing and postprocessing: the work around inference
    start = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for data in encoded:
            t0 = time.perf_counter()
            img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            res = segmenter(img)
            t = res.timings
            samples['decode'].append(t1 - t0 + t['convert'])
            samples['preprocess'].append(t['preprocess'])
            samples['inference'].append(t['inference'])
            samples['postprocess'].append(t['postprocess'])
            samples['total'].append(time.perf_counter() - t0)
            around.append(t['convert'] + t['preprocess'] + t['postprocess'])
            n += 1
    wall = time.perf_counter() - start
    out = {s: {'median_ms': 1e3 * float(np.median(v)), 'p90_ms': 1e3 * float(np.percentile(v, 90))}
           for s, v in samples.items()}
    out['frames'] = n
    out['throughput_fps'] = n / wall
    out['around_inference_ms'] = 1e3 * float(np.median(around))
    out['around_vs_inference'] = float(np.median(around)) / float(np.median(samples['inference']))
    return out


def auto_segmenter(card, device: str, size: tuple[int, int], budget_s: float):
    """For a plain ``auto`` spec: the node's measured choice (``autoselect.select``, the
    same cache) as ``(Segmenter, row values)``; ``(None, {})`` when ``budget_s`` is 0 or
    nothing could be measured (the fixed chain runs then)."""
    from .core import Segmenter
    from .core.backends.autoselect import select
    sel = select(card, device, size, budget_s)
    if sel is None:
        return None, {}
    seg = Segmenter(sel.card_path, backend=sel.backend, device=device, input_size=size,
                    backend_options=sel.options)
    times = {m.label: (round(m.seconds * 1000, 2) if m.seconds is not None else m.note)
             for m in sel.measurements}
    return seg, {'auto': {'choice': sel.label, 'source': sel.source, 'candidates_ms': times}}


def run_bench(specs: list[str], model: str, sizes: list[tuple[int, int]] | None,
              images: Path | None, frames: int, warmup: int, repeats: int,
              auto_budget_s: float = 10.0) -> dict:
    """Benchmark every backend spec at every size; unavailable ones are reported, not fatal.
    A plain ``auto`` spec runs what the node's ``backend: auto`` runs: the candidate measured
    within ``auto_budget_s`` (or cached), with every candidate's time in its row."""
    from .core import ModelCard, Segmenter, default_card_path
    from .core.backends import BackendError
    base_card = model or str(default_card_path())
    encoded = load_encoded(images, frames)
    results = []
    for spec in specs:
        label, backend, card_path, options = parse_spec(spec)
        card = ModelCard.load(card_path or base_card)
        for size in sizes or [tuple(card.input_size)]:
            row = {'backend': label, 'input_size': list(size), 'card': card.name}
            static = card.format != 'safetensors'
            if static and list(size) != list(card.input_size):
                row['skipped'] = (f'{card.format} model has a static input '
                                  f'{card.input_size[0]}x{card.input_size[1]}')
                results.append(row)
                continue
            opts = dict(options)
            device = str(opts.pop('device', 'cpu'))
            print(f'  {label} {size[0]}x{size[1]}: loading, {warmup} warm-up + '
                  f'{len(encoded)} x {repeats} timed frames...', file=sys.stderr, flush=True)
            try:
                seg = None
                if backend == 'auto' and not opts:
                    seg, extra = auto_segmenter(card, device, size, auto_budget_s)
                    row.update(extra)
                if seg is None:
                    seg = Segmenter(card, backend=backend, device=device, input_size=size,
                                    backend_options=opts)
            except (BackendError, OSError, ValueError) as exc:
                row['skipped'] = str(exc).splitlines()[0]
                results.append(row)
                continue
            row['describe'] = seg.backend.describe()
            row.update(bench_one(seg, encoded, warmup, repeats))
            # Per input pixel: compares networks run at different sizes (issue 36's measure).
            row['inference_ns_per_pixel'] = (1e6 * row['inference']['median_ms']
                                             / (size[0] * size[1]))
            results.append(row)
            print(f'  {label} {size[0]}x{size[1]}: {row["throughput_fps"]:.2f} fps',
                  file=sys.stderr)
    _add_speedups(results)
    return {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'machine': machine(),
            'images': str(images) if images and images.is_dir() else 'synthetic 360x480',
            'frames': len(encoded), 'repeats': repeats, 'warmup': warmup, 'results': results}


def _add_speedups(results: list[dict]) -> None:
    """Throughput relative to the first ``torch`` row (fp32 eager) of the same input size."""
    base = {}
    for r in results:
        if r['backend'] == 'torch' and 'throughput_fps' in r:
            base.setdefault(tuple(r['input_size']), r['throughput_fps'])
    for r in results:
        ref = base.get(tuple(r['input_size']))
        if ref and 'throughput_fps' in r:
            r['speedup_vs_torch'] = r['throughput_fps'] / ref


def machine() -> str:
    from .core.machine import cpu_info
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return f'{cpu_info()["model"]}, {cores} cores, {platform.system()} {platform.release()}'


def format_table(report: dict) -> str:
    """Markdown table: one row per backend and size, median/p90 per stage in ms."""
    head = ['backend', 'input', 'decode', 'preprocess', 'inference', 'postprocess', 'total',
            'fps', 'vs torch', 'around / inference', 'inference ns/px']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in report['results']:
        size = f'{r["input_size"][0]}x{r["input_size"][1]}'
        if 'skipped' in r:
            lines.append(f'| {r["backend"]} | {size} | skipped: {r["skipped"]} |' + ' |' * 8)
            continue
        cells = [f'{r[s]["median_ms"]:.1f} / {r[s]["p90_ms"]:.1f}' for s in STAGES]
        speed = f'{r["speedup_vs_torch"]:.2f}x' if 'speedup_vs_torch' in r else ''
        lines.append(f'| {r["backend"]} | {size} | ' + ' | '.join(cells)
                     + f' | {r["throughput_fps"]:.2f} | {speed}'
                     + f' | {100 * r["around_vs_inference"]:.0f} %'
                     + f' | {r["inference_ns_per_pixel"]:.0f} |')
    return '\n'.join(lines + auto_lines(report)) + (
        '\n\nStage cells: median / p90 in ms. around / inference: the median of conversion, '
        'preprocessing and postprocessing (argmax, occupancy) against the median inference. '
        'inference ns/px: median inference per input pixel.')


def auto_lines(report: dict) -> list[str]:
    """For each ``auto`` row: the choice, whether it was measured now or cached, and every
    candidate's median time per frame (or why it has none)."""
    out = []
    for r in report['results']:
        if 'auto' not in r:
            continue
        a = r['auto']
        size = f'{r["input_size"][0]}x{r["input_size"][1]}'
        out += ['', f'auto at {size}: chose {a["choice"]} ({a["source"]}); candidates:']
        for label, t in a['candidates_ms'].items():
            mark = '  <- chosen' if label == a['choice'] else ''
            out.append(f'- {label}: ' + (f'{t:.1f} ms' if isinstance(t, (int, float)) else t)
                       + mark)
    return out
