"""Label sets: class names and display palettes for CamVid, Cityscapes, ADE20K and VOC."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelSet:
    """Class names and RGB colours for one dataset; ``ignore_index`` marks void pixels."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255

    def __post_init__(self):
        if len(self.classes) != len(self.palette):
            raise ValueError(f'{self.name}: {len(self.classes)} classes but '
                             f'{len(self.palette)} colours')

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def palette_array(self) -> np.ndarray:
        """``(num_classes, 3)`` uint8 RGB palette."""
        return np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)


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


def get_label_set(name: str) -> LabelSet:
    """Look a label set up by name (``camvid``, ``cityscapes``, ``voc``, ``ade20k``)."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f'unknown label set {name!r}; known: {sorted(LABEL_SETS)}') from None
