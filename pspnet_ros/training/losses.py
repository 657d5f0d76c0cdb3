"""Training losses: class weights, distillation, Lovasz-softmax, and the poly schedule."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_weights(labels: list[np.ndarray], num_classes: int, ignore: int, mode: str
                  ) -> torch.Tensor | None:
    """Loss weights per class: none, or the square root of median-frequency weighting
    (``sqrt(median(freq) / freq)``, a gentler SegNet weighting)."""
    if mode == 'none':
        return None
    if mode != 'sqrt-median':
        raise ValueError(f'class_weighting must be none or sqrt-median, got {mode!r}')
    counts = np.zeros(num_classes, np.float64)
    for lab in labels:
        v = lab[lab != ignore]
        counts += np.bincount(v[v < num_classes], minlength=num_classes)
    freq = counts / counts.sum()
    w = np.sqrt(np.median(freq[freq > 0]) / np.maximum(freq, 1e-12))
    return torch.tensor(w, dtype=torch.float32)


def poly_lr(base: float, it: int, total: int, power: float = 0.9) -> float:
    """The poly learning-rate schedule of PSPNet: ``base * (1 - it / total) ** power``."""
    return base * (1 - it / max(total, 1)) ** power


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                 ignore: int, temperature: float, correct: float = 0.0) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) of the softened class distributions (Hinton et al.
    2015), times T^2, averaged over the labelled pixels (padding and void carry nothing).

    ``correct`` > 0 corrects the teacher with the labels: at each labelled pixel where the
    teacher's most probable class is not the label, its target becomes
    ``(1 - correct) * teacher + correct * one_hot(label)`` (1: the label itself). Thin and rare
    objects the teacher misses then pull the student toward the label, not away from it.
    """
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, student.shape[-2:], mode='bilinear',
                                align_corners=True)
    valid = labels != ignore
    if not valid.any():
        return student.sum() * 0.0
    p = F.softmax(teacher / temperature, 1)
    if correct > 0:
        wrong = (valid & (teacher.argmax(1) != labels)).unsqueeze(1)
        one_hot = F.one_hot(labels.clamp(0, p.shape[1] - 1), p.shape[1]).permute(0, 3, 1, 2)
        p = torch.where(wrong, (1 - correct) * p + correct * one_hot.to(p.dtype), p)
    kl = (torch.xlogy(p, p) - p * F.log_softmax(student / temperature, 1)).sum(1)
    return kl[valid].mean() * temperature ** 2


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor, ignore: int) -> torch.Tensor:
    """The Lovasz-softmax loss (Berman et al., CVPR 2018) of ``(N, C, H, W)`` logits.

    For each class present in the labelled pixels of the batch, the pixels' errors
    ``|[label == c] - p_c|`` are sorted from the largest down and weighted by the increments of
    the Jaccard loss ``1 - |gt & pred| / |gt | pred|`` along that order: the tight convex
    extension of ``1 - IoU_c``. Its mean over the present classes is a differentiable
    surrogate of ``1 - mIoU`` over the batch, so a thin class counts as much as the road, as it
    does in mIoU. On hard (one-hot) predictions it equals ``1 - IoU`` exactly. Void pixels
    carry nothing; an all-void batch gives 0.
    """
    probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = labels.reshape(-1)
    valid = labels != ignore
    probs, labels = probs[valid], labels[valid]
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        n_fg = fg.sum()
        if n_fg == 0:
            continue
        errors, order = torch.sort((fg - probs[:, c]).abs(), descending=True)
        fg = fg[order]
        # The Jaccard loss of the k largest errors, for each k; its increments weight them.
        jaccard = 1 - (n_fg - fg.cumsum(0)) / (n_fg + (1 - fg).cumsum(0))
        weights = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, weights))
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()
