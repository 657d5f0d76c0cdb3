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
