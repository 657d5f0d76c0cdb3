"""Arguments and helpers that several ``pspnet-ros`` subcommands share."""
from __future__ import annotations

import argparse
import dataclasses


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--model', default='', help='model card YAML (default: the shipped CamVid '
                   'model)')
    p.add_argument('--backend', default='torch', help='inference backend (default: torch)')
    p.add_argument('--device', default='cpu', help='device for the backend (cpu, cuda, cuda:1)')


def segmenter_from_args(args):
    from ..core import Segmenter, default_card_path
    return Segmenter(args.model or default_card_path(), backend=args.backend, device=args.device,
                     test_time_flip=getattr(args, 'test_time_flip', False))


def add_dataclass_args(p: argparse.ArgumentParser, cls, helps: dict | None = None) -> None:
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


def add_overwrite_arg(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument('--overwrite', action='store_true', help=text)


# What a rosbag2 bag folder holds; --overwrite removes a folder of only these, nothing else.
_BAG_FILE_SUFFIXES = ('.db3', '.mcap', '.db3-shm', '.db3-wal', '.db3-journal', '.zstd')


def remove_bag_for_overwrite(path: str) -> None:
    """Remove the bag at ``path`` (a bag folder or a bare ``.db3``/``.mcap`` file) so a command
    can write a new one there. Anything that does not look like a bag is refused, not removed:
    ``--overwrite`` must never delete a folder of other files by a typo."""
    import shutil
    from pathlib import Path
    p = Path(path)
    if not p.exists():
        return
    if p.is_file():
        if p.suffix not in ('.db3', '.mcap'):
            raise FileExistsError(f'{p} exists and is not a bag (.db3/.mcap); --overwrite '
                                  'replaces bags only: choose another path')
        p.unlink()
        return
    others = [c.name for c in p.iterdir()
              if c.name != 'metadata.yaml' and not c.name.endswith(_BAG_FILE_SUFFIXES)]
    if others:
        raise FileExistsError(f'{p} exists and holds files that are not part of a bag (e.g. '
                              f'{sorted(others)[0]}); --overwrite replaces bags only: choose '
                              'another path')
    shutil.rmtree(p)
