"""Pair frames with ground-truth labels by header stamp, streaming, in bounded memory."""
from __future__ import annotations

import bisect
import os
from pathlib import Path
import re
from typing import Any, Callable

from ..core.files import IMAGE_EXTS, list_images

_STAMP_RE = re.compile(r'^(\d+)(?:\.(\d{1,9}))?$')


def parse_stamp(stem: str) -> int | None:
    """Nanoseconds from a file stem ``<nanoseconds>`` (>= 10 digits) or ``<sec>.<fraction>``;
    None for other names."""
    m = _STAMP_RE.match(stem)
    if not m:
        return None
    if m.group(2) is None:
        return int(m.group(1)) if len(m.group(1)) >= 10 else None
    return int(m.group(1)) * 1_000_000_000 + int(m.group(2).ljust(9, '0'))


class StampMatcher:
    """Streams images and labels (in bag order) and emits ``(item, label)`` pairs.

    A label matches an image with the same stamp, or with ``tolerance_ns > 0`` the nearest
    label within the tolerance; each label is used once. An image is decided as soon as no
    better label can arrive (a label stamp beyond ``stamp + tolerance`` was seen), when more
    than ``max_pending`` images wait, or at ``flush``; undecided images get label None.
    ``on_unmatched`` (optional) is called with each label given up as unmatched.
    """

    def __init__(self, tolerance_ns: int = 0, max_pending: int = 256,
                 on_unmatched: Callable[[Any], None] | None = None):
        self.tolerance = int(tolerance_ns)
        self.max_pending = int(max_pending)
        self.images: list[tuple[int, Any]] = []
        self.labels: dict[int, Any] = {}
        self.latest_label = -1
        self.latest_image = -1
        self.labels_unmatched = 0
        self.labels_duplicate = 0
        self.on_unmatched = on_unmatched

    def add_label(self, stamp: int, label: Any) -> list[tuple[Any, Any]]:
        if stamp in self.labels:
            self.labels_duplicate += 1
        self.labels[stamp] = label
        self.latest_label = max(self.latest_label, stamp)
        return self._ready(False)

    def add_image(self, stamp: int, item: Any) -> list[tuple[Any, Any]]:
        self.images.append((stamp, item))
        self.latest_image = max(self.latest_image, stamp)
        return self._ready(False)

    def flush(self) -> list[tuple[Any, Any]]:
        out = self._ready(True)
        self.labels_unmatched += len(self.labels)
        if self.on_unmatched is not None:
            for label in self.labels.values():
                self.on_unmatched(label)
        self.labels.clear()
        return out

    def _nearest(self, stamp: int) -> int | None:
        if stamp in self.labels:
            return stamp
        if not self.tolerance or not self.labels:
            return None
        best = min(self.labels, key=lambda s: abs(s - stamp))
        return best if abs(best - stamp) <= self.tolerance else None

    def _ready(self, final: bool) -> list[tuple[Any, Any]]:
        out, waiting = [], []
        overflow = len(self.images) - self.max_pending
        for i, (stamp, item) in enumerate(self.images):
            decided = final or i < overflow or stamp in self.labels \
                or self.latest_label > stamp + self.tolerance
            if not decided:
                waiting.append((stamp, item))
                continue
            key = self._nearest(stamp)
            out.append((item, self.labels.pop(key) if key is not None else None))
        self.images = waiting
        # Labels older than every pending and future image (stamps increase) can never match.
        horizon = min([s for s, _ in self.images] + [self.latest_image]) - self.tolerance
        stale = [s for s in self.labels if s < horizon]
        for s in stale:
            label = self.labels.pop(s)
            if self.on_unmatched is not None:
                self.on_unmatched(label)
        self.labels_unmatched += len(stale)
        return out


class LabelDir:
    """Ground-truth label files for a bag.

    Files named by stamp (``<nanoseconds>.png`` or ``<sec>.<nanosec>.png``) are matched to
    frames by header stamp (nearest within the tolerance); otherwise the i-th file in sorted
    name order belongs to the i-th frame of the image topic (``by index``).
    """

    def __init__(self, folder: str | os.PathLike, tolerance_ns: int = 0):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f'labels folder not found: {self.folder}')
        self.files = list_images(self.folder)
        if not self.files:
            raise FileNotFoundError(f'no label images ({", ".join(IMAGE_EXTS)}) in {self.folder}')
        stamps = [parse_stamp(p.stem) for p in self.files]
        self.by_stamp = all(s is not None for s in stamps)
        self.tolerance = int(tolerance_ns)
        if self.by_stamp:
            pairs = sorted(zip(stamps, self.files))
            self.stamps = [s for s, _ in pairs]
            self.paths = [p for _, p in pairs]
        self.used = 0

    @property
    def mode(self) -> str:
        return 'stamp' if self.by_stamp else 'index'

    def lookup(self, stamp: int, index: int) -> Path | None:
        """The label file for the frame with header ``stamp`` that is the ``index``-th
        (0-based) on its topic, or None."""
        if not self.by_stamp:
            return self.files[index] if 0 <= index < len(self.files) else None
        i = bisect.bisect_left(self.stamps, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.stamps)),
                   key=lambda j: abs(self.stamps[j] - stamp), default=None)
        if best is None or abs(self.stamps[best] - stamp) > self.tolerance:
            return None
        return self.paths[best]
