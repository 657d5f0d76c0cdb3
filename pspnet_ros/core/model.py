"""PSPNet (Zhao et al. 2017) with dilated ResNet and MobileNetV2 backbones.

Module names follow hszhao/semseg (``layer0``..``layer4``, ``ppm``, ``cls``, ``aux``) so the
official PSPNet50/101 checkpoints load with strict key checking. Every block owns its ReLU
modules and all resizes use ``align_corners=True`` so the graph quantises cleanly for the
Edge TPU.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

ARCHITECTURES = ('pspnet_resnet18', 'pspnet_resnet50', 'pspnet_resnet101', 'pspnet_mobilenetv2')


class Bottleneck(nn.Module):
    """ResNet bottleneck (stride on the 3x3 conv, as in ResNet v1.5 / semseg)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class BasicBlock(nn.Module):
    """ResNet basic block (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _res_layer(block: type, inplanes: int, planes: int, blocks: int, stride: int,
               dilation: int) -> tuple[nn.Sequential, int]:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion))
    # Every block of a dilated stage, the first included, uses the stage's full dilation, as
    # hszhao/semseg does (some recipes give the first block half of it; we do not).
    layers = [block(inplanes, planes, stride, dilation, downsample)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


def resnet_layers(depth: int, stem: Sequence[int] = (64, 64, 128)
                  ) -> tuple[list[nn.Module], int, int]:
    """Build the dilated (output stride 8) ResNet stages ``layer0``..``layer4``.

    Args:
        depth: 18, 50 or 101.
        stem: output channels of the three 3x3 stem convolutions (deep stem). semseg uses
            (64, 64, 128); mmsegmentation's ResNetV1c uses (32, 32, 64).

    Returns:
        The five stages, the channel count of ``layer3`` (aux input) and of ``layer4``.
    """
    spec = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3)),
            101: (Bottleneck, (3, 4, 23, 3))}
    if depth not in spec:
        raise ValueError(f'unsupported ResNet depth {depth}; choose one of {sorted(spec)}')
    block, counts = spec[depth]
    layer0 = nn.Sequential(*_conv_bn_relu(3, stem[0], 2), *_conv_bn_relu(stem[0], stem[1]),
                           *_conv_bn_relu(stem[1], stem[2]),
                           nn.MaxPool2d(3, stride=2, padding=1))
    inplanes = stem[2]
    layer1, inplanes = _res_layer(block, inplanes, 64, counts[0], 1, 1)
    layer2, inplanes = _res_layer(block, inplanes, 128, counts[1], 2, 1)
    layer3, inplanes = _res_layer(block, inplanes, 256, counts[2], 1, 2)
    aux_channels = inplanes
    layer4, inplanes = _res_layer(block, inplanes, 512, counts[3], 1, 4)
    return [layer0, layer1, layer2, layer3, layer4], aux_channels, inplanes


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (optionally dilated), 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride=stride, padding=dilation,
                             dilation=dilation, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


# (expand, channels, repeats, stride) per MobileNetV2 stage, Sandler et al. 2018, table 2.
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


OUTPUT_STRIDES = (8, 16)
DECODER_STRIDES = (4, 8)   # the skip decoder reads layer1 (stride 4) or layer2 (stride 8)


def mobilenetv2_layers(output_stride: int = 8) -> tuple[list[nn.Module], int, int]:
    """Dilated MobileNetV2 split into ``layer0``..``layer4``.

    layer0: stem + 16-channel block (stride 2); layer1: 24 channels (stride 4);
    layer2: 32 channels (stride 8); layer3: 64 and 96 channels; layer4: 160 and 320 channels.
    Output stride 8: layer3 dilation 2, layer4 dilation 4. Output stride 16: layer3 keeps
    MobileNetV2's stride 2 (stride 16), layer4 dilation 2. The weights are the same either
    way, so one checkpoint runs at both. The 1280-channel classifier conv is dropped.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f'output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}')
    blocks: list[nn.Module] = []
    cin = 32
    if output_stride == 8:
        strided, dilation_for = 3, {3: 2, 4: 2, 5: 4, 6: 4}
    else:
        strided, dilation_for = 4, {5: 2, 6: 2}
    for i, (t, c, n, s) in enumerate(MOBILENETV2_STAGES):
        d = dilation_for.get(i, 1)
        stride = s if i < strided else 1
        for j in range(n):
            # A stage entered at stride 1 keeps the previous dilation on its first block.
            first_d = dilation_for.get(i - 1, 1) if (j == 0 and i in dilation_for) else d
            blocks.append(InvertedResidual(cin, c, stride if j == 0 else 1, t,
                                           first_d if j == 0 else d))
            cin = c
    stem = [nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
            nn.ReLU6(inplace=True)]
    layer0 = nn.Sequential(*stem, blocks[0])
    layer1 = nn.Sequential(*blocks[1:3])
    layer2 = nn.Sequential(*blocks[3:6])
    layer3 = nn.Sequential(*blocks[6:13])
    layer4 = nn.Sequential(*blocks[13:17])
    return [layer0, layer1, layer2, layer3, layer4], 96, 320


