"""The network spec: which PSPNet a model card or a training run describes, built in one place."""
from __future__ import annotations

from dataclasses import dataclass, fields

# Fields that model cards and training configs share, with the same names and defaults.
NETWORK_FIELDS = ('architecture', 'head_channels', 'output_stride', 'decoder_channels',
                  'decoder_stride')


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture and widths of a PSPNet; ``head_channels`` 512 is the paper's width (the
    official checkpoints' too); the shipped model sets 128."""

    num_classes: int
    architecture: str = 'pspnet_mobilenetv2'
    head_channels: int = 512
    output_stride: int = 8
    decoder_channels: int = 0
    decoder_stride: int = 8

    @classmethod
    def of(cls, source, num_classes: int) -> 'NetworkSpec':
        """The spec of anything with the ``NETWORK_FIELDS`` attributes (a ``ModelCard``, a
        ``TrainConfig``) for ``num_classes`` classes."""
        return cls(num_classes, **{name: getattr(source, name) for name in NETWORK_FIELDS})

    def as_fields(self) -> dict:
        """The ``NETWORK_FIELDS`` as a dict (for a model card)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in NETWORK_FIELDS}


def network_default(name: str):
    """The default of one ``NETWORK_FIELDS`` entry (``NetworkFields`` uses these)."""
    return {f.name: f.default for f in fields(NetworkSpec)}[name]


@dataclass(kw_only=True)
class NetworkFields:
    """The ``NETWORK_FIELDS`` as keyword-only dataclass fields with ``NetworkSpec``'s defaults:
    ``ModelCard`` and ``TrainConfig`` inherit them, so both declare the network once."""

    architecture: str = network_default('architecture')
    head_channels: int = network_default('head_channels')
    output_stride: int = network_default('output_stride')
    decoder_channels: int = network_default('decoder_channels')
    decoder_stride: int = network_default('decoder_stride')


def off_grid(size, stride: int) -> str | None:
    """None when each side of ``size`` (height, width) is ``stride * k + 1``: the network's
    feature corners then sit on the input's corners, as its aligned-corner resizes assume.
    Otherwise one line naming the nearest sizes that are. Off the grid the prediction is
    shifted by up to a stride at the far edges: the shipped weights at output stride 16 scored
    0.622 val mIoU at 384x480 and 0.681 at 369x465 (2026-12-07)."""
    bad = [int(v) for v in size if (int(v) - 1) % stride]
    if not bad:
        return None
    below = [(v - 1) // stride * stride + 1 for v in bad]
    near = ', '.join(f'{v}: {b} or {b + stride}' for v, b in zip(bad, below))
    return (f'{size[0]}x{size[1]} is off the output-stride-{stride} grid (sides {stride}k+1 keep '
            f'the features on the input corners; nearest {near}); accuracy suffers')


def build_network(spec: NetworkSpec, aux: bool = False):
    """The ``PSPNet`` of ``spec`` (untrained); ``aux`` adds the auxiliary head for training."""
    from .model import PSPNet
    return PSPNet(spec.architecture, spec.num_classes, head_channels=spec.head_channels,
                  aux=aux, output_stride=spec.output_stride,
                  decoder_channels=spec.decoder_channels, decoder_stride=spec.decoder_stride)
