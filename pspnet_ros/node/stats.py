"""Rolling rate and latency statistics for diagnostics (ROS-free, thread-safe)."""
from __future__ import annotations

from collections import Counter, deque
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
    """Frame counters (received, processed, dropped, errors by kind)."""

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
