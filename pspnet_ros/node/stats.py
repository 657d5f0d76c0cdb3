"""Rolling rate and latency statistics for diagnostics (ROS-free, thread-safe)."""
from __future__ import annotations

from collections import Counter, deque
import statistics
import threading
import time

import numpy as np


class RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._t: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._t.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._t and now - self._t[0] > self.window:
            self._t.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._t) < 2:
                return 0.0
            span = self._t[-1] - self._t[0]
            return (len(self._t) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Recent samples (seconds) per named stage, summarised as percentiles in milliseconds."""

    def __init__(self, maxlen: int = 300):
        self._samples: dict[str, deque[float]] = {}
        self._maxlen = maxlen
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._maxlen)).append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            items = {k: np.asarray(v) for k, v in self._samples.items() if v}
        return {k: {'p50_ms': float(np.percentile(v, 50) * 1e3),
                    'p90_ms': float(np.percentile(v, 90) * 1e3),
                    'p99_ms': float(np.percentile(v, 99) * 1e3),
                    'max_ms': float(v.max() * 1e3)} for k, v in items.items()}


class Counters:
    """Totals since configure (frames by outcome, errors by kind), thread-safe: the one set
    of counters, shared by the scheduler (``cameras.CameraSet``), the frame path and
    diagnostics."""

    def __init__(self):
        self._c: Counter[str] = Counter()
        self._lock = threading.Lock()

    def inc(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def get(self, key: str) -> int:
        with self._lock:
            return self._c[key]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)

    def total(self, prefix: str) -> int:
        """The sum of every counter whose name starts with ``prefix``."""
        with self._lock:
            return sum(v for k, v in self._c.items() if k.startswith(prefix))


class RecentRise:
    """How much a running total rose over the last ``window`` seconds, from samples of it.

    The status level looks at this (one bad frame is a WARN for a while, not for ever) while
    the totals stay counters. Errors are counted from the newest sample at or before
    ``now - window``, so a rise stays visible for the window plus at most one sample period.
    """

    def __init__(self):
        self._samples: deque[tuple[float, int]] = deque([(float('-inf'), 0)])

    def rise(self, total: int, now: float, window: float) -> int:
        """Record ``total`` at ``now``; how much it rose since ``now - window``."""
        cut = now - window
        self._samples.append((now, total))
        while len(self._samples) > 1 and self._samples[1][0] <= cut:
            self._samples.popleft()
        return total - self._samples[0][1]


class StampGaps:
    """Frames missing between a camera's header stamps, when its stamps are regular.

    The middleware reports some losses (``frames.lost``) but not all: a frame overwritten in
    a full subscription queue, or one dropped by the sender's transport, leaves no trace. A
    camera that stamps at a steady period does: a step of k periods (k >= 2) means k - 1
    frames never arrived. The period is the median of the last ``history`` steps, and stamps
    count as regular when every one of those steps lies within ``tolerance`` of it. A step
    of more than ``max_run`` periods is a pause or a restart, not a loss, and starts over.
    """

    def __init__(self, history: int = 8, tolerance: float = 0.25, max_run: int = 10):
        self.tolerance = tolerance
        self.max_run = max_run
        self._steps: deque[float] = deque(maxlen=history)
        self._last: float | None = None

    def period(self) -> float | None:
        """The regular period of the stamps (seconds), or None while they are not regular."""
        if len(self._steps) < self._steps.maxlen:
            return None
        p = statistics.median(self._steps)
        if p <= 0 or any(abs(s - p) > self.tolerance * p for s in self._steps):
            return None
        return p

    def add(self, stamp: float) -> int:
        """Take the next frame's stamp (seconds); how many frames are missing before it."""
        last, self._last = self._last, stamp
        if last is None or stamp <= last or stamp == 0.0:
            if last is not None and stamp < last:
                self._steps.clear()      # stamps went back: a replay or camera restarted
            return 0
        step = stamp - last
        period = self.period()
        if period is not None:
            k = round(step / period)
            if 2 <= k <= self.max_run and abs(step - k * period) <= self.tolerance * period:
                return k - 1            # the step itself is not a new period sample
            if k > self.max_run:
                self._steps.clear()
                return 0
        self._steps.append(step)
        return 0
