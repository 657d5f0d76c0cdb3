"""``pspnet-ros eval``: replay ROS 2 bags through the model (or read recorded masks) and score
them against ground-truth labels."""
from __future__ import annotations

import sys

from ..core.sizes import DEFAULT_MAX_PIXELS
from .common import add_model_args, add_overwrite_arg, remove_bag_for_overwrite

# The evaluation package's default, repeated here so --help loads no numpy (a test checks
# they agree).
DEFAULT_SHARD_FRAMES = 500


def cmd_eval(args) -> int:
    from ..evaluation.bagio import BagError
    from ..evaluation.evaluator import EvalConfig
    from ..evaluation.report import exit_code
    from ..evaluation.shards import make_evaluator
    cfg = EvalConfig(bags=args.bags, image_topic=args.image_topic, label_topic=args.label_topic,
                     labels_dir=args.labels_dir, pred_topic=args.pred_topic,
                     stamp_tolerance=args.stamp_tolerance, out=args.out,
                     write_bag=args.write_bag, write_storage=args.write_storage,
                     write_prefix=args.write_prefix, write_labels=args.write_labels,
                     samples=args.samples, limit=args.limit,
                     max_pixels=args.max_pixels, ignore_index=args.ignore_index,
                     max_pending=args.max_pending, progress=not args.no_progress)
    cfg.validate()
    if args.write_bag:
        from pathlib import Path
        out = Path(args.write_bag).resolve()
        if any(out == Path(b).resolve() or out in Path(b).resolve().parents for b in args.bags):
            raise ValueError(f'--write-bag {args.write_bag} is one of the bags to evaluate; '
                             'choose a new path for the predictions')
        if args.overwrite:
            remove_bag_for_overwrite(args.write_bag)
    if args.workers > 1 or args.ray_address:
        return _eval_on_ray(args, cfg)
    if args.gpus_per_worker:
        raise ValueError('--gpus-per-worker is for workers on Ray (--workers N or '
                         '--ray-address); a single process takes --device cuda')
    if args.workers < 1:
        raise ValueError(f'--workers must be >= 1, got {args.workers}')
    ev = make_evaluator(cfg, args.model, args.backend, args.device, args.label_set)
    try:
        report = ev.run()
    except (BagError, FileExistsError) as exc:
        print(f'error: {exc}' + (' (or pass --overwrite)' if isinstance(exc, FileExistsError)
                                 else ''), file=sys.stderr)
        return 2
    print_summary(report, cfg)
    return exit_code(report)


def _eval_on_ray(args, cfg) -> int:
    from ..evaluation.fleet import FleetConfig, FleetError, INSTALL_HINT, ray_available, \
        run_fleet
    from ..evaluation.report import exit_code
    if not ray_available():
        print(f'error: --workers {args.workers}{" --ray-address" if args.ray_address else ""} '
              f'runs on Ray, which is not installed here; install it with: {INSTALL_HINT}',
              file=sys.stderr)
        return 2
    fc = FleetConfig(workers=args.workers, ray_address=args.ray_address,
                     cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                     shard_frames=args.shard_frames, model=args.model, backend=args.backend,
                     device=args.device, label_set=args.label_set)
    try:
        report = run_fleet(cfg, fc)
    except FleetError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print_summary(report, cfg)
    fl = report['fleet']
    print(f'{len(fl["shards"])} shards on {fl["workers"]} Ray workers ({fl["nodes"]} node(s)), '
          f'{fl["retries"]} retried, {fl["failed_shards"]} failed')
    return exit_code(report)


