"""Distillation teachers: a frozen model card, and its cached whole-frame targets."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..core.card import ModelCard
from ..core.labels import get_label_set
from ..core.model import PSPNet
from ..core.preprocess import mean_over_sizes, mirror_mean, prepare
from .config import teacher_sizes, TrainConfig


def load_teacher(cfg: TrainConfig, num_classes: int, device: torch.device):
    """The frozen torch model of ``cfg.teacher`` (a model card), checked against the student:
    same classes and the same input normalisation, since it sees the student's batches."""
    from ..core.backends.torch_backend import build_model
    from ..core.model import fuse_conv_bn
    card = ModelCard.load(cfg.teacher)
    if card.format != 'safetensors':
        raise ValueError(f'--teacher {cfg.teacher}: a PyTorch (safetensors) card is needed, '
                         f'this one has format {card.format!r}')
    theirs, ours = get_label_set(card.label_set), get_label_set(cfg.label_set)
    if card.num_classes != num_classes or theirs.classes != ours.classes:
        raise ValueError(f'--teacher {cfg.teacher}: {card.num_classes} classes of '
                         f'{theirs.name!r}, the student has {num_classes} of {ours.name!r}')
    if list(card.mean) != list(cfg.mean) or list(card.std) != list(cfg.std):
        raise ValueError(f'--teacher {cfg.teacher}: mean/std {card.mean}/{card.std} differ from '
                         f"the student's {cfg.mean}/{cfg.std}")
    teacher = fuse_conv_bn(build_model(card)).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def frame_input(img: np.ndarray, size, mean, std) -> np.ndarray:
    """The ``(1, 3, H, W)`` input of one RGB uint8 frame at ``size``, stretched and
    normalised exactly as the ``Segmenter`` prepares it (``core.preprocess``)."""
    return prepare(img, size, mean, std, 'stretch', 'NCHW')[0]


def frame_probabilities(model: PSPNet, img: np.ndarray, sizes: list[tuple[int, int]],
                        mean, std, device: torch.device, amp: bool = False) -> torch.Tensor:
    """``(C, H, W)`` class probabilities of ``model`` for one RGB uint8 frame: the mean of its
    softmax over the input ``sizes`` (the frame stretched to each, as the ``Segmenter``
    does) and over the frame and its mirror image, upsampled to the frame's size."""
    h, w = img.shape[:2]
    per_size = []
    for size in sizes:
        x = torch.from_numpy(frame_input(img, size, mean, std))[0]
        x = torch.stack([x, x.flip(-1)]).to(device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model.forward_logits(x)
        p = F.interpolate(logits.float(), (h, w), mode='bilinear',
                          align_corners=True).softmax(1)
        per_size.append(mirror_mean(p[0], p[1], width_axis=-1))
    return mean_over_sizes(per_size)


def teacher_targets(cfg: TrainConfig, data: list, names: list[str], num_classes: int,
                    device: torch.device, cache: Path) -> list[np.ndarray]:
    """The teacher's class probabilities for each whole training frame, ``(H, W, C)``
    float16: the mean of its softmax at each of ``cfg.teacher_sizes`` (the frame resized as
    the ``Segmenter`` does) and of its mirror image, upsampled to the frame.

    Computed once and kept in ``cache`` (safetensors), reused while the teacher's weights,
    the sizes and the training frames are the same; each crop's targets then follow its
    augmentation (``augment(..., soft=)``), so the teacher costs nothing per step.
    """
    from safetensors.numpy import load_file, save_file
    teacher = load_teacher(cfg, num_classes, device)
    weights = ModelCard.load(cfg.teacher).weights_path
    sizes = teacher_sizes(cfg.teacher_sizes)
    key = json.dumps({'teacher_sha256': hashlib.sha256(weights.read_bytes()).hexdigest(),
                      'sizes': sizes, 'mean': list(cfg.mean),
                      'std': list(cfg.std), 'frames': names})
    if cache.is_file():
        from safetensors import safe_open
        with safe_open(str(cache), 'np') as f:
            same = (f.metadata() or {}).get('key') == key
        if same:
            loaded = load_file(str(cache))
            print(f'teacher targets: {len(names)} frames from {cache}', flush=True)
            return [loaded[str(i)] for i in range(len(names))]
    amp = device.type == 'cuda' and cfg.amp == 'auto'
    out, t0 = [], time.time()
    for img, _ in data:
        p = frame_probabilities(teacher, img, sizes, cfg.mean, cfg.std, device, amp)
        out.append(np.ascontiguousarray(p.permute(1, 2, 0).cpu().numpy(), np.float16))
    save_file({str(i): t for i, t in enumerate(out)}, str(cache), metadata={'key': key})
    print(f'teacher targets: {len(out)} frames at {cfg.teacher_sizes} with flips in '
          f'{time.time() - t0:.0f} s, kept in {cache}', flush=True)
    return out
