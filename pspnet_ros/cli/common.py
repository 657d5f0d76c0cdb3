"""Arguments and helpers that several ``pspnet-ros`` subcommands share."""
from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--model', default='', help='model card YAML (default: the shipped CamVid '
                   'model)')
    p.add_argument('--backend', default='torch', help='inference backend (default: torch)')
    p.add_argument('--device', default='cpu', help='device for the backend (cpu, cuda, cuda:1)')


def segmenter_from_args(args):
    from ..core import Segmenter, default_card_path
    return Segmenter(args.model or default_card_path(), backend=args.backend, device=args.device,
                     test_time_flip=getattr(args, 'test_time_flip', False))


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
