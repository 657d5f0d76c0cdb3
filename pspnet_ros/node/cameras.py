"""Camera set and batch scheduler for one model serving several cameras (ROS-free).

Each camera has a newest-frame slot: a frame that arrives while the previous one still waits
replaces it and is counted as dropped for that camera. An inference worker asks for the next
batch; it gets the waiting frame of every camera that has one, at most ``max_batch`` of them,
the cameras served longest ago first, so under overload every camera gets one frame through
per round and none can starve another.

With ``sync_tolerance`` > 0 a batch is a capture instant instead: the frames whose stamps lie
within the tolerance of the longest-waiting frame. A set is taken as soon as every live camera
has a frame in it, or after ``sync_wait`` seconds without one (counted as incomplete). A
camera is silent, and not waited for, when it published nothing for its liveness window:
``silent_periods`` times its own median frame interval (over its last ``INTERVALS`` frames;
the rig's median until it has one), and at least ``silent_after`` seconds. The window follows
the rig's rate, so a rig triggered every few seconds (or a node whose frames arrive seconds
apart) keeps its sets whole, while a 30 Hz rig stops waiting for a dead camera after
``silent_after``.

With several inference workers (``one_in_flight``), a camera whose frame is still being
processed is not served again until the worker calls ``done``: each camera's outputs then
leave in the order of its frames, and the workers run different cameras side by side.

The frame counts live in one place: the counters given for each camera (the node's
``stats.Counters``; any object with ``inc`` and ``get``). The scheduler adds
``frames.received``, ``frames.dropped``, ``frames.taken`` and, for frames forgotten by
``clear``, ``frames.discarded_on_transition``; the set-wide counters get ``sync.complete``
and ``sync.incomplete``. The slots' ``received``, ``dropped`` and ``taken`` read them.

Nothing here blocks except ``wait``, and every method takes ``now`` so that tests can drive
the clock.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
import re
import statistics
import threading
import time
from typing import Any, Iterable, Mapping

CAMERA_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
INTERVALS = 8      # frame intervals per camera that its liveness window is estimated from


def check_camera_names(names: Iterable[str]) -> tuple[str, ...]:
    """The camera names, checked to be distinct ROS name tokens (``front``, ``cam_left``)."""
    out = []
    for name in names:
        if not CAMERA_NAME.match(name):
            raise ValueError(f'camera name {name!r} must start with a letter and hold only '
                             'letters, digits and underscores (it becomes a topic namespace)')
        if name in out:
            raise ValueError(f'camera name {name!r} appears twice in cameras')
        out.append(name)
    return tuple(out)


class Tally(Counter):
    """Counts for a CameraSet built without the node's counters (tests, tools)."""

    def inc(self, key: str, n: int = 1) -> None:
        self[key] += n

    def get(self, key: str, default: int = 0) -> int:
        return super().get(key, default)


def count_of(key: str) -> property:
    """A read-only property: the ``key`` count of the object's ``counters``."""
    return property(lambda self: self.counters.get(key), doc=f'The {key!r} count.')


@dataclass
class Frame:
    """One waiting frame: the camera's payload (a message, bytes...), its header stamp in
    seconds, and when it was received (monotonic seconds)."""

    camera: str
    payload: Any
    stamp: float
    received: float


@dataclass
class CameraSlot:
    """A camera's newest waiting frame, its counters and its scheduling state."""

    name: str
    counters: Any = field(default_factory=Tally)
    frame: Frame | None = None
    last_put: float | None = None
    last_served: int = -1          # service number of this camera's last taken frame
    last_stamp: float | None = None  # stamp of this camera's last taken frame
    intervals: deque = field(default_factory=lambda: deque(maxlen=INTERVALS))

    def period(self) -> float | None:
        """Median seconds between this camera's recent frames (None before two frames)."""
        return statistics.median(self.intervals) if self.intervals else None

    received = count_of('frames.received')
    dropped = count_of('frames.dropped')
    taken = count_of('frames.taken')


