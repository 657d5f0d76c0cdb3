"""Safe checkpoint loading, key maps for third-party PSPNet checkpoints, and backbone import.

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read with safetensors and
``.pth``/``.pt`` files with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn


class WeightsError(RuntimeError):
    """A weights file is missing, unsafe, corrupt or does not match the model."""


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pth``/``.pt`` checkpoint, safely.

    Checkpoints that wrap the weights (``{'state_dict': ...}``, ``{'model': ...}``) and
    DataParallel ``module.`` prefixes are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f'weights file not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError, OSError, ... depending on the damage
            raise WeightsError(f'{path} is not a valid safetensors file: {exc}') from exc
    try:
        obj = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsError(
            f'{path} could not be loaded as plain tensors (weights_only=True refuses pickled '
            f'code and fails on corrupt files): {type(exc).__name__}: {str(exc)[:300]}'
        ) from exc
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f'{path} does not hold a state dict of tensors')
    if obj and all(k.startswith('module.') for k in obj):
        obj = {k[len('module.'):]: v for k, v in obj.items()}
    return obj


# mmsegmentation PSPNet (ResNetV1c backbone, PSPHead, FCNHead aux) -> semseg-style names.
MMSEG_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r'^backbone\.stem\.', 'layer0.'),
    (r'^backbone\.(layer[1-4])\.', r'\1.'),
    (r'^decode_head\.psp_modules\.(\d+)\.1\.conv\.', r'ppm.features.\1.1.'),
    (r'^decode_head\.psp_modules\.(\d+)\.1\.bn\.', r'ppm.features.\1.2.'),
    (r'^decode_head\.bottleneck\.conv\.', 'cls.0.'),
    (r'^decode_head\.bottleneck\.bn\.', 'cls.1.'),
    (r'^decode_head\.conv_seg\.', 'cls.4.'),
    (r'^auxiliary_head\.convs\.0\.conv\.', 'aux.0.'),
    (r'^auxiliary_head\.convs\.0\.bn\.', 'aux.1.'),
    (r'^auxiliary_head\.conv_seg\.', 'aux.4.'),
)


def convert_mmseg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an mmsegmentation PSPNet state dict to this package's module names."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in MMSEG_KEY_MAP:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        else:
            raise WeightsError(f'mmsegmentation key {key!r} has no mapping; is this a PSPNet '
                               'with a ResNetV1c backbone?')
        out[new] = value
    return out


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """Return ``'mmseg'`` or ``'semseg'`` (this package's own layout) for a state dict."""
    if any(k.startswith(('backbone.', 'decode_head.')) for k in state):
        return 'mmseg'
    return 'semseg'


def load_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Load ``state`` into ``model`` with exact key and shape checks and a readable report.

    BatchNorm ``num_batches_tracked`` counters are the only keys allowed to be absent
    (checkpoints from PyTorch < 0.4.1 lack them; they do not affect inference).
    """
    if detect_layout(state) == 'mmseg':
        state = convert_mmseg(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    wrong = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
             for k in state if k in own and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or wrong):
        def head(items):
            return ', '.join(items[:5]) + (f' (+{len(items) - 5} more)' if len(items) > 5 else '')
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing: {head(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected: {head(unexpected)}')
        if wrong:
            parts.append(f'{len(wrong)} with wrong shape: {head(wrong)}')
        raise WeightsError('checkpoint does not match the model; ' + '; '.join(parts))
    state = {k: v for k, v in state.items() if k in own and state[k].shape == own[k].shape}
    model.load_state_dict(state, strict=False)


def save_safetensors(model: nn.Module, path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> None:
    """Save a model's tensors as safetensors (contiguous copies, no pickling)."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    # safetensors creates the file 0600; weights are meant to be shared like any output file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# ---------------------------------------------------------------------------------------------
# MobileNetV2 ImageNet weights from Coral's int8 TFLite file (BatchNorm folded into the convs).

def _tflite_tensors(path: str) -> dict[str, np.ndarray]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise WeightsError('importing TFLite weights needs ai-edge-litert: '
                           'pip install ai-edge-litert') from exc
    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    out = {}
    for d in interp.get_tensor_details():
        if d['dtype'] not in (np.uint8, np.int8, np.int32) or d['name'] == 'input':
            continue
        try:
            q = interp.get_tensor(d['index'])
        except ValueError:
            continue
        qp = d['quantization_parameters']
        if len(qp['scales']) != 1:
            continue
        out[d['name']] = (q.astype(np.float32) - qp['zero_points'][0]) * qp['scales'][0]
    return out


def _find(tensors: dict[str, np.ndarray], prefix: str, ndim: int) -> np.ndarray:
    hits = [v for k, v in tensors.items() if k.startswith(prefix) and v.ndim == ndim]
    if len(hits) != 1:
        raise WeightsError(f'expected one {ndim}-D tensor named {prefix}..., found {len(hits)}')
    return hits[0]


def import_mobilenetv2_tflite(model: nn.Module, path: str | os.PathLike) -> int:
    """Copy MobileNetV2 backbone weights from a quantised TFLite file into ``model``.

    Works for Coral's ImageNet classifier (``mobilenet_v2_1.0_224_quant.tflite``) and for the
    segmentation-trained backbone of its DeepLabv3 (``deeplabv3_mnv2_pascal_quant.tflite``,
    PASCAL VOC; its tensor names join several names with ``;``, matched by prefix). The
    DeepLab file runs the last stage atrous at output stride 16; the weights do not depend on
    the dilation, so they load unchanged into this output-stride-8 backbone.

    The TFLite file has BatchNorm folded into each conv (weight and bias). We put the folded
    weight into the conv and the bias into the following BatchNorm's ``bias`` with identity
    statistics, so in eval mode the backbone computes the TFLite network's function.
    ``calibrate_batchnorm`` then gives the BatchNorms real statistics for fine-tuning.

    Returns:
        The number of conv layers imported: 51 for MobileNetV2 1.0 (the stem, 2 in block 0
        and 3 in each of the other 16 blocks).
    """
    tensors = _tflite_tensors(str(path))
    convs = _mobilenetv2_convs(model)
    names = ['MobilenetV2/Conv', 'MobilenetV2/expanded_conv/depthwise',
             'MobilenetV2/expanded_conv/project']
    for b in range(1, 17):
        names += [f'MobilenetV2/expanded_conv_{b}/{p}' for p in ('expand', 'depthwise', 'project')]
    if len(names) != len(convs):
        raise WeightsError(f'model has {len(convs)} backbone convs, TFLite file {len(names)}')
    for name, (conv, bn) in zip(names, convs):
        kind = 'depthwise_Fold' if name.endswith('depthwise') else 'Conv2D_Fold'
        w = _find(tensors, f'{name}/{kind}', 4)
        if name.endswith('depthwise'):
            w = w.transpose(3, 0, 1, 2)      # 1,kh,kw,C -> C,1,kh,kw
        else:
            w = w.transpose(0, 3, 1, 2)      # O,kh,kw,I -> O,I,kh,kw
        if name.endswith('project'):
            b = _find(tensors, f'{name}/add_fold', 1)
        else:
            b = _find(tensors, f'{name}/BatchNorm_Fold/bias', 1)
        if tuple(w.shape) != tuple(conv.weight.shape) or b.shape[0] != bn.num_features:
            raise WeightsError(f'{name}: TFLite shape {w.shape} does not match '
                               f'{tuple(conv.weight.shape)}')
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
    return len(convs)


def _mobilenetv2_convs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    mods = [m for name, m in model.named_modules()
            if name.split('.')[0] in ('layer0', 'layer1', 'layer2', 'layer3', 'layer4')
            and isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    return [(mods[i], mods[i + 1]) for i in range(0, len(mods), 2)]


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches, modules: list[nn.BatchNorm2d]) -> None:
    """Give identity-initialised BatchNorms the statistics of their inputs on real data.

    Each BatchNorm currently computes ``x + beta``. We measure the mean ``mu`` and variance
    ``var`` of its input over ``batches`` (model in eval mode, so the measured network is the
    original one), then set ``running_mean=mu``, ``running_var=var``, ``weight=sqrt(var+eps)``
    and ``bias=beta+mu``: the eval-mode function is unchanged, and train-mode batch statistics
    now start close to the running ones, so fine-tuning does not begin with a shock.
    """
    sums: dict[nn.Module, list] = {m: [0.0, 0.0, 0] for m in modules}

    def hook(mod, inputs):
        x = inputs[0].double()
        s = sums[mod]
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
        s[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for m, (s1, s2, n) in sums.items():
        if n == 0:
            continue
        mu = s1 / n
        var = (s2 / n - mu * mu).clamp_min(1e-6)
        m.running_mean.copy_(mu.float())
        m.running_var.copy_(var.float())
        m.bias.add_(mu.float())
        m.weight.copy_(torch.sqrt(var + m.eps).float())
