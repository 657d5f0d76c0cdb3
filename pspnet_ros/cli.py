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
    return Segmenter(args.model or default_card_path(), backend=args.backend, device=args.device,
                     test_time_flip=getattr(args, 'test_time_flip', False))


def cmd_segment(args) -> int:
    import cv2
    import numpy as np
    from .core import ImageError, read_image
    from .core.segmenter import overlay
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f'--alpha must be between 0 and 1, got {args.alpha}')
    seg = segmenter_from_args(args)
    out = Path(args.out)
    failures = 0
    for path in args.images:
        try:
            img = read_image(path)
        except ImageError as exc:
            print(f'error: {exc}', file=sys.stderr)
            failures += 1
            continue
        out.mkdir(parents=True, exist_ok=True)
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
    written = len(args.images) - failures
    if not written:
        return 2                    # each failure has had its error line; nothing written
    print(f'wrote masks, colour masks and overlays of {written} image'
          f'{"s" if written > 1 else ""} to {out}/')
    return 1 if failures else 0


# What each ``train`` flag does (TrainConfig fields); --help appends the default.
TRAIN_HELP = {
    'train_images': 'folder of training images (e.g. ../shared/data/camvid/train)',
    'train_labels': 'folder of label PNGs with the same file stems (class ids)',
    'out': 'output folder: NAME.safetensors, NAME.yaml (model card), checkpoints/',
    'name': 'model name (file stem of the weights and the card)',
    'val_images': 'validation images, scored every --eval-every epochs (optional)',
    'val_labels': 'validation labels',
    'architecture': 'network: pspnet_mobilenetv2, pspnet_resnet18, ...',
    'label_set': 'class names and palette (camvid, cityscapes, voc, ade20k)',
    'head_channels': 'channels of the pyramid pooling head',
    'output_stride': 'backbone output stride: 8, or 16 (MobileNetV2; about half the compute)',
    'decoder_channels': 'width of the skip decoder (MobileNetV2; 0 = none)',
    'decoder_stride': 'stride of the features the skip decoder reads: 8, or 4 (thin objects)',
    'input_size': 'network input height width written to the card (48k-7 suits Edge TPU)',
    'crop_size': 'training crop height width',
    'scale_range': 'random rescale range before cropping',
    'epochs': 'passes over the training set',
    'batch_size': 'images per step',
    'lr': 'SGD learning rate of the backbone (poly decay)',
    'head_lr_mult': 'learning rate multiplier for the head',
    'momentum': 'SGD momentum',
    'weight_decay': 'SGD weight decay',
    'aux_weight': "weight of PSPNet's auxiliary loss",
    'class_weighting': 'loss weights per class: none, median, sqrt-median',
    'init': 'initial weights: a checkpoint, or tflite:FILE for a MobileNetV2 backbone '
            'de-quantised from a Coral file: mobilenet_v2_1.0_224_quant.tflite (ImageNet) or '
            'deeplabv3_mnv2_pascal_quant.tflite (segmentation, PASCAL VOC)',
    'teacher': 'model card of a trained torch model to distil from (frozen; e.g. a model '
               'run at a larger input)',
    'teacher_input_scale': 'the teacher sees each training batch resized by this factor',
    'teacher_sizes': 'HxW[,HxW...]: instead, the teacher labels each whole training frame once '
                     'at these input sizes and mirrored (mean probabilities, cached in OUT); '
                     'the targets follow each crop',
    'distill_weight': 'weight of the distillation loss (KL to the teacher; 0 = off)',
    'distill_temperature': 'softmax temperature of the distillation loss',
    'distill_correct': "where the teacher's top class is not the label, mix this share of the "
                       'label into its target (0 = the teacher as is, 1 = the label)',
    'lovasz_weight': 'weight of the Lovasz-softmax loss on the main output (a per-class IoU '
                     'surrogate; 0 = off)',
    'ohem_thresh': 'online hard example mining: the cross-entropy counts only pixels whose '
                   "label's probability is at most this (0 = off; PSPNet used 0.7)",
    'ohem_min_kept': 'with --ohem-thresh: keep at least this many pixels per batch (the '
                     'hardest)',
    'paste_prob': 'copy-paste augmentation: the share of training frames that get the '
                  '--paste-classes pixels of another training frame, mirrored and shifted '
                  'sideways (0 = off)',
    'paste_classes': 'with --paste-prob: comma-separated class names to paste',
    'mean': 'per-channel mean subtracted from RGB input',
    'std': 'per-channel std dividing RGB input',
    'seed': 'random seed (runs are deterministic)',
    'threads': 'CPU threads (0 = all)',
    'device': 'auto (the first CUDA GPU if torch sees one, else cpu), cpu, cuda or cuda:N',
    'amp': 'auto: float16 mixed precision (autocast and loss scaling) on CUDA; off: float32',
    'eval_every': 'validate every N epochs',
    'max_iters_per_epoch': 'cap steps per epoch (0 = the whole set)',
    'stop_after': 'stop after N epochs of this run, keeping the checkpoint; the same command '
                  'resumes (0 = run to --epochs)',
    'licence': 'licence written to the model card',
    'training_data': 'training data description written to the model card',
}


