"""``pspnet-ros bag-info``: a bag's image and label topics, with counts, encodings and sizes."""
from __future__ import annotations

import json


def cmd_bag_info(args) -> int:
    from ..evaluation.baginfo import describe_bag, format_info
    infos = [describe_bag(b) for b in args.bags]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=1))
    else:
        print('\n'.join(format_info(i) for i in infos))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        'bag-info', help="list a bag's image and label topics (counts, encodings, sizes)",
        description='List the sensor_msgs/Image and CompressedImage topics of ROS 2 bags '
        "(sqlite3 or mcap) with their message counts, the first message's encoding and size "
        '(HEIGHTxWIDTH), and the eval option each fits.')
    p.add_argument('bags', nargs='+', metavar='BAG', help='bag folders or .db3/.mcap files')
    p.add_argument('--json', action='store_true', help='print JSON instead of the table')
    p.set_defaults(func=cmd_bag_info)
