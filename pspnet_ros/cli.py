"""``pspnet-ros`` command line: segment, train, eval, make-bag, live, export, bench."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from pathlib import Path
import sys

from .core.threads import configure_threads


# Modules that add subcommands (and the commands they add): each has
# ``register(subparsers)`` adding parsers whose ``func(args) -> int`` runs the command.
SUBCOMMAND_MODULES: dict[str, tuple[str, ...]] = {
    'pspnet_ros.evaluation.cli': ('eval', 'make-bag'),
    'pspnet_ros.live.cli': ('live',),
    'pspnet_ros.core.export': ('export',),
    'pspnet_ros.bench': ('bench',),
}


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--model', default='', help='model card YAML (default: the shipped CamVid '
                   'model)')
    p.add_argument('--backend', default='torch', help='inference backend (default: torch)')
    p.add_argument('--device', default='cpu', help='device for the backend (cpu, cuda, cuda:1)')


def segmenter_from_args(args):
    from .core import Segmenter, default_card_path
    return Segmenter(args.model or default_card_path(), backend=args.backend, device=args.device)


def cmd_segment(args) -> int:
    import cv2
    import numpy as np
    from .core import ImageError, read_image
    from .core.segmenter import overlay
    seg = segmenter_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.images:
        try:
            img = read_image(path)
        except ImageError as exc:
            print(f'error: {exc}', file=sys.stderr)
            failures += 1
            continue
        res = seg(img)
        stem = Path(path).stem
        color = seg.colorize(res.labels)
        cv2.imwrite(str(out / f'{stem}_mask.png'), res.labels)
        cv2.imwrite(str(out / f'{stem}_color.png'), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / f'{stem}_overlay.png'),
                    cv2.cvtColor(overlay(img, color, args.alpha), cv2.COLOR_RGB2BGR))
        occ = res.occupancy
        top = np.argsort(occ.fractions)[::-1]
        parts = [f'{seg.class_names[i]} {occ.fractions[i]:.1%}' for i in top if occ.counts[i]]
        print(f'{path}: {img.shape[1]}x{img.shape[0]} in {res.timings["total"] * 1e3:.0f} ms | '
              + ', '.join(parts))
        if args.json:
            rec = {'image': str(path), 'timings_s': res.timings,
                   'occupancy': {seg.class_names[i]: {'fraction': float(occ.fractions[i]),
                                                      'count': int(occ.counts[i])}
                                 for i in range(seg.num_classes)}}
            print(json.dumps(rec))
    print(f'wrote masks, colour masks and overlays to {out}/')
    return 1 if failures else 0


def _add_dataclass_args(p: argparse.ArgumentParser, cls) -> None:
    for f in dataclasses.fields(cls):
        flag = '--' + f.name.replace('_', '-')
        required = (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING)
        if required:
            default = None
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()
        if isinstance(default, list):
            p.add_argument(flag, nargs=len(default), type=type(default[0]), default=default,
                           help=f'(default: {" ".join(map(str, default))})')
        else:
            kind = str if required else type(default)
            p.add_argument(flag, type=kind, default=None if required else default,
                           required=required, help='' if required else f'(default: {default})')


def cmd_train(args) -> int:
    from .core.train import TrainConfig, train
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    metrics = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(json.dumps(metrics, indent=1))
    return 0


def _unavailable(module: str) -> int:
    print(f'error: this command needs the Python module {module!r}; install the '
          "project's requirements (pip install -r requirements.txt)", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from .core.train import TrainConfig
    parser = argparse.ArgumentParser(prog='pspnet-ros', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('segment', help='segment image files; write mask/colour/overlay PNGs')
    p.add_argument('images', nargs='+', help='image files (PNG, JPEG, BMP, ...)')
    p.add_argument('--out', default='segment_out', help='output folder (default: segment_out)')
    p.add_argument('--alpha', type=float, default=0.5, help='overlay mask weight (0..1)')
    p.add_argument('--json', action='store_true', help='also print one JSON line per image')
    add_model_args(p)
    p.set_defaults(func=cmd_segment)
    p = sub.add_parser('train', help='train or fine-tune PSPNet on image + label folders')
    _add_dataclass_args(p, TrainConfig)
    p.add_argument('--no-resume', action='store_true', help='ignore out/checkpoints/last.pt')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.set_defaults(func=cmd_train)
    for name, commands in SUBCOMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            # One optional dependency (e.g. rosbags for eval) must not break the others.
            missing = exc.name or str(exc)
            for command in commands:
                p = sub.add_parser(command, help=f'unavailable: needs {missing}')
                p.set_defaults(func=lambda args, m=missing: _unavailable(m))
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch, numpy or onnxruntime load: their pools are fixed then (core.threads).
    configure_threads()
    args = build_parser().parse_args(argv)
    from .core.card import ModelCardError
    from .core.image import ImageError
    from .core.weights import WeightsError
    try:
        return args.func(args)
    except (ModelCardError, ImageError, WeightsError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
