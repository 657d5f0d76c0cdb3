"""Class scores at the network's grid -> labels and confidence at frame size, in row bands.

Upsampling every class's scores to the whole frame at once costs 4 bytes per class per
pixel (11 classes at 4096x4096: 740 MB, twice that with confidence). Here the frame is
made a band of rows at a time, so the float memory stays near ``3 * BAND_BYTES`` whatever
the frame size; only the labels (1 byte a pixel) and the confidence (4) are frame-sized.

Frames up to ``WHOLE_BYTES`` of scores use ``F.interpolate(..., 'bilinear',
align_corners=True)`` on the whole frame. Larger ones compute the same interpolation
separably (along the width, then between two rows): the values agree with it to float
rounding (about 1e-6) and the labels are the same except where two classes tie within that
rounding (1 pixel in 50 million on CamVid val frames at 4K).

Labels without confidence take a shorter way (``_labels_by_cells``): where one class is the
best at all four corners of a grid cell, it is the best everywhere inside the cell (bilinear
interpolation is a convex combination of the corners), so only the pixels of cells whose
corners disagree are interpolated; on CamVid frames that is under a tenth of them.
"""
from __future__ import annotations

import numpy as np

# Size of one band's upsampled scores (rows x width x classes x 4 bytes); a band needs about
# three times this while it is made. Larger bands ran no faster on 2 cores.
BAND_BYTES = 16 << 20
# Up to this many bytes of upsampled scores (11 classes: 0.7 megapixels, e.g. 640x1024) the
# frame is made whole, as before bands existed, which is exact and faster for small frames.
WHOLE_BYTES = 32 << 20
# Labels-only: above this fraction of cells whose corners disagree (noise, not a scene),
# interpolating everything is the faster way.
MIXED_CELLS_MAX = 0.5
# Pixels of mixed cells interpolated at a time: each of the four corner arrays is then
# about 180 kB (11 classes, float32), which stays in the cache and below malloc's mmap
# threshold (16k pixels a chunk ran 1.0-2.9 ms for 360x480, 4k pixels 1.1-1.3 ms), and a 4K
# frame's mixed pixels need no frame-sized float array.
MIXED_CHUNK = 1 << 12


