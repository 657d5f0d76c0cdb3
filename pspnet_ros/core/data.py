"""Image + label folder pairs (CamVid / SegNet layout), for evaluation and training."""
from __future__ import annotations

import os
from pathlib import Path

from .files import IMAGE_EXTS


def find_pairs(images: str | os.PathLike, labels: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pair each image with the label file of the same stem; raise if any is unmatched."""
    images, labels = Path(images), Path(labels)
    for d in (images, labels):
        if not d.is_dir():
            raise FileNotFoundError(f'folder not found: {d}')
    label_by_stem = {p.stem: p for p in labels.iterdir() if p.suffix.lower() in IMAGE_EXTS}
    pairs, missing = [], []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        if p.stem in label_by_stem:
            pairs.append((p, label_by_stem[p.stem]))
        else:
            missing.append(p.name)
    if missing:
        raise FileNotFoundError(f'{len(missing)} images in {images} have no label in {labels}, '
                                f'e.g. {missing[:3]}')
    if not pairs:
        raise FileNotFoundError(f'no images found in {images}')
    return pairs


def split_folders(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """SegNet/CamVid layout: ``root/<split>`` images and ``root/<split>annot`` labels."""
    root = Path(root)
    return root / split, root / f'{split}annot'
