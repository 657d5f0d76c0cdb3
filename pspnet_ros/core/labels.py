"""Label sets: class names and palettes (CamVid, Cityscapes, ADE20K, VOC, or your own file)."""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class LabelSet:
    """Class names and RGB colours for one dataset; ``ignore_index`` marks void pixels."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    ignore_colour: tuple[int, int, int] | None = None    # colour labels: this is void

    def __post_init__(self):
        if len(self.classes) != len(self.palette):
            raise ValueError(f'{self.name}: {len(self.classes)} classes but '
                             f'{len(self.palette)} colours')
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f'{self.name}: class names repeat: {list(self.classes)}')

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def palette_array(self) -> np.ndarray:
        """``(num_classes, 3)`` uint8 RGB palette."""
        return np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)

    def to_dict(self) -> dict:
        """The set as plain data (what a model card embeds; ``get_label_set`` reads it)."""
        out = {'name': self.name, 'ignore_index': self.ignore_index,
               'classes': [{'name': n, 'color': list(c)}
                           for n, c in zip(self.classes, self.palette)]}
        if self.ignore_colour is not None:
            out['ignore_color'] = list(self.ignore_colour)
        return out

    def colours_to_ids(self, rgb: np.ndarray, what: str = 'label image') -> np.ndarray:
        """An ``(H, W, 3)`` RGB colour label image -> class ids (``ignore_colour`` -> the
        ignore index); a colour that is in neither is a ValueError naming it."""
        if len(set(self.palette)) != len(self.palette):
            raise ValueError(f'{self.name}: two classes share a colour; colour labels need '
                             'one colour per class')
        code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) \
            | rgb[..., 2].astype(np.int32)
        keys = [(r << 16) | (g << 8) | b for r, g, b in self.palette]
        ids = list(range(len(keys)))
        if self.ignore_colour is not None:
            r, g, b = self.ignore_colour
            keys.append((r << 16) | (g << 8) | b)
            ids.append(self.ignore_index)
        order = np.argsort(keys)
        sorted_keys = np.asarray(keys, np.int64)[order]
        pos = np.clip(np.searchsorted(sorted_keys, code), 0, len(keys) - 1)
        known = sorted_keys[pos] == code
        if not known.all():
            bad = np.unique(code[~known])[:5]
            colours = ', '.join(f'({c >> 16}, {(c >> 8) & 255}, {c & 255})' for c in bad)
            raise ValueError(f'{what}: colours {colours} are not in label set {self.name} '
                             '(add them as classes, or as ignore_color)')
        dtype = np.uint8 if max(ids) < 256 else np.uint16
        return np.asarray(ids, dtype)[order][pos]


def bit_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: class bits spread over the high bits of R, G and B."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


CAMVID = LabelSet(
    'camvid',
    ('sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign_symbol', 'fence', 'car',
     'pedestrian', 'bicyclist'),
    ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
     (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
    ignore_index=11)

CITYSCAPES = LabelSet(
    'cityscapes',
    ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic_light', 'traffic_sign',
     'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
     'motorcycle', 'bicycle'),
    ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
     (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
     (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
     (0, 80, 100), (0, 0, 230), (119, 11, 32)),
    ignore_index=255)

VOC = LabelSet(
    'voc',
    ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
     'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
     'sheep', 'sofa', 'train', 'tvmonitor'),
    bit_palette(21),
    ignore_index=255)

_ADE_NAMES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug',
    'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest_of_drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool_table', 'pillow', 'screen_door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee_table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen_island', 'computer', 'swivel_chair', 'boat', 'bar',
    'arcade_machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television_receiver', 'airplane', 'dirt_track',
    'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet',
    'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer_belt', 'canopy', 'washer',
    'plaything', 'swimming_pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag',
    'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade_name', 'microwave',
    'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic_light', 'tray', 'ashcan', 'fan', 'pier', 'crt_screen', 'plate',
    'monitor', 'bulletin_board', 'shower', 'radiator', 'glass', 'clock', 'flag')

# ADE20K has no single canonical palette; we use the VOC bit palette shifted by one so that
# class 0 (wall) is not black, which is reserved for "no class" in overlays.
ADE20K = LabelSet('ade20k', _ADE_NAMES, bit_palette(151)[1:], ignore_index=255)

LABEL_SETS = {s.name: s for s in (CAMVID, CITYSCAPES, VOC, ADE20K)}


def _colour(value, where: str) -> tuple[int, int, int]:
    try:
        r, g, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: a colour is three numbers r, g, b, got {value!r}') from None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise ValueError(f'{where}: colour values are 0..255, got {value!r}')
    return r, g, b


def label_set_from_dict(data: Mapping, where: str = 'label set') -> LabelSet:
    """A ``LabelSet`` from plain data: ``name``, ``classes`` (a list of ``{name, color}``),
    optional ``ignore_index`` (default 255) and ``ignore_color``."""
    if not isinstance(data, Mapping) or not isinstance(data.get('classes'), list):
        raise ValueError(f'{where}: needs classes: a list of {{name: ..., color: [r, g, b]}}')
    unknown = set(data) - {'name', 'classes', 'ignore_index', 'ignore_color'}
    if unknown:
        raise ValueError(f'{where}: unknown keys {sorted(unknown)} (name, classes, '
                         'ignore_index, ignore_color)')
    names, colours = [], []
    for i, c in enumerate(data['classes']):
        if not isinstance(c, Mapping) or 'name' not in c or 'color' not in c:
            raise ValueError(f'{where}: class {i} must be {{name: ..., color: [r, g, b]}}, '
                             f'got {c!r}')
        names.append(str(c['name']))
        colours.append(_colour(c['color'], f'{where} class {c["name"]!r}'))
    ignore_colour = data.get('ignore_color')
    return LabelSet(str(data.get('name', 'custom')), tuple(names), tuple(colours),
                    int(data.get('ignore_index', 255)),
                    None if ignore_colour is None else _colour(ignore_colour, where))


def read_labelmap(path: str | os.PathLike) -> LabelSet:
    """A label set from a ``labelmap.txt`` (CVAT "Segmentation mask" / Pascal VOC export:
    ``name:r,g,b:parts:actions`` lines, ``#`` comments). A class named ``background`` is
    class 0 like any other; ``ignore`` or ``void`` lines become the ignore colour."""
    path = Path(path)
    names, colours, ignore = [], [], None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        parts = line.split(':')
        if len(parts) < 2:
            raise ValueError(f'{path}:{n}: expected name:r,g,b::, got {line!r}')
        colour = _colour(parts[1].split(','), f'{path}:{n}')
        if parts[0].strip().lower() in ('ignore', 'void'):
            ignore = colour
            continue
        names.append(parts[0].strip())
        colours.append(colour)
    if not names:
        raise ValueError(f'{path}: no classes found')
    return LabelSet(path.stem, tuple(names), tuple(colours), 255, ignore)


def get_label_set(name: str | Mapping) -> LabelSet:
    """A label set: a built-in one by name (``camvid``, ``cityscapes``, ``voc``, ``ade20k``),
    a class-list file (``.yaml``/``.yml`` as ``label_set_from_dict`` reads, or a
    ``labelmap.txt``), or that class list as a mapping (as model cards embed it)."""
    if isinstance(name, Mapping):
        return label_set_from_dict(name)
    if name in LABEL_SETS:
        return LABEL_SETS[name]
    path = Path(name)
    if path.suffix.lower() in ('.yaml', '.yml', '.txt'):
        if not path.is_file():
            raise FileNotFoundError(f'label set file not found: {path}')
        if path.suffix.lower() == '.txt':
            return read_labelmap(path)
        from .yamlfile import load_yaml
        data = load_yaml(path)
        if isinstance(data, Mapping) and 'name' not in data:
            data = {**data, 'name': path.stem}
        return label_set_from_dict(data, str(path))
    raise ValueError(f'unknown label set {name!r}; known: {sorted(LABEL_SETS)}, or a class '
                     'list file (.yaml or labelmap.txt)')
