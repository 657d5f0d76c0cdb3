"""``pspnet-ros`` command line: segment, train, eval, make-bag, bag-info, live, export, bench."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.threads import configure_threads


# Modules that add subcommands (and the commands they add): each has
# ``register(subparsers)`` adding parsers whose ``func(args) -> int`` runs the command.
SUBCOMMAND_MODULES: dict[str, tuple[str, ...]] = {
    'pspnet_ros.cli.segment': ('segment',),
    'pspnet_ros.cli.train': ('train',),
    'pspnet_ros.cli.eval': ('eval',),
    'pspnet_ros.cli.make_bag': ('make-bag',),
    'pspnet_ros.cli.bag_info': ('bag-info',),
    'pspnet_ros.cli.live': ('live',),
    'pspnet_ros.cli.export': ('export',),
    'pspnet_ros.cli.bench': ('bench',),
}


def _unavailable(module: str) -> int:
    print(f'error: this command needs the Python module {module!r}; install the '
          "project's requirements (pip install -r requirements.txt)", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(
        prog='pspnet-ros', description='PSPNet semantic segmentation for ROS 2: segment '
        'images, train, evaluate on ROS 2 bags, drive a running node, export for '
        'accelerators, benchmark backends. "pspnet-ros COMMAND --help" describes each command.',
        epilog='In a colcon install: ros2 run pspnet_ros pspnet-ros COMMAND ...')
    parser.add_argument('--version', action='version', version=f'pspnet-ros {__version__}')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name, commands in SUBCOMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            # One optional dependency (e.g. rosbags for eval) must not break the others; a
            # broken import inside this package is a bug, not a missing dependency.
            if not exc.name or exc.name.split('.')[0] == 'pspnet_ros':
                raise
            missing = exc.name
            for command in commands:
                p = sub.add_parser(command, help=f'unavailable: needs {missing}')
                p.set_defaults(func=lambda args, m=missing: _unavailable(m))
            continue
        module.register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a missing runtime, not a bug: reported as one
    ``error:`` line and exit status 2 by every subcommand."""
    from ..core.backends import BackendError
    from ..core.card import ModelCardError
    from ..core.image import ImageError
    from ..core.weights import WeightsError
    from ..export import ExportError
    errors = [BackendError, ExportError, ModelCardError, ImageError, WeightsError,
              FileNotFoundError, FileExistsError, NotADirectoryError, ValueError]
    try:
        from ..evaluation.bagio import BagError
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
