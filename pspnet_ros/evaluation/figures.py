"""Figures for people: the colour legend of a label set, and sample montages with column
captions and that legend (eval's samples.png, the demo's montage.png)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = 245          # legend and caption background (light grey), text is black


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float = 0.45) -> None:
    cv2.putText(img, text, (x, y), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def legend_image(class_names: Sequence[str], palette: np.ndarray, width: int = 480,
                 swatch: int = 16, ignore_index: int | None = None) -> np.ndarray:
    """An RGB image: one colour swatch and ``id name`` per class (the id is the value in
    ``~/mask``), in rows that fit ``width`` pixels, plus a black swatch for unlabelled/void
    pixels when ``ignore_index`` is given."""
    palette = np.asarray(palette, np.uint8)
    items = [(f'{i} {n}', tuple(int(c) for c in palette[i])) for i, n in enumerate(class_names)]
    if ignore_index is not None:
        items.append((f'{ignore_index} void (not scored)', (0, 0, 0)))
    text_w = max(cv2.getTextSize(n, FONT, 0.45, 1)[0][0] for n, _ in items)
    cell_w, cell_h = swatch + 6 + text_w + 14, swatch + 8
    per_row = max(1, (width - 8) // cell_w)
    rows = -(-len(items) // per_row)
    img = np.full((rows * cell_h + 8, max(width, cell_w + 8), 3), BACKGROUND, np.uint8)
    for k, (name, colour) in enumerate(items):
        r, c = divmod(k, per_row)
        x, y = 4 + c * cell_w, 4 + r * cell_h
        cv2.rectangle(img, (x, y + 4), (x + swatch, y + 4 + swatch), colour, -1)
        cv2.rectangle(img, (x, y + 4), (x + swatch, y + 4 + swatch), (90, 90, 90), 1)
        _text(img, name, x + swatch + 6, y + 4 + swatch - 3)
    return img


def caption_bar(captions: Sequence[str], tile_width: int, height: int = 22) -> np.ndarray:
    """An RGB strip with one caption centred over each column of ``tile_width`` pixels."""
    bar = np.full((height, tile_width * len(captions), 3), BACKGROUND, np.uint8)
    for i, text in enumerate(captions):
        w = cv2.getTextSize(text, FONT, 0.5, 1)[0][0]
        _text(bar, text, i * tile_width + max(2, (tile_width - w) // 2), height - 7, 0.5)
    return bar


DEFAULT_CAPTIONS = ('image', 'ground truth', 'prediction')


def montage(samples: Sequence[tuple], palette: np.ndarray, path: Path, width: int = 320,
            captions: Sequence[str] | None = None, class_names: Sequence[str] = (),
            ignore_index: int | None = None) -> None:
    """One row per sample: image, ground truth colours, prediction colours (black = void),
    and, for samples ``(img, gt, pred, extra)`` with a fourth RGB image (e.g. the node's
    overlay), that image too. A missing image or ground truth is a black tile. A caption row
    names the columns (``captions``, default image / ground truth / prediction / extra); with
    ``class_names`` the colour legend goes underneath."""
    from ..core.segmenter import colorize
    rows = []
    columns = 0
    for img, gt, pred, *extra in samples:
        h, w = pred.shape
        th = max(1, round(h * width / w))
        tiles = []
        for tile in (img, None if gt is None else colorize(gt, palette), colorize(pred, palette),
                     *extra):
            if tile is None:
                tile = np.zeros((h, w, 3), np.uint8)
            tiles.append(cv2.resize(tile, (width, th), interpolation=cv2.INTER_NEAREST))
        columns = max(columns, len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return
    full = width * columns
    rows = [r if r.shape[1] == full else
            np.pad(r, ((0, 0), (0, full - r.shape[1]), (0, 0))) for r in rows]
    names = list(captions or DEFAULT_CAPTIONS) + ['extra'] * columns
    parts = [caption_bar(names[:columns], width), *rows]
    if class_names:
        parts.append(legend_image(class_names, palette, full, ignore_index=ignore_index))
    grid = np.concatenate(parts, axis=0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
