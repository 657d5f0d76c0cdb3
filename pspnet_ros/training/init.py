"""Where training starts: the network of an ``--init`` model card, loaded tensor by tensor with
every mismatch an error, and the layers that start fresh named."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.card import ModelCard, ModelCardError
from ..core.network import build_network, network_default, NETWORK_FIELDS, NetworkSpec
from ..core.weights import (convert_mmseg, detect_layout, load_state_dict, mismatch_text,
                            WeightsError)
from .config import TrainConfig

# The auxiliary head trains beside the network but is not saved with a model: it starts fresh.
AUX_PREFIX = 'aux.'


def init_card(init: str) -> ModelCard | None:
    """The model card ``--init`` names: the card itself (``.yaml``), or the card next to the
    weights file it names (a card in the same folder whose ``weights`` is that file); None for
    weights without a card and for ``tflite:`` backbones."""
    if not init or init.startswith('tflite:'):
        return None
    path = Path(init)
    if path.suffix in ('.yaml', '.yml'):
        return ModelCard.load(path)
    if not path.is_file():
        raise WeightsError(f'--init {init}: weights file not found')
    for candidate in sorted(path.parent.glob('*.yaml')):
        try:
            card = ModelCard.load(candidate)
        except ModelCardError:
            continue
        if card.weights_path.resolve() == path.resolve():
            return card
    return None


def with_init_network(cfg: TrainConfig) -> tuple[TrainConfig, ModelCard | None]:
    """``cfg`` with the network of its ``--init`` card (decoder and strides included).

    A network field the config sets to something other than its default overrides the
    card's (e.g. ``decoder_channels: 64`` adds a decoder to a card without one); the layers
    that adds must then be named in ``fresh_layers``.
    """
    card = init_card(cfg.init)
    if card is None:
        return cfg, None
    network = card.network.as_fields()
    for name in NETWORK_FIELDS:
        value = getattr(cfg, name)
        if value != network_default(name):
            network[name] = value
    changed = {k: v for k, v in network.items() if getattr(card, k) != v}
    text = ', '.join(f'{k} {v}' for k, v in changed.items())
    extra = f', with {text} from the options' if text else ''
    print(f'init: the network of {card.path}{extra}', flush=True)
    sizes = {}
    defaults = TrainConfig.defaults()
    if cfg.input_size == defaults.input_size:
        sizes['input_size'] = list(card.input_size)
    if cfg.crop_size == defaults.crop_size:
        sizes['crop_size'] = crop_for(sizes.get('input_size', cfg.input_size),
                                      network['output_stride'])
    if sizes:
        print('init: ' + ', '.join(f'{k} {v[0]}x{v[1]}' for k, v in sizes.items())
              + " (the card's input, crops about 0.83 of it on the output-stride grid)",
              flush=True)
    return dataclasses.replace(cfg, **network, **sizes), card


def crop_for(input_size, stride: int) -> list[int]:
    """Training crops about 0.83 of ``input_size`` per side, on the output-stride grid
    (``stride * k + 1``): 233x313 for 281x377 at stride 8, 305x385 for 369x465 at 16."""
    return [max(1, round(0.83 * (int(v) - 1) / stride)) * stride + 1 for v in input_size]


def class_dependent_keys(spec: NetworkSpec) -> set[str]:
    """The tensors whose shape depends on the number of classes (the classifier layers)."""
    a = build_network(dataclasses.replace(spec, num_classes=2), aux=True).state_dict()
    b = build_network(dataclasses.replace(spec, num_classes=3), aux=True).state_dict()
    return {k for k in a if a[k].shape != b[k].shape}


def _layers(fresh, own) -> list[str]:
    """The fewest module names that cover ``fresh``: the outermost module whose tensors all
    start fresh (``aux``, ``decoder``), else the layer itself (``cls.4``)."""
    fresh = set(fresh)
    names = set()
    for k in fresh:
        parts = k.split('.')[:-1]
        for n in range(1, len(parts) + 1):
            prefix = '.'.join(parts[:n]) + '.'
            if all(o in fresh for o in own if o.startswith(prefix)):
                names.add(prefix[:-1])
                break
    return sorted(names)


def load_init(model, state: dict, spec: NetworkSpec, source: str, new_classes: bool = False,
              fresh_layers: str = '') -> list[str]:
    """Load ``state`` into the training ``model`` of ``spec``; return the layers that start
    fresh.

    Every tensor of the model must come from ``state`` with its shape, except: the auxiliary
    head when ``state`` has none (models are saved without it); with ``new_classes``, the
    classifier layers when the class count differs; and layers under the comma-separated
    module prefixes of ``fresh_layers``. Anything else missing, unexpected or of another
    shape is a ``WeightsError`` naming the tensors.
    """
    if detect_layout(state) == 'mmseg':
        state = convert_mmseg(state)
    own = model.state_dict()
    prefixes = tuple(p.strip().rstrip('.') + '.' for p in fresh_layers.split(',') if p.strip())
    fresh = [k for k in own if k.startswith(prefixes)] if prefixes else []
    if not any(k.startswith(AUX_PREFIX) for k in state):
        fresh += [k for k in own if k.startswith(AUX_PREFIX)]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape
             and k not in fresh]
    classes = class_dependent_keys(spec)
    # A classifier layer of another class count (not merely of another width).
    other_count = [k for k in wrong if k in classes and state[k].shape[0] != own[k].shape[0]]
    if new_classes:
        restart = other_count
        if not restart:
            raise WeightsError(f'--new-classes: the classifier of {source} already has '
                               f'{spec.num_classes} classes, as the label set; drop '
                               '--new-classes to keep it')
        fresh += restart
        wrong = [k for k in wrong if k not in restart]
    missing = [k for k in own if k not in state and k not in fresh
               and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own and not k.startswith(AUX_PREFIX)]
    if missing or unexpected or wrong:
        shapes = [f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in wrong]
        hint = ('; the label set has another class count: pass --new-classes to start the '
                'classifier fresh' if other_count else
                '; pass --fresh-layers PREFIX to start those layers fresh on purpose, or '
                'fix the network options')
        raise WeightsError(f'--init {source} does not fit the network: ' + mismatch_text(
            missing, unexpected, shapes, 'of another shape', limit=6) + hint)
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in fresh},
                          strict=False)
    layers = _layers(fresh, own)
    loaded = sum(1 for k in state if k in own and k not in fresh)
    fresh_text = f'; start fresh: {", ".join(layers)}' if layers else ''
    print(f'init: {loaded} tensors from {source}{fresh_text}', flush=True)
    return layers


def build_for_training(cfg: TrainConfig, num_classes: int, card: ModelCard | None = None):
    """The training network of ``cfg`` (auxiliary head included), initialised from
    ``cfg.init``: a model card or weights file (strictly, ``load_init``) or
    ``tflite:FILE`` (a MobileNetV2 backbone; the head starts fresh)."""
    spec = NetworkSpec.of(cfg, num_classes)
    model = build_network(spec, aux=True)
    if cfg.init.startswith('tflite:'):
        from .convert import import_mobilenetv2_tflite
        import_mobilenetv2_tflite(model, cfg.init[len('tflite:'):])
        print(f'init: MobileNetV2 backbone from {cfg.init}; the head starts fresh', flush=True)
    elif cfg.init:
        path = card.weights_path if card is not None else Path(cfg.init)
        load_init(model, load_state_dict(path), spec, str(path), cfg.new_classes,
                  cfg.fresh_layers)
    elif cfg.new_classes or cfg.fresh_layers:
        raise ValueError('--new-classes and --fresh-layers need --init (the weights to start '
                         'from)')
    return model
