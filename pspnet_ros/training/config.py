"""``TrainConfig``: every ``pspnet-ros train`` option, its checks, and recipe files."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
import os
from pathlib import Path

from ..core.card import MAX_INPUT_SIDE, MIN_INPUT_SIDE
from ..core.network import NetworkFields
from ..core.sizes import parse_sizes

CLASS_WEIGHTINGS = ('none', 'sqrt-median')


@dataclass
class TrainConfig(NetworkFields):
    """Training options; every field is a ``pspnet-ros train`` flag and a recipe key.

    ``stop_after`` ends this run after that many epochs (checkpoint kept), so long trainings
    can run in chunks: the same command resumes where the last chunk stopped.
    """

    train_images: str
    train_labels: str
    out: str
    name: str = 'pspnet_mobilenetv2_camvid'
    val_images: str = ''
    val_labels: str = ''
    label_set: str = 'camvid'
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
    new_classes: bool = False
    fresh_layers: str = ''
    teacher: str = ''
    teacher_sizes: str = ''
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    distill_correct: float = 0.0
    lovasz_weight: float = 0.0
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
    licence: str = 'unspecified'
    training_data: str = 'unspecified'

    @classmethod
    def defaults(cls) -> TrainConfig:
        """Every option at its default (no data or output named): what an option is compared
        with to tell whether it was given."""
        return cls(train_images='', train_labels='', out='')

    def validate(self) -> None:
        """Raise ValueError naming the first option that cannot work."""
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
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f'class_weighting must be one of {", ".join(CLASS_WEIGHTINGS)}, '
                             f'got {self.class_weighting!r}')
        if self.distill_weight < 0 or self.distill_temperature <= 0:
            raise ValueError('distill_weight must be >= 0, distill_temperature > 0')
        if not 0 <= self.distill_correct <= 1:
            raise ValueError(f'distill_correct must be from 0 to 1, got {self.distill_correct}')
        if self.lovasz_weight < 0:
            raise ValueError(f'lovasz_weight must be >= 0, got {self.lovasz_weight}')
        if not 0 <= self.paste_prob <= 1:
            raise ValueError(f'paste_prob must be from 0 (off) to 1, got {self.paste_prob}')
        if self.paste_prob > 0 and not self.paste_classes.strip():
            raise ValueError('paste_prob > 0 needs --paste-classes (the classes to paste)')
        if self.distill_weight > 0 and not self.teacher:
            raise ValueError('distill_weight > 0 needs --teacher CARD (the model to learn from)')
        if self.teacher_sizes:
            teacher_sizes(self.teacher_sizes)
            if not self.teacher:
                raise ValueError('teacher_sizes needs --teacher CARD (the model to learn from)')
        if self.amp not in ('auto', 'off'):
            raise ValueError('amp must be auto (float16 autocast on CUDA) or off, got '
                             f'{self.amp!r}')


def teacher_sizes(spec: str) -> list[tuple[int, int]]:
    """``'425x569,489x649'`` -> ``[(425, 569), (489, 649)]``, each side within the network's
    input range; a clear error otherwise."""
    return parse_sizes(spec, 'teacher_sizes', MIN_INPUT_SIDE, MAX_INPUT_SIDE)


def load_recipe(path: str | os.PathLike) -> dict:
    """The ``TrainConfig`` fields a recipe YAML file sets; unknown keys, a file that is not a
    mapping, or a list of the wrong length are errors naming the file and the key."""
    from ..core.yamlfile import load_yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'recipe file not found: {path}')
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f'recipe {path} must be a mapping of TrainConfig fields (key: value)')
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f'recipe {path}: unknown keys {unknown}; the keys are the '
                         f'`pspnet-ros train` flags with _ for -, e.g. {sorted(known)[:4]}')
    for key, value in data.items():
        default = known[key].default_factory() if callable(known[key].default_factory) \
            else None
        if isinstance(default, list) and (not isinstance(value, list)
                                          or len(value) != len(default)):
            raise ValueError(f'recipe {path}: {key} must be a list of {len(default)} numbers, '
                             f'got {value!r}')
    return data
