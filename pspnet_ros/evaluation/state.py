"""The running totals of an evaluation (confusion matrix, timings, counts), mergeable across
the shards of a parallel run."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

COUNTS = ('read', 'processed', 'scored', 'labels_unmatched', 'labels_bad', 'label_pixels_outside',
          'frames_labels_outside')


@dataclass
class EvalState:
    n: int
    conf: np.ndarray
    timings: dict[str, list[float]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    samples: list = field(default_factory=list)
    read: int = 0
    processed: int = 0
    scored: int = 0
    labels_unmatched: int = 0
    labels_bad: int = 0
    # Ground-truth pixels whose id is neither a class of the label set nor the ignore index
    # (not scored), the frames that had any, and the distinct ids seen (at most a few).
    label_pixels_outside: int = 0
    frames_labels_outside: int = 0
    outside_ids: set = field(default_factory=set)
    # Time-range shards of one bag (see BagEvaluator.run_bag): labels of this shard's own
    # range given up as unmatched, and labels of a neighbour's range this shard matched; keys
    # are (bag path, bag time ns, header stamp ns). settle_shard_labels() resolves them.
    own_unmatched: set = field(default_factory=set)
    foreign_matched: set = field(default_factory=set)

    @classmethod
    def empty(cls, num_classes: int) -> 'EvalState':
        return cls(num_classes, np.zeros((num_classes, num_classes), np.int64))

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, detail)

    def time(self, stage: str, seconds: float) -> None:
        self.timings.setdefault(stage, []).append(seconds)

    def count_outside(self, label: np.ndarray, ignore_index: int | None) -> None:
        """Count ``label``'s pixels outside ``[0, n)`` and other than ``ignore_index``."""
        outside = (label >= self.n)
        if ignore_index is not None:
            outside &= label != ignore_index
        k = int(np.count_nonzero(outside))
        if k:
            self.label_pixels_outside += k
            self.frames_labels_outside += 1
            if len(self.outside_ids) < 8:
                ids = np.unique(label[outside])[:8].tolist()
                self.outside_ids.update(ids[:8 - len(self.outside_ids)])

    def merge(self, other: 'EvalState', max_samples: int) -> None:
        """Add ``other`` (a later part of the same run, in bag order) to this state."""
        self.conf += other.conf
        for stage, values in other.timings.items():
            self.timings.setdefault(stage, []).extend(values)
        self.skipped.update(other.skipped)
        for reason, detail in other.examples.items():
            self.examples.setdefault(reason, detail)
        self.samples.extend(other.samples[:max(max_samples - len(self.samples), 0)])
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.outside_ids |= other.outside_ids
        self.own_unmatched |= other.own_unmatched
        self.foreign_matched |= other.foreign_matched

    def settle_shard_labels(self) -> None:
        """Count the shard labels that no shard matched as unmatched (after all merges)."""
        self.labels_unmatched += len(self.own_unmatched - self.foreign_matched)
        self.own_unmatched, self.foreign_matched = set(), set()


class ShardLabel(NamedTuple):
    """A label read by a time-range shard; ``own`` when its bag time is in the shard's range
    (not in the margin read around it)."""

    key: tuple
    own: bool
    value: Any


class ShardScope:
    """The bag times ``[start_ns, stop_ns)`` a time-range shard owns (None: open end; both
    None: the whole bag). Labels read in the margin around the range are wrapped so that each
    label is counted (bad, unmatched) by the one shard whose range holds it."""

    def __init__(self, path: str, state: EvalState, start_ns: int | None = None,
                 stop_ns: int | None = None):
        self.path, self.state = str(path), state
        self.ranged = start_ns is not None or stop_ns is not None
        self.lo = start_ns if start_ns is not None else -1
        self.hi = stop_ns if stop_ns is not None else 1 << 63

    def own(self, t: int) -> bool:
        return self.lo <= t < self.hi

    def wrap(self, t: int, stamp: int, label: Any) -> Any:
        return ShardLabel((self.path, t, stamp), self.own(t), label) if self.ranged else label

    def unwrap(self, label: Any) -> Any:
        if isinstance(label, ShardLabel):
            if not label.own:
                self.state.foreign_matched.add(label.key)
            return label.value
        return label

    def unmatched(self, label: Any) -> None:
        if isinstance(label, ShardLabel) and label.own:
            self.state.own_unmatched.add(label.key)
