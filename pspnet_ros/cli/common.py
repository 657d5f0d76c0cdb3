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