class PPM(nn.Module):
    """Pyramid Pooling Module: pool to each bin, 1x1 reduce, upsample, concat with input."""

    def __init__(self, in_dim: int, reduction_dim: int, bins: Sequence[int]):
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_dim, reduction_dim, 1, bias=False),
                          nn.BatchNorm2d(reduction_dim), nn.ReLU(inplace=True))
            for b in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        # PyTorch's channels_last adaptive-average-pool CUDA kernel is very slow on large
        # maps (2.9 ms per bin for 2048x64x128 fp16 on an H200, 75% of the network's time);
        # pooling an NCHW copy costs microseconds. CPU tensors and exported graphs are as is.
        nhwc_cuda = x.is_cuda and not x.is_contiguous()
        src = x.contiguous() if nhwc_cuda else x
        out = [x]
        for f in self.features:
            pool, *rest = f          # no Sequential slicing: this runs every frame
            y = pool(src)
            if nhwc_cuda:
                y = y.contiguous(memory_format=torch.channels_last)
            for layer in rest:
                y = layer(y)
            out.append(F.interpolate(y, size, mode='bilinear', align_corners=True))
        return torch.cat(out, 1)


def _head(cin: int, mid: int, classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid),
                         nn.ReLU(inplace=True), nn.Dropout2d(p=dropout),
                         nn.Conv2d(mid, classes, 1))


class SkipDecoder(nn.Module):
    """Refine the head's coarse logits with stride-8 (layer2, 32 channels) or stride-4
    (layer1, 24 channels) backbone features.

    The head's last hidden features are projected (1x1 conv) and upsampled to the skip
    features' grid, added to a 3x3 conv of them, and a small depthwise-separable block
    predicts a correction that is added to the upsampled coarse logits. The correction's last
    conv starts at zero, so a decoder added to a trained network starts from that network's
    output exactly. This is the DeepLabv3+ idea (Chen et al. 2018); its stride-4 form is the
    one that can draw objects a few pixels wide (poles). Adding the two branches instead of
    concatenating them keeps the int8 graph free of requantisation ops: a concatenation needs
    one scale for all of its inputs, an ADD rescales each input itself (Edge TPU included).
    """

    def __init__(self, head_channels: int, skip_in: int, channels: int, classes: int):
        super().__init__()
        self.project = nn.Conv2d(head_channels, channels, 1)
        self.skip = nn.Sequential(nn.Conv2d(skip_in, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.relu = nn.ReLU(inplace=True)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), nn.Conv2d(channels, classes, 1))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def forward(self, hidden: torch.Tensor, logits: torch.Tensor,
                low: torch.Tensor) -> torch.Tensor:
        size = low.shape[-2:]
        hidden = self.project(hidden)
        if hidden.shape[-2:] != size:
            hidden = F.interpolate(hidden, size, mode='bilinear', align_corners=True)
            logits = F.interpolate(logits, size, mode='bilinear', align_corners=True)
        return logits + self.fuse(self.relu(hidden + self.skip(low)))


