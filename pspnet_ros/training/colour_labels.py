"""Convert colour label PNGs (a labelling tool's export) to class-id PNGs through a class list,
for tools that read class ids (``pspnet-ros make-bag``, ``eval --labels-dir``).

    python -m pspnet_ros.training.colour_labels --label-set classes.yaml labels/ label_ids/
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys


def convert(label_set: str, src: str, dst: str) -> int:
    """Write each label image of ``src`` as a class-id PNG of the same name in ``dst``;
    returns how many were written."""
    import cv2
    from ..core.files import list_images
    from ..core.labels import get_label_set
    from .data import read_training_label
    labelset = get_label_set(label_set)
    files = list_images(src)
    if not files:
        raise FileNotFoundError(f'no label images in {src}')
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        ids = read_training_label(path, labelset)
        cv2.imwrite(str(out / f'{path.stem}.png'), ids)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m pspnet_ros.training.colour_labels',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--label-set', required=True, help='class list (YAML or labelmap.txt)')
    p.add_argument('src', help='folder of colour (or id) label PNGs')
    p.add_argument('dst', help='output folder of class-id PNGs')
    args = p.parse_args(argv)
    try:
        n = convert(args.label_set, args.src, args.dst)
    except (ValueError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {n} class-id label images to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
