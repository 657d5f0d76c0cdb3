"""``pspnet-ros make-bag``: a labelled ROS 2 bag from image and label folders."""
from __future__ import annotations

import argparse
import json

from .common import add_overwrite_arg, remove_bag_for_overwrite

# evaluation.DEFAULT_START_STAMP, repeated so --help loads nothing (a test checks they agree).
DEFAULT_START_STAMP = 1_700_000_000.0


def cmd_make_bag(args) -> int:
    from ..evaluation.makebag import make_bag
    image_topic = args.image_topic
    if image_topic is None:
        image_topic = '/camera/image_raw/compressed' if args.compressed else '/camera/image_raw'
    if args.overwrite:
        remove_bag_for_overwrite(args.out)
    summary = make_bag(args.images, args.labels, args.out, rate=args.rate,
                       compressed=args.compressed, storage=args.storage,
                       image_topic=image_topic, label_topic=args.label_topic,
                       frame_id=args.frame_id, limit=args.limit, start_stamp=args.start_stamp)
    summary.pop('files')
    print(json.dumps(summary, indent=1))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'make-bag', help='build a labelled bag from image and label folders',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('images', help='image folder, e.g. ../shared/data/camvid/val')
    p.add_argument('labels', help='label folder (same file stems), e.g. .../valannot')
    p.add_argument('out', help='new bag folder')
    p.add_argument('--rate', type=float, default=10.0, help='frames per second of header time')
    p.add_argument('--compressed', action='store_true', help='JPEG CompressedImage frames')
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--image-topic', default=None, help='default /camera/image_raw '
                   '(/camera/image_raw/compressed with --compressed)')
    p.add_argument('--label-topic', default='/camera/labels')
    p.add_argument('--frame-id', default='camera')
    p.add_argument('--limit', type=int, default=None, help='first N pairs in name order')
    p.add_argument('--start-stamp', type=float, default=DEFAULT_START_STAMP,
                   help='header stamp of the first frame, seconds')
    add_overwrite_arg(p, 'replace OUT if it is a bag already')
    p.set_defaults(func=cmd_make_bag)