def _whole(scores, shape: tuple[int, int], want_confidence: bool, dtype: type
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """One ``F.interpolate`` of the whole frame: for frames up to ``WHOLE_BYTES`` of scores,
    where it is the faster way (a 480x640 frame: 3x)."""
    import torch
    import torch.nn.functional as F
    with torch.inference_mode():
        hwc = F.interpolate(scores, shape, mode='bilinear',
                            align_corners=True).permute(0, 2, 3, 1)[0]
        if not want_confidence:
            return hwc.argmax(dim=-1).numpy().astype(dtype), None
        top, lab = hwc.max(dim=-1)
        conf = (1.0 / torch.exp(hwc - top[..., None]).sum(dim=-1)).numpy().astype(np.float32)
        return lab.numpy().astype(dtype), conf


def _cell_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output position: the grid cell it falls in (its first corner, at most
    ``n_in - 2``; ``n_in >= 2``) and the weight of the cell's second corner (aligned
    corners)."""
    src = np.float32((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0) * np.arange(
        n_out, dtype=np.float32)
    i0 = np.minimum(src.astype(np.int64), n_in - 2)
    return i0, np.clip(src - i0, 0, 1).astype(np.float32)


def _taps(n_in: int, n_out: int):
    """``_cell_taps`` as torch tensors for the bands: both source indices of each output
    position and their weights; a grid of one row (or column) has one source."""
    import torch
    if n_in == 1:
        first, weight = torch.zeros(n_out, dtype=torch.long), torch.zeros(n_out)
        return first, first, 1 - weight, weight
    first, weight = (torch.from_numpy(a) for a in _cell_taps(n_in, n_out))
    return first, first + 1, 1 - weight, weight


def _labels_by_cells(src: np.ndarray, shape: tuple[int, int], dtype: type
                     ) -> np.ndarray | None:
    """Labels ``(H, W)`` from class scores ``src`` ``(h, w, C)`` (h, w >= 2): a cell whose four
    corners share their best class gives its pixels that class; the pixels of the other cells
    are interpolated. None when too many cells are mixed for this to pay."""
    h, w, channels = src.shape
    height, width = shape
    best = src.argmax(axis=-1)
    corner = best[:-1, :-1]
    same = (corner == best[1:, :-1]) & (corner == best[:-1, 1:]) & (corner == best[1:, 1:])
    if 1.0 - same.mean() > MIXED_CELLS_MAX:
        return None
    mixed = np.iinfo(dtype).max           # no class id: num_classes <= 255 for uint8
    cells = np.where(same, corner, mixed).astype(dtype)
    y0, wy = _cell_taps(h, height)
    x0, wx = _cell_taps(w, width)
    labels = cells.take(y0, axis=0).take(x0, axis=1)
    todo = np.flatnonzero(labels == mixed)
    flat, out = src.reshape(-1, channels), labels.reshape(-1)
    for k in range(0, todo.size, MIXED_CHUNK):
        idx = todo[k:k + MIXED_CHUNK]
        ys, xs = np.divmod(idx, width)
        a = y0[ys] * w + x0[xs]
        fy, fx = wy[ys, None], wx[xs, None]
        top, right = flat.take(a, axis=0), flat.take(a + 1, axis=0)
        bottom, corner = flat.take(a + w, axis=0), flat.take(a + w + 1, axis=0)
        right -= top                        # in place, as lerps: a + f * (b - a)
        right *= fx
        top += right
        corner -= bottom
        corner *= fx
        bottom += corner
        bottom -= top
        bottom *= fy
        top += bottom
        out[idx] = top.argmax(axis=-1)
    return labels


def labels_at(scores, shape: tuple[int, int], want_confidence: bool,
              dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels ``(H, W)`` of ``dtype`` and, if wanted, the max softmax probability ``(H, W)``
    float32, from class scores ``scores`` (a ``(1, C, h, w)`` torch tensor, best channels-last)
    upsampled to ``shape`` ``(H, W)``."""
    import torch
    height, width = shape
    _, channels, h, w = scores.shape
    if not want_confidence and h > 1 and w > 1 and channels < np.iinfo(dtype).max:
        hwc = scores[0].permute(1, 2, 0).contiguous().numpy()
        labels = _labels_by_cells(hwc, shape, dtype)
        if labels is not None:
            return labels, None
    if channels * height * width * 4 <= WHOLE_BYTES:
        return _whole(scores, shape, want_confidence, dtype)
    src = scores[0].permute(1, 2, 0).contiguous()         # (h, w, C): classes contiguous
    y0, y1, hy0, hy1 = _taps(h, height)
    x0, x1, wx0, wx1 = _taps(w, width)
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
    labels = np.empty((height, width), dtype)
    conf = np.empty((height, width), np.float32) if want_confidence else None
    band = max(1, BAND_BYTES // (width * channels * 4))
    with torch.inference_mode():
        for r0 in range(0, height, band):
            r1 = min(height, r0 + band)
            s0, s1 = int(y0[r0]), int(y1[r1 - 1]) + 1
            rows = src[s0:s1]
            wide = rows.index_select(1, x0).mul_(wx0).add_(rows.index_select(1, x1).mul_(wx1))
            up = wide.index_select(0, y0[r0:r1] - s0).mul_(hy0[r0:r1, None, None])
            up.add_(wide.index_select(0, y1[r0:r1] - s0).mul_(hy1[r0:r1, None, None]))
            if conf is None:
                labels[r0:r1] = up.argmax(dim=-1).numpy()
                continue
            top, lab = up.max(dim=-1)
            labels[r0:r1] = lab.numpy()
            # max softmax probability = 1 / sum(exp(l - max l)), without the full softmax
            conf[r0:r1] = (1.0 / up.sub_(top[..., None]).exp_().sum(dim=-1)).numpy()
    return labels, conf
