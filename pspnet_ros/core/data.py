"""Image + label folders (CamVid / SegNet layout) and training augmentation."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .image import read_image, read_label

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp')


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


def load_pairs(pairs: list[tuple[Path, Path]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read all pairs into memory (CamVid train is about 190 MB)."""
    out = []
    for ip, lp in pairs:
        img, lab = read_image(ip), read_label(lp)
        if img.shape[:2] != lab.shape:
            raise ValueError(f'{ip.name}: image {img.shape[:2]} and label {lab.shape} differ')
        out.append((img, lab))
    return out


def augment(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator, base_scale: float,
            scale_range: tuple[float, float], crop: tuple[int, int], ignore_index: int,
            pad_value: np.ndarray, soft: np.ndarray | None = None):
    """Random scale, crop (padding with ``pad_value`` / ``ignore_index``), flip, and a mild
    brightness/contrast jitter.

    ``soft`` (optional, ``(H, W, C)``: a teacher's class probabilities for the frame) gets the
    same scale (bilinear), crop (zero padding) and flip, and is returned as a third item
    (float32). The random draws are the same with or without it.
    """
    s = base_scale * rng.uniform(*scale_range)
    h, w = lab.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    lab = cv2.resize(lab, (nw, nh), interpolation=cv2.INTER_NEAREST)
    if soft is not None:
        if soft.shape[:2] != (h, w):
            raise ValueError(f'soft targets {soft.shape[:2]} and label {(h, w)} differ')
        soft = cv2.resize(soft.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
        soft = soft.reshape(nh, nw, -1)          # cv2 drops a single channel's axis
    ch, cw = crop
    ph, pw = max(ch - nh, 0), max(cw - nw, 0)
    if ph or pw:
        img = cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2,
                                 cv2.BORDER_CONSTANT, value=pad_value.tolist())
        lab = cv2.copyMakeBorder(lab, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2,
                                 cv2.BORDER_CONSTANT, value=ignore_index)
        if soft is not None:
            soft = np.pad(soft, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    y = rng.integers(0, lab.shape[0] - ch + 1)
    x = rng.integers(0, lab.shape[1] - cw + 1)
    img, lab = img[y:y + ch, x:x + cw], lab[y:y + ch, x:x + cw]
    flip = rng.random() < 0.5
    if flip:
        img, lab = img[:, ::-1], lab[:, ::-1]
    alpha, beta = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    img = np.clip(img.astype(np.float32) * alpha + beta, 0, 255)
    if soft is None:
        return img, np.ascontiguousarray(lab)
    soft = soft[y:y + ch, x:x + cw]
    if flip:
        soft = soft[:, ::-1]
    return img, np.ascontiguousarray(lab), np.ascontiguousarray(soft)


def paste_classes(img: np.ndarray, lab: np.ndarray, donor_img: np.ndarray,
                  donor_lab: np.ndarray, classes, rng: np.random.Generator,
                  max_shift: float = 0.25, soft: np.ndarray | None = None,
                  donor_soft: np.ndarray | None = None):
    """Copy-paste augmentation (Ghiasi et al., CVPR 2021, for semantic labels): the pixels of
    ``classes`` in a donor frame are pasted onto this frame, so rare thin objects (poles,
    pedestrians) are seen against backgrounds they were not labelled on.

    The donor (image, label and, if given, ``donor_soft`` teacher probabilities) is mirrored
    with probability 0.5 and shifted sideways by up to ``max_shift`` of the width; pixels
    shifted out of the frame are dropped. The donor must have the frame's size. Returns new
    ``(img, lab)`` or ``(img, lab, soft)`` arrays; the inputs are not changed.
    """
    h, w = lab.shape
    if donor_lab.shape != (h, w) or donor_img.shape[:2] != (h, w):
        raise ValueError(f'donor {donor_lab.shape} and frame {(h, w)} differ in size')
    if (soft is None) != (donor_soft is None):
        raise ValueError('give soft and donor_soft together, or neither')
    flip = rng.random() < 0.5
    limit = int(max_shift * w)
    dx = int(rng.integers(-limit, limit + 1)) if limit else 0
    mask = np.isin(donor_lab, np.asarray(list(classes), dtype=donor_lab.dtype))
    if flip:
        donor_img, donor_lab, mask = donor_img[:, ::-1], donor_lab[:, ::-1], mask[:, ::-1]
        if donor_soft is not None:
            donor_soft = donor_soft[:, ::-1]
    # Destination columns [d0, d1) take donor columns [d0 - dx, d1 - dx).
    d0, d1 = max(0, dx), min(w, w + dx)
    src = slice(d0 - dx, d1 - dx)
    m = mask[:, src]                  # which destination pixels of columns [d0, d1) change
    img, lab = img.copy(), lab.copy()
    img[:, d0:d1][m] = donor_img[:, src][m]
    lab[:, d0:d1][m] = donor_lab[:, src][m]
    if soft is None:
        return img, lab
    soft = soft.copy()
    soft[:, d0:d1][m] = donor_soft[:, src][m]
    return img, lab, soft