class PSPNet(nn.Module):
    """Pyramid Scene Parsing Network.

    Args:
        arch: one of ``ARCHITECTURES``.
        num_classes: number of output classes.
        bins: pyramid pooling bin sizes.
        head_channels: channels of the 3x3 conv before the classifier (512 in the paper).
        aux: build the auxiliary head on ``layer3`` (training; official checkpoints have it).
        stem: ResNet deep-stem widths, see ``resnet_layers``.
        dropout: dropout before both classifiers.
        output_stride: 8 (the paper's) or 16 (MobileNetV2 only: about half the compute at
            the same input size, which buys a larger input).
        decoder_channels: when > 0, a ``SkipDecoder`` of that width refines the logits with
            backbone features (MobileNetV2 only); 0 (default) is plain PSPNet.
        decoder_stride: the decoder's skip: 8 (layer2, 32 channels) or 4 (layer1, 24
            channels; its logits come out at stride 4).
    """

    def __init__(self, arch: str = 'pspnet_resnet50', num_classes: int = 150,
                 bins: Sequence[int] = (1, 2, 3, 6), head_channels: int = 512,
                 aux: bool = True, stem: Sequence[int] = (64, 64, 128),
                 dropout: float = 0.1, aux_channels: int | None = None,
                 output_stride: int = 8, decoder_channels: int = 0, decoder_stride: int = 8):
        super().__init__()
        if arch.startswith('pspnet_resnet'):
            if output_stride != 8 or decoder_channels:
                raise ValueError('output_stride 16 and decoder_channels are implemented for '
                                 f'pspnet_mobilenetv2 only, not {arch}')
            layers, aux_in, fea_dim = resnet_layers(int(arch[len('pspnet_resnet'):]), stem)
        elif arch == 'pspnet_mobilenetv2':
            layers, aux_in, fea_dim = mobilenetv2_layers(output_stride)
        else:
            raise ValueError(f'unknown architecture {arch!r}; choose one of {ARCHITECTURES}')
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.arch = arch
        self.num_classes = num_classes
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.ppm = PPM(fea_dim, fea_dim // len(bins), bins)
        self.cls = _head(fea_dim * 2, head_channels, num_classes, dropout)
        if aux_channels is None:
            aux_channels = head_channels // 2
        self.aux = _head(aux_in, aux_channels, num_classes, dropout) if aux else None
        if decoder_channels < 0:
            raise ValueError(f'decoder_channels must be >= 0, got {decoder_channels}')
        if decoder_stride not in DECODER_STRIDES:
            raise ValueError(f'decoder_stride must be one of {DECODER_STRIDES}, '
                             f'got {decoder_stride}')
        if decoder_stride != 8 and not decoder_channels:
            raise ValueError(f'decoder_stride {decoder_stride} needs a decoder '
                             '(decoder_channels > 0)')
        self.decoder_stride = decoder_stride
        self.decoder = (SkipDecoder(head_channels, 24 if decoder_stride == 4 else 32,
                                    decoder_channels, num_classes)
                        if decoder_channels else None)

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at stride 8 (stride 16 without a decoder at output stride 16; the decoder's
        stride with one), and layer3."""
        low4 = self.layer1(self.layer0(x))
        low = self.layer2(low4)
        x_aux = self.layer3(low)
        if self.decoder is None:
            return self.cls(self.ppm(self.layer4(x_aux))), x_aux
        hidden = self.ppm(self.layer4(x_aux))
        *body, classifier = self.cls  # no Sequential slicing: this runs every frame
        for layer in body:
            hidden = layer(hidden)
        skip = low4 if self.decoder_stride == 4 else low
        return self.decoder(hidden, classifier(hidden), skip), x_aux

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        """Return logits at input resolution (and aux logits when ``return_aux``)."""
        size = x.shape[-2:]
        x, x_aux = self._logits(x)
        x = F.interpolate(x, size, mode='bilinear', align_corners=True)
        if return_aux:
            if self.aux is None:
                raise RuntimeError('this model was built without the auxiliary head')
            a = F.interpolate(self.aux(x_aux), size, mode='bilinear', align_corners=True)
            return x, a
        return x

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at feature resolution (stride 8, or 16 for output stride 16 without a
        decoder, or the decoder's stride); upsampling is left to the caller."""
        return self._logits(x)[0]


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm folded into the convolution before it.

    Inference only (uses the running statistics): removes one memory-bound pass per
    convolution, as TensorRT and the TFLite converter do. Pairs are found in ``Sequential``
    containers (consecutive Conv2d, BatchNorm2d) and in blocks with ``convN``/``bnN``
    attributes; the BatchNorm is replaced by ``Identity`` so state-dict layouts differ.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = nn.Identity()
        for i in range(1, 4):
            conv, bn = getattr(module, f'conv{i}', None), getattr(module, f'bn{i}', None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f'conv{i}', fuse_conv_bn_eval(conv, bn))
                setattr(module, f'bn{i}', nn.Identity())
    return fused
