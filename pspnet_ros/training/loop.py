"""The training loop of ``pspnet-ros train``: cross-entropy with an ignore index plus PSPNet's
auxiliary loss (weight 0.4), optionally distillation, the Lovasz-softmax loss and copy-paste
augmentation; SGD with poly decay (head at 10x the backbone rate, as in the paper); resumable,
deterministic for a given seed; writes the weights and a model card."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict
import json
import math
from pathlib import Path
import pickle
import shlex
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..core.card import ModelCard
from ..core.data import find_pairs
from ..core.labels import get_label_set, LABEL_SETS
from ..core.network import build_network, NetworkSpec, off_grid
from ..core.segmenter import Segmenter
from ..core.weights import save_safetensors
from .config import TrainConfig
from .convert import calibrate_batchnorm
from .data import batches, load_pairs, paste_ids
from .init import build_for_training, with_init_network
from .losses import class_weights, distill_loss, lovasz_softmax, poly_lr
from .teacher import load_teacher, teacher_targets
from .validation import evaluate_pairs


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


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True,
          recipe: tuple[str, dict] | None = None) -> dict:
    """Run training; returns the final metrics. Writes ``out/name.safetensors`` + ``.yaml``.

    ``recipe`` (the file and the fields it set) makes the card's ``reproduce`` name the
    recipe and only the options that differ from it.
    """
    from tqdm import tqdm
    cfg.validate()
    cfg, _init = with_init_network(cfg)
    for name in ('input_size', 'crop_size'):       # the sizes and stride the run will use
        note = off_grid(getattr(cfg, name), cfg.output_stride)
        if note:
            print(f'warning: {name} {note}', flush=True)
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
    data = load_pairs(pairs, labelset)
    weights = class_weights([lab for _, lab in data], labelset.num_classes, ignore,
                            cfg.class_weighting)
    paste = paste_ids(cfg.paste_classes, labelset.classes) if cfg.paste_prob > 0 else []
    model = build_for_training(cfg, labelset.num_classes, _init)
    # A teacher with --distill-weight 0 would only cost time: it is not loaded then.
    teacher, targets = None, None
    if cfg.teacher and cfg.distill_weight > 0:
        if cfg.teacher_sizes:
            targets = teacher_targets(cfg, data, [p.name for p, _ in pairs],
                                      labelset.num_classes, device,
                                      out / 'teacher_targets.safetensors')
        else:
            teacher = load_teacher(cfg, labelset.num_classes, device)
    reproduce = _reproduce(cfg, recipe)
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
        calib = [x for x, _, _ in batches(data, idx, cfg, rng, ignore, pad)]
        bns = [m for n, m in model.named_modules()
               if n.startswith('layer') and isinstance(m, torch.nn.BatchNorm2d)]
        calibrate_batchnorm(model, calib, bns)
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
        bar = tqdm(batches(data, idx, cfg, rng, ignore, pad, targets, paste), total=per_epoch,
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
            loss = F.cross_entropy(main, y, weight=weights, ignore_index=ignore)
            loss = loss + cfg.aux_weight * F.cross_entropy(aux, y, weight=weights,
                                                           ignore_index=ignore)
            if teacher is not None:
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16,
                                                     enabled=amp):
                    t_logits = teacher.forward_logits(x)
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
            card = _write_model(model, cfg, out, reproduce)
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
        card = _write_model(model, cfg, out, reproduce)
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
                    'measured_with': 'pspnet_ros.training.validation.evaluate_pairs (torch, cpu)'}}


def _copy_model(card: ModelCard, dest: Path) -> None:
    """Write ``card`` and its weights into ``dest`` (replacing what is there)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(card.weights_path, dest / card.weights)
    dataclasses.replace(card).save(dest / f'{card.name}.yaml')


def _reproduce(cfg: TrainConfig, recipe: tuple[str, dict] | None) -> str:
    """The command that reproduces ``cfg``: the recipe file plus the options that differ from
    it, or every option that differs from its default; outputs go to train_out/ (never over
    the shipped models/ files) unless --out says."""
    base = asdict(TrainConfig.defaults())
    if recipe is not None:
        base.update(recipe[1])

    def flag(k, v):
        if isinstance(v, bool):
            return f'--{k.replace("_", "-")}' if v else ''
        vals = v if isinstance(v, list) else [v]
        return f'--{k.replace("_", "-")} ' + ' '.join(shlex.quote(str(x)) for x in vals)
    flags = ' '.join(filter(None, (flag(k, v) for k, v in asdict(cfg).items()
                                   if k not in ('out', 'stop_after') and v != base.get(k))))
    head = f'pspnet-ros train --config {shlex.quote(recipe[0])}' if recipe else \
        'pspnet-ros train'
    return ' '.join(filter(None, (head, flags, '--out train_out')))


def _card_label_set(name: str):
    """What a card says of the label set: a built-in set's name, or the class list itself
    (names, colours, ignore index) of a set read from a file, so consumers need no file."""
    return name if name in LABEL_SETS else get_label_set(name).to_dict()


def _write_model(model, cfg: TrainConfig, out: Path, reproduce: str) -> ModelCard:
    weights = out / f'{cfg.name}.safetensors'
    model.eval()
    state_model = build_network(NetworkSpec.of(cfg, model.num_classes), aux=False)
    state_model.load_state_dict({k: v for k, v in model.state_dict().items()
                                 if not k.startswith('aux.')})
    save_safetensors(state_model, weights, {'architecture': cfg.architecture})
    card = ModelCard(
        name=cfg.name, weights=weights.name, label_set=_card_label_set(cfg.label_set),
        num_classes=model.num_classes, input_size=list(cfg.input_size),
        **NetworkSpec.of(cfg, model.num_classes).as_fields(), mean=list(cfg.mean),
        std=list(cfg.std), licence=cfg.licence, training_data=cfg.training_data, metrics={},
        reproduce=reproduce)
    card.save(out / f'{cfg.name}.yaml')
    return card