@dataclass
class Batch:
    """Frames to run together (one per camera), and for sync sets whether every live
    camera had a frame in it."""

    frames: list[Frame] = field(default_factory=list)
    complete: bool = True

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def cameras(self) -> list[str]:
        return [f.camera for f in self.frames]


class CameraSet:
    """Newest-frame slots for named cameras and the fair batch scheduler.

    Args:
        names: camera names, in the order used when they tie.
        max_batch: most frames per batch (>= 1). Ignored for sync sets, which are taken whole.
        sync_tolerance: seconds; > 0 batches frames of one capture instant (0 = off).
        sync_wait: seconds a sync set waits for its missing cameras before it runs anyway.
        silent_after: shortest liveness window (seconds): a camera that sent nothing for
            that long, and for ``silent_periods`` of its own frame intervals, is not waited for.
        silent_periods: the liveness window in frame intervals of the camera.
        one_in_flight: serve a camera again only after ``done`` for its last batch (several
            workers taking batches at once).
        counters: each camera's counters (objects with ``inc`` and ``get``, e.g.
            ``stats.Counters``); missing ones are created.
        set_counters: the counters for ``sync.complete`` and ``sync.incomplete``.
    """

    def __init__(self, names: Iterable[str], max_batch: int = 4, sync_tolerance: float = 0.0,
                 sync_wait: float = 0.1, silent_after: float = 1.0,
                 silent_periods: float = 3.0, one_in_flight: bool = False,
                 counters: Mapping[str, Any] | None = None, set_counters: Any = None):
        names = check_camera_names(names) if not _is_default(names) else ('',)
        if max_batch < 1:
            raise ValueError(f'max_batch must be >= 1, got {max_batch}')
        if sync_tolerance < 0 or sync_wait < 0 or silent_after <= 0 or silent_periods <= 0:
            raise ValueError(f'sync_tolerance ({sync_tolerance}) and sync_wait ({sync_wait}) '
                             f'must be >= 0, silent_after ({silent_after}) and silent_periods '
                             f'({silent_periods}) > 0')
        self.max_batch = int(max_batch)
        self.sync_tolerance = float(sync_tolerance)
        self.sync_wait = float(sync_wait)
        self.silent_after = float(silent_after)
        self.silent_periods = float(silent_periods)
        counters = counters or {}
        self.slots = {n: CameraSlot(n, counters[n] if n in counters else Tally())
                      for n in names}
        self.counters = set_counters if set_counters is not None else Tally()
        self._served = 0
        self.one_in_flight = bool(one_in_flight)
        self._in_flight: set[str] = set()
        self._cond = threading.Condition()
        self._closed = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.slots)

    sync_complete = count_of('sync.complete')
    sync_incomplete = count_of('sync.incomplete')

    # -- producer side (subscription callbacks) ---------------------------------------------
    def put(self, camera: str, payload: Any, stamp: float = 0.0,
            now: float | None = None) -> bool:
        """Store ``camera``'s newest frame; True when it replaced one (a drop)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            slot = self.slots[camera]
            slot.counters.inc('frames.received')
            if slot.last_put is not None:
                slot.intervals.append(max(0.0, now - slot.last_put))
            slot.last_put = now
            replaced = slot.frame is not None
            if replaced:
                slot.counters.inc('frames.dropped')
            slot.frame = Frame(camera, payload, float(stamp), now)
            self._cond.notify()
        return replaced

    def silence_window(self, camera: str) -> float:
        """Seconds without a frame after which ``camera`` counts as silent."""
        with self._cond:
            return self._window(self.slots[camera])

    def _window(self, slot: CameraSlot) -> float:
        period = slot.period()
        if period is None:
            # Until a camera has its own interval, the rig's: the median of the others'.
            known = [p for p in (s.period() for s in self.slots.values()) if p is not None]
            period = statistics.median(known) if known else None
        if period is None:
            return self.silent_after
        return max(self.silent_after, self.silent_periods * period)

    def clear(self) -> int:
        """Forget every waiting frame (a lifecycle transition), each counted as
        ``frames.discarded_on_transition`` of its camera; returns how many there were."""
        with self._cond:
            n = 0
            for slot in self.slots.values():
                if slot.frame is not None:
                    slot.counters.inc('frames.discarded_on_transition')
                    n += 1
                slot.frame = None
            return n

    # -- consumer side (the inference workers) ----------------------------------------------
    def take(self, now: float | None = None) -> tuple[Batch | None, float | None]:
        """The batch to run now, or ``(None, seconds)`` to wait at most before asking again
        (``None`` seconds: until a frame arrives)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            return self._take(now)

    def wait(self, timeout: float, now=time.monotonic) -> Batch | None:
        """Block until a batch is due (returned) or ``timeout`` seconds pass, or ``close``."""
        deadline = now() + timeout
        with self._cond:
            while not self._closed:
                t = now()
                batch, delay = self._take(t)
                if batch is not None:
                    return batch
                left = deadline - t
                if left <= 0:
                    return None
                self._cond.wait(left if delay is None else min(left, max(delay, 1e-4)))
        return None

    def done(self, batch: Batch) -> None:
        """The worker finished ``batch``: its cameras may be served again."""
        with self._cond:
            self._in_flight.difference_update(batch.cameras)
            self._cond.notify_all()

    def close(self) -> None:
        """Wake and end ``wait`` (node deactivation)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._in_flight.clear()

    def _take(self, now: float) -> tuple[Batch | None, float | None]:
        waiting = [s for s in self.slots.values()
                   if s.frame is not None and s.name not in self._in_flight]
        if not waiting:
            return None, None
        if self.sync_tolerance > 0:
            return self._take_sync(waiting, now)
        # Longest unserved first; ties keep the configured camera order (sort is stable).
        waiting.sort(key=lambda s: s.last_served)
        return self._serve(waiting[:self.max_batch], complete=True), None

    def _take_sync(self, waiting: list[CameraSlot], now: float
                   ) -> tuple[Batch | None, float | None]:
        anchor = min(waiting, key=lambda s: (s.frame.received, s.last_served)).frame
        members = [s for s in waiting
                   if abs(s.frame.stamp - anchor.stamp) <= self.sync_tolerance]
        live = [s for s in self.slots.values()
                if s.last_put is not None and now - s.last_put <= self._window(s)]
        # A live camera is missing unless its frame of this instant waits here or has already
        # run (it arrived first, e.g. while the other cameras were not live yet).
        complete = all(s in members or (s.last_stamp is not None and
                                        abs(s.last_stamp - anchor.stamp) <= self.sync_tolerance)
                       for s in live)
        if complete:
            self.counters.inc('sync.complete')
        else:
            due = anchor.received + self.sync_wait
            if now < due:
                return None, due - now
            self.counters.inc('sync.incomplete')
        return self._serve(members, complete), None

    def _serve(self, slots: list[CameraSlot], complete: bool) -> Batch:
        batch = Batch(complete=complete)
        # Frames in configured camera order, so outputs come out in a stable order.
        order = {n: i for i, n in enumerate(self.slots)}
        # Service numbers follow the order the cameras were picked in, so cameras left out of a
        # full batch and the later ones of this batch come first next time (round robin).
        for slot in slots:
            self._served += 1
            slot.last_served = self._served
        for slot in sorted(slots, key=lambda s: order[s.name]):
            batch.frames.append(slot.frame)
            slot.last_stamp = slot.frame.stamp
            slot.frame = None
            slot.counters.inc('frames.taken')
            if self.one_in_flight:
                self._in_flight.add(slot.name)
        return batch


def _is_default(names) -> bool:
    """``[]`` or ``['']``: the one unnamed camera of a single-camera node."""
    names = list(names)
    return not names or names == ['']
