"""Backbone import for training: MobileNetV2 weights from Coral's int8 TFLite files
(BatchNorm folded into the convolutions), and BatchNorm statistics calibration."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..core.weights import WeightsError


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
