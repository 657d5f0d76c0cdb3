"""Training data: labelled frames in memory (class-id or colour label PNGs), augmentation,
copy-paste, and the batches of an epoch."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..core.image import ImageError, read_image, read_label
from ..core.labels import LabelSet
from ..core.preprocess import normalise


def read_training_label(path: Path, labelset: LabelSet | None = None) -> np.ndarray:
    """A label image as class ids: single-channel PNGs hold the ids; colour PNGs (what
    labelling tools export) are mapped through ``labelset``'s colours, and its
    ``ignore_color`` (if set) to its ignore index. A colour not in the list is an error."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise ImageError(f'could not decode label image {path}')
    if lab.ndim == 2 or (lab.ndim == 3 and lab.shape[2] == 1):
        return read_label(path)
    if labelset is None:
        raise ImageError(f'label image {path} is in colour; give --label-set a class list '
                         'with colours (a YAML file or labelmap.txt) to map it to class ids')
    return labelset.colours_to_ids(cv2.cvtColor(lab[:, :, :3], cv2.COLOR_BGR2RGB), str(path))


def load_pairs(pairs: list[tuple[Path, Path]], labelset: LabelSet | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read all pairs into memory (CamVid train is about 190 MB)."""
    out = []
    for ip, lp in pairs:
        img, lab = read_image(ip), read_training_label(lp, labelset)
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


def paste_ids(spec: str, class_names) -> list[int]:
    """``'pole,pedestrian'`` -> those classes' ids in ``class_names``; a clear error for a
    name the label set does not have."""
    names = [n.strip() for n in spec.split(',') if n.strip()]
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ValueError(f'paste_classes: {", ".join(unknown)} not in the label set '
                         f'({", ".join(class_names)})')
    return [list(class_names).index(n) for n in names]


def batches(data, idx, cfg, rng, ignore, pad, targets=None, paste=()):
    """Augmented ``(images, labels, soft targets or None)`` batches of ``data[idx]``.

    With ``paste`` (class ids) and ``cfg.paste_prob``, each frame first gets, with that
    probability, those classes' pixels from another training frame (``paste_classes``); a
    donor drawn with another frame size is not pasted (CamVid's frames are all 360x480)."""
    for b in range(0, len(idx) - cfg.batch_size + 1, cfg.batch_size):
        imgs, labs, softs = [], [], []
        for i in idx[b:b + cfg.batch_size]:
            img, lab = data[i]
            soft = None if targets is None else targets[i]
            # No draws when pasting is off: runs without it stay as they were.
            if paste and cfg.paste_prob > 0 and len(data) > 1 and rng.random() < cfg.paste_prob:
                j = int(rng.integers(len(data) - 1))
                j += j >= i                           # another frame
                d_img, d_lab = data[j]
                if d_lab.shape == lab.shape:
                    pasted = paste_classes(img, lab, d_img, d_lab, paste, rng, soft=soft,
                                           donor_soft=None if soft is None else targets[j])
                    img, lab = pasted[:2]
                    soft = pasted[2] if soft is not None else None
            base = cfg.input_size[0] / lab.shape[0]
            args = (img, lab, rng, base, tuple(cfg.scale_range), tuple(cfg.crop_size), ignore,
                    pad)
            if soft is None:
                im, lb = augment(*args)
            else:
                im, lb, soft = augment(*args, soft=soft)
                softs.append(soft)
            imgs.append(im)
            labs.append(lb)
        x = normalise(np.stack(imgs), cfg.mean, cfg.std)
        t = (torch.from_numpy(np.ascontiguousarray(np.stack(softs).transpose(0, 3, 1, 2)))
             if softs else None)
        yield (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)),
               torch.from_numpy(np.stack(labs).astype(np.int64)), t)