def print_summary(report: dict, cfg) -> None:
    """Problems on stderr (one line each), then the scores; only the problems when the run
    gave no result."""
    from ..evaluation.report import BAG_PROBLEMS, failure
    for b in report['bags']:
        for key in BAG_PROBLEMS:
            if b.get(key):
                print(f'{"error" if key == "error" else "warning"}: {b[key]}', file=sys.stderr)
    fr = report['frames']
    outside = fr.get('labels_outside_class_set') or {}
    if outside.get('pixels'):
        print(f'warning: {outside["pixels"]} ground-truth pixels in {outside["frames"]} frames '
              f'have ids outside the class set [0, {len(report["class_names"])}) and not the '
              f'ignore index {report["ignore_index"]} (ids {", ".join(map(str, outside["ids"]))})'
              '; they are not scored', file=sys.stderr)
    why = failure(report)
    if why:
        said = any(b['error'] for b in report['bags'])     # each bag's error is above
        if not (why.startswith('no frames were read') and said):
            print(f'error: {why}', file=sys.stderr)
        print(f'(details: {cfg.out}/report.json)', file=sys.stderr)
        return
    met, th = report['metrics'], report['throughput']
    line = (f'frames read {fr["read"]}, scored {fr["scored"]}, skipped {fr["skipped"]}'
            + (f' ({", ".join(f"{k}: {v}" for k, v in fr["skipped_by_reason"].items())})'
               if fr['skipped'] else ''))
    print(line)
    if met:
        print(f'mIoU {100 * met["miou"]:.2f}%  pixel accuracy {100 * met["pixel_accuracy"]:.2f}%'
              f'  fwIoU {100 * met["fwiou"]:.2f}%')
    if th['frames_per_s']:
        print(f'{th["frames_per_s"]:.1f} frames/s end to end')
    print(f'wrote report.json, summary.md and plots to {cfg.out}/'
          + (f'; predictions to {cfg.write_bag}' if cfg.write_bag else ''))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'eval', help='replay ROS 2 bags through the model and score against label images',
        description='Replay ROS 2 bags (sqlite3 or mcap) through the model, or read recorded '
        'masks (--pred-topic), match frames to ground-truth labels by header stamp and write '
        'report.json, summary.md, plots and a sample montage. "pspnet-ros bag-info BAG" lists '
        "a bag's image and label topics. See docs/EVALUATION.md.")
    p.add_argument('bags', nargs='+', metavar='BAG', help='bag folders or .db3/.mcap files')
    p.add_argument('--image-topic', default='', help='sensor_msgs/Image or CompressedImage '
                   'topic to segment')
    p.add_argument('--pred-topic', default='', help='score recorded masks (mono8 Image, e.g. '
                   "the node's ~/mask) instead of running the model")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument('--label-topic', default='', help='ground truth: mono8/16UC1 Image topic of '
                    'class ids with the same header stamps as the images')
    gt.add_argument('--labels-dir', default='', help='ground truth: folder of label PNGs named '
                    'by stamp (<ns>.png or <sec>.<nsec>.png) or matched by index in name order')
    p.add_argument('--stamp-tolerance', type=float, default=0.0, help='match the nearest label '
                   'within this many seconds (default 0: exact stamps)')
    p.add_argument('--out', default='eval_out', help='report folder (default: eval_out; its '
                   'previous report files are replaced)')
    p.add_argument('--write-bag', default='', help='also write mask, color_mask and occupancy '
                   'to this new bag')
    p.add_argument('--write-storage', choices=('sqlite3', 'mcap'), default='sqlite3',
                   help='storage of --write-bag (default: sqlite3)')
    p.add_argument('--write-prefix', default='/pspnet', help='topic prefix in --write-bag '
                   '(default: /pspnet -> /pspnet/mask ...)')
    p.add_argument('--no-write-labels', dest='write_labels', action='store_false',
                   help='do not copy --label-topic into --write-bag (by default it is copied, '
                   'so the prediction bag can be scored alone with --pred-topic)')
    add_overwrite_arg(p, 'replace an existing --write-bag bag')
    p.add_argument('--samples', type=int, default=4, help='frames in samples.png (default 4)')
    p.add_argument('--limit', type=int, default=0, help='at most this many frames per bag')
    p.add_argument('--ignore-index', type=int, default=None, help='label id not scored '
                   "(default: the label set's void id)")
    p.add_argument('--label-set', default='', help='class names for --pred-topic (default: '
                   "the model card's)")
    p.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS,
                   help='reject larger frames')
    p.add_argument('--max-pending', type=int, default=256, help='frames kept waiting for a '
                   'label before they count as unlabelled (default 256)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_model_args(p)
    ray = p.add_argument_group('parallel, on Ray', 'many bags, and long bags split in time '
                               'ranges, on several processes or machines; needs pip install '
                               "'.[ray]' (see docs/EVALUATION.md)")
    ray.add_argument('--workers', type=int, default=1, help='Ray workers (actors), each with '
                     'the model loaded once (default 1: no Ray)')
    ray.add_argument('--ray-address', default='', help="join this Ray cluster ('auto', "
                     'HOST:6379 or ray://HOST:10001) instead of starting a local one')
    ray.add_argument('--cpus-per-worker', type=float, default=1.0, help='CPUs a worker '
                     'reserves; also its torch threads (default 1)')
    ray.add_argument('--gpus-per-worker', type=float, default=0.0, help='GPUs a worker '
                     'reserves (e.g. 1, or 0.5 to share one); the model runs on cuda')
    ray.add_argument('--shard-frames', type=int, default=DEFAULT_SHARD_FRAMES,
                     help='split bags with more frames into time ranges of about this many '
                     f'(default {DEFAULT_SHARD_FRAMES}; 0: never)')
    p.set_defaults(func=cmd_eval)
