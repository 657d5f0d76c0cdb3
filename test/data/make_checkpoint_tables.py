"""Write the state-dict key/shape tables of the official PSPNet checkpoints.

Derived by hand from the public model definitions, independently of pspnet_ros' own code:
- hszhao/semseg model/pspnet.py + model/resnet.py (deep_base=True): ``layer0`` is
  Sequential(conv1 3->64 s2, bn1, relu, conv2 64->64, bn2, relu, conv3 64->128, bn3, relu,
  maxpool); Bottleneck(conv1 1x1, bn1, conv2 3x3, bn2, conv3 1x1 (x4), bn3, downsample=
  Sequential(conv 1x1, bn)); ``ppm.features.i`` = Sequential(pool, conv 1x1 2048->512, bn,
  relu); ``cls`` = Sequential(conv3x3 4096->512, bn, relu, dropout, conv1x1 512->classes with
  bias); ``aux`` = Sequential(conv3x3 1024->256, bn, relu, dropout, conv1x1 256->classes).
  Checkpoints are saved from DataParallel, so every key starts with ``module.``.
- mmsegmentation pspnet_r50-d8 / r101-d8: ResNetV1c (stem 3->32->32->64), keys under
  ``backbone.``; PSPHead ``decode_head.psp_modules.i.1.{conv,bn}``, ``bottleneck``,
  ``conv_seg``; FCNHead ``auxiliary_head.convs.0`` and ``conv_seg``.

Run ``python test/data/make_checkpoint_tables.py`` to regenerate the ``*.keys`` files.
"""
from pathlib import Path


def bn(prefix, c):
    return [(f'{prefix}.{s}', (c,)) for s in ('weight', 'bias', 'running_mean', 'running_var')] + [
        (f'{prefix}.num_batches_tracked', ())]


def deep_stem(prefix, widths):
    """Three conv3x3 + bn pairs (Sequential indices 0/1, 3/4, 6/7) from RGB through widths."""
    out, inplanes = [], 3
    for i, planes in enumerate(widths):
        out += [(f'{prefix}.{3 * i}.weight', (planes, inplanes, 3, 3))]
        out += bn(f'{prefix}.{3 * i + 1}', planes)
        inplanes = planes
    return out


def resnet(stem_keys, depth, inplanes, layer_prefix):
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    out = list(stem_keys)
    for li, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f'{layer_prefix}layer{li}.{b}'
            out += [(f'{p}.conv1.weight', (planes, inplanes, 1, 1))] + bn(f'{p}.bn1', planes)
            out += [(f'{p}.conv2.weight', (planes, planes, 3, 3))] + bn(f'{p}.bn2', planes)
            out += [(f'{p}.conv3.weight', (planes * 4, planes, 1, 1))] + bn(f'{p}.bn3', planes * 4)
            if b == 0:
                out += [(f'{p}.downsample.0.weight', (planes * 4, inplanes, 1, 1))]
                out += bn(f'{p}.downsample.1', planes * 4)
            inplanes = planes * 4
    return out


def semseg(depth, classes):
    out = resnet(deep_stem('layer0', (64, 64, 128)), depth, 128, '')
    for i in range(4):
        out += [(f'ppm.features.{i}.1.weight', (512, 2048, 1, 1))] + bn(f'ppm.features.{i}.2', 512)
    out += [('cls.0.weight', (512, 4096, 3, 3))] + bn('cls.1', 512)
    out += [('cls.4.weight', (classes, 512, 1, 1)), ('cls.4.bias', (classes,))]
    out += [('aux.0.weight', (256, 1024, 3, 3))] + bn('aux.1', 256)
    out += [('aux.4.weight', (classes, 256, 1, 1)), ('aux.4.bias', (classes,))]
    return [('module.' + k, s) for k, s in out]


def mmseg(depth, classes):
    out = resnet(deep_stem('backbone.stem', (32, 32, 64)), depth, 64, 'backbone.')
    for i in range(4):
        p = f'decode_head.psp_modules.{i}.1'
        out += [(f'{p}.conv.weight', (512, 2048, 1, 1))] + bn(f'{p}.bn', 512)
    out += [('decode_head.bottleneck.conv.weight', (512, 4096, 3, 3))]
    out += bn('decode_head.bottleneck.bn', 512)
    out += [('decode_head.conv_seg.weight', (classes, 512, 1, 1)),
            ('decode_head.conv_seg.bias', (classes,))]
    out += [('auxiliary_head.convs.0.conv.weight', (256, 1024, 3, 3))]
    out += bn('auxiliary_head.convs.0.bn', 256)
    out += [('auxiliary_head.conv_seg.weight', (classes, 256, 1, 1)),
            ('auxiliary_head.conv_seg.bias', (classes,))]
    return out


TABLES = {
    'semseg_pspnet50_ade20k': lambda: semseg(50, 150),
    'semseg_pspnet101_ade20k': lambda: semseg(101, 150),
    'semseg_pspnet50_voc': lambda: semseg(50, 21),
    'semseg_pspnet101_voc': lambda: semseg(101, 21),
    'semseg_pspnet50_cityscapes': lambda: semseg(50, 19),
    'semseg_pspnet101_cityscapes': lambda: semseg(101, 19),
    'mmseg_pspnet_r50_d8_cityscapes': lambda: mmseg(50, 19),
    'mmseg_pspnet_r101_d8_ade20k': lambda: mmseg(101, 150),
}

if __name__ == '__main__':
    here = Path(__file__).parent
    for name, fn in TABLES.items():
        lines = [f'{k} {"x".join(map(str, s)) or "scalar"}' for k, s in fn()]
        (here / f'{name}.keys').write_text('\n'.join(lines) + '\n')
        print(name, len(lines))