def _add_dataclass_args(p: argparse.ArgumentParser, cls, helps: dict | None = None) -> None:
    helps = helps or {}
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
        text = helps.get(f.name, '')
        if isinstance(default, list):
            p.add_argument(flag, nargs=len(default), type=type(default[0]), default=default,
                           help=f'{text} (default: {" ".join(map(str, default))})'.strip())
        else:
            kind = str if required else type(default)
            p.add_argument(flag, type=kind, default=None if required else default,
                           required=required, help=f'{text} (required)' if required
                           else f'{text} (default: {default!r})'.strip())


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
    from . import __version__
    parser = argparse.ArgumentParser(
        prog='pspnet-ros', description='PSPNet semantic segmentation for ROS 2: segment '
        'images, train, evaluate on ROS 2 bags, drive a running node, export for '
        'accelerators, benchmark backends. "pspnet-ros COMMAND --help" describes each command.',
        epilog='In a colcon install: ros2 run pspnet_ros pspnet-ros COMMAND ...')
    parser.add_argument('--version', action='version', version=f'pspnet-ros {__version__}')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('segment', help='segment image files; write mask/colour/overlay PNGs')
    p.add_argument('images', nargs='+', help='image files (PNG, JPEG, BMP, ...)')
    p.add_argument('--out', default='segment_out', help='output folder (default: segment_out)')
    p.add_argument('--alpha', type=float, default=0.5, help='overlay mask weight (0..1)')
    p.add_argument('--json', action='store_true', help='also print one JSON line per image')
    p.add_argument('--test-time-flip', action='store_true', help='also segment each mirrored '
                   'image and average the two (about 2x the time, a little more accurate)')
    add_model_args(p)
    p.set_defaults(func=cmd_segment)
    p = sub.add_parser('train', help='train or fine-tune PSPNet on image + label folders',
                       description='Train or fine-tune PSPNet on an image folder and a label '
                       'folder (e.g. CamVid). Resumes from OUT/checkpoints/last.pt; writes '
                       'the weights and a model card with the command that reproduces them.')
    _add_dataclass_args(p, TrainConfig, TRAIN_HELP)
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


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a missing runtime, not a bug: reported as one
    ``error:`` line and exit status 2 by every subcommand."""
    from .core.backends import BackendError
    from .core.card import ModelCardError
    from .core.export import ExportError
    from .core.image import ImageError
    from .core.weights import WeightsError
    errors = [BackendError, ExportError, ModelCardError, ImageError, WeightsError,
              FileNotFoundError, FileExistsError, NotADirectoryError, ValueError]
    try:
        from .evaluation.bagio import BagError
        errors.append(BagError)
    except ImportError:        # rosbags missing: eval/make-bag/live say so themselves
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    # Before torch, numpy or onnxruntime load: their pools are fixed then (core.threads).
    configure_threads()
    args = build_parser().parse_args(argv)
    errors = user_errors()
    try:
        return args.func(args)
    except errors as exc:
        # The first line is the message; continuation lines (e.g. a compiler report) follow.
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
