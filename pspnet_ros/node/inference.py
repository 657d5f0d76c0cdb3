"""The node's frame path: image callbacks, the inference workers, publishing and fallback.

``FramePath`` knows nothing of the node: it is given a function returning the current
settings (``NodeConfig`` and ``Segmenter``), a setter for a fallback Segmenter, a logger, the
model-wide counters and the thread pool. Each ``Camera`` holds its own publishers,
counters and transport state.

Each batch runs under one snapshot of the settings, taken when a worker starts it: a
parameter changed meanwhile applies from the next batch on.

Two stages: an inference worker converts, preprocesses and runs a batch
(``Segmenter.run_batch``), hands it to the one publishing thread and takes the next batch;
the publishing thread postprocesses (``Segmenter.finish_batch``) and publishes. So frame N is
published while frame N+1 is inferred: where inference leaves a core free, that core no longer
idles while Python postprocesses and publishes (docs/RESULTS.md, "Node against bare"). The
hand-over holds one batch: a worker ahead of the publisher waits, so at
most one batch per worker is inferred but unpublished. A camera's frames reach the publisher
in their order (the scheduler serves a camera again only after its batch was handed over),
and the one publisher keeps that order. Every frame a camera receives
ends in exactly one counted outcome (``diagnostics.FRAME_OUTCOMES``), including frames a
lifecycle transition interrupts (``frames.discarded_on_transition``).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
import queue
import sys
import threading
import time
from typing import Any, Callable

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from ..core.image import ensure_rgb8, ImageError
from .cameras import Batch, CameraSet
from .config import CameraConfig, concurrent_safe, side_by_side
from .convert import cdr_stamp, error_kind, image_from_msg
from .diagnostics import CameraSnapshot
from .publishing import publish, wanted_outputs
from .stats import Counters, LatencyStats, RateMeter, StampGaps

_NO_LOCK = contextlib.nullcontext()


class Camera:
    """One camera's ROS side: subscriptions, publishers, camera info, counters, statistics
    and what its transport did lately."""

    def __init__(self, cfg: CameraConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.subs: list = []
        self.pubs: dict = {}
        self.in_type = Image
        self.camera_info: CameraInfo | None = None
        self.counters = Counters()
        self.latency = LatencyStats()
        self.in_rate, self.out_rate = RateMeter(), RateMeter()
        self.gaps = StampGaps()
        self.subscribed(time.monotonic())

    def subscribed(self, now: float) -> None:
        """A new subscription: no frame and no publisher seen yet."""
        self.last_frame: float | None = None
        self.last_lost: float | None = None    # when the middleware last reported a loss
        self.matched_since: float | None = None
        self.unmatched_since: float | None = now
        self.delivered = False                 # a frame arrived since publishers matched

    def wanted(self, name: str) -> bool:
        pub = self.pubs.get(name)
        return pub is not None and pub.get_subscription_count() > 0

    def lost(self, n: int, now: float) -> None:
        """The middleware reported ``n`` frames that never reached this subscription."""
        self.counters.inc('frames.lost', n)
        self.last_lost = now

    def snapshot(self, now: float, publishers: int, topic: str,
                 silence_window: float | None = None) -> CameraSnapshot:
        """This camera's counters, rates and transport state, given how many publishers
        its image topic has now."""
        if publishers == 0:
            self.matched_since = None
            self.delivered = False
            if self.unmatched_since is None:
                self.unmatched_since = now
        else:
            self.unmatched_since = None
            if self.matched_since is None:
                self.matched_since = now
        since = max(t for t in (self.last_frame, self.matched_since) if t is not None) \
            if publishers else now
        return CameraSnapshot(
            name=self.name, topic=topic, counters=self.counters.snapshot(),
            latency=self.latency.summary(), input_rate_hz=self.in_rate.rate(now),
            output_rate_hz=self.out_rate.rate(now), silence_window_s=silence_window,
            publishers=publishers, delivered=self.delivered,
            last_frame_age=None if self.last_frame is None else now - self.last_frame,
            quiet_s=now - since,
            unmatched_s=0.0 if self.unmatched_since is None else now - self.unmatched_since,
            lost_age=None if self.last_lost is None else now - self.last_lost)


class ThrottledLog:
    """Warnings of one kind at most once per ``throttle()`` seconds."""

    def __init__(self, logger, throttle: Callable[[], float]):
        self.logger = logger
        self.throttle = throttle
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, kind: str, text: str, at_least: float = 0.0) -> None:
        """Log ``text`` unless a warning of this kind was logged in the last ``throttle()``
        (or ``at_least``, if longer) seconds."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -1e9) < max(self.throttle(), at_least):
                return
            self._last[kind] = now
        self.logger.warning(text)


class FramePath:
    """Camera frames in, published outputs out, on ``workers`` inference threads.

    Args:
        settings: returns the current ``(NodeConfig, Segmenter)``; read once per batch.
        replace_segmenter: called with ``(segmenter, note)`` when a fallback backend takes
            over after a run-time failure.
        logger: where errors and warnings go (``log`` throttles them).
        counters: the model-wide counters (batches, fallbacks, model-wide errors).
        latency: the model-wide batch latency.
        context_ok: False once ROS is shutting down (a frame broken by shutdown is not an
            error).
    """

    def __init__(self, settings: Callable[[], tuple[Any, Any]],
                 replace_segmenter: Callable[[Any, str], None], logger, log: ThrottledLog,
                 counters: Counters, latency: LatencyStats, context_ok: Callable[[], bool]):
        self._settings = settings
        self._replace_segmenter = replace_segmenter
        self.logger = logger
        self.log = log
        self.counters = counters
        self.latency = latency
        self._context_ok = context_ok
        self.cams: dict[str, Camera] = {}
        self.camset: CameraSet | None = None
        self._workers: list[Future] = []
        self._running = False
        self._handover: queue.Queue | None = None     # worker -> publisher, one batch
        self._publisher: threading.Thread | None = None
        # Backends other than torch on CPU are not safe to run from two threads at once
        # (TFLite interpreters, CUDA graphs' static buffers): their batches take turns, unless
        # each worker has a backend of its own (TFLite: ``Segmenter.replica``).
        self._run_lock = threading.Lock()
        self._replicas: dict[int, tuple[Any, Any]] = {}   # worker -> (Segmenter, its replica)
        self._worker_count = 1
        self._fallback_lock = threading.Lock()
        # node/ground.GroundGrid when ground_enabled: one call per published frame
        self.ground = None

    # -- the image callback ------------------------------------------------------------------
    def on_image(self, cam: Camera, raw: bytes) -> None:
        """A serialized frame arrived: stamp gaps, then the camera's newest-frame slot (the
        scheduler counts it received, and dropped if it replaced a waiting one)."""
        now = time.monotonic()
        cam.last_frame = now
        cam.delivered = True
        cam.in_rate.tick(now)
        stamp = cdr_stamp(raw)
        missing = cam.gaps.add(stamp)
        if missing:
            cam.counters.inc('frames.gaps_inferred', missing)
        camset = self.camset
        if camset is not None:
            camset.put(cam.name, raw, stamp, now)
        else:       # between transitions: received and at once discarded
            cam.counters.inc('frames.received')
            cam.counters.inc('frames.discarded_on_transition')

    # -- workers -----------------------------------------------------------------------------
    def start(self, cams: dict[str, Camera], camset: CameraSet, pool, workers: int,
              threads: int) -> None:
        """Run ``workers`` inference loops on ``pool``, each with ``threads`` CPU threads."""
        self.cams, self.camset = cams, camset
        self._running = True
        camset.reopen()
        handover = self._handover = queue.Queue(maxsize=1)
        self._publisher = threading.Thread(target=self._publish_loop, args=(handover,),
                                           daemon=True, name='pspnet_publish')
        self._publisher.start()
        self._worker_count = workers
        if workers > 1:     # each worker's own backend, built now rather than on a frame
            for index in range(workers):
                self._segmenter_for(index, threads)
        self._workers = [pool.submit(self._work, camset, handover, index, threads)
                         for index in range(workers)]

    def stop(self) -> None:
        """Stop the workers (each finishes the batch it runs, and the publisher the batches
        handed to it, up to 10 s) and count the frames still waiting as discarded on
        transition."""
        self._running = False
        camset = self.camset
        if camset is not None:
            camset.close()
        end = time.monotonic() + 10.0
        for worker in self._workers:
            try:
                worker.result(timeout=max(0.0, end - time.monotonic()))
            except FutureTimeout:
                self.logger.warning('inference thread still busy after 10 s; leaving it')
                break
        self._workers = []
        self._replicas.clear()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(queue.Full):
                self._handover.put(None, timeout=max(0.0, end - time.monotonic()))
                publisher.join(max(0.0, end - time.monotonic()))
            if publisher.is_alive():
                self.logger.warning('publishing thread still busy after 10 s; leaving it')
        if camset is not None:
            camset.clear()

    def release(self) -> None:
        """Forget the cameras and the scheduler (cleanup); call after ``stop``."""
        self.cams, self.camset = {}, None

    def _work(self, camset: CameraSet, handover: queue.Queue, index: int, threads: int
              ) -> None:
        if 'torch' in sys.modules and threads:
            # This thread's OpenMP pool only (its size is per calling thread); a thread of the
            # pool may have served another worker count before a reconfigure.
            import torch
            torch.set_num_threads(threads)
        while self._running:
            batch = camset.wait(0.5)
            if batch is None:
                continue
            # The frames of this batch without an outcome yet, by camera (one frame each).
            pending = {f.camera: self.cams[f.camera] for f in batch.frames
                       if f.camera in self.cams}
            try:
                if self._running:
                    job = self._infer(batch, pending, index, threads)
                    if job is not None:
                        # From here the publisher owns the frames' outcomes.
                        handover.put((job, pending))
                        pending = {}
            except Exception as exc:  # a bad frame or a failing backend must not kill the node
                self._failed(exc, pending)
            finally:
                self._settle_all(pending, 'frames.discarded_on_transition')
                camset.done(batch)

    def _publish_loop(self, handover: queue.Queue) -> None:
        """The publishing thread: postprocess and publish the batches handed over, in order,
        until ``stop`` hands over ``None``."""
        while True:
            item = handover.get()
            if item is None:
                return
            job, pending = item
            try:
                self._publish_job(job, pending)
            except Exception as exc:
                self._failed(exc, pending)
            finally:
                self._settle_all(pending, 'frames.discarded_on_transition')

    def _failed(self, exc: Exception, pending: dict) -> None:
        """An unexpected error in a batch: its frames count as internal errors, unless the
        node is stopping (Ctrl-C, SIGTERM, deactivation), when they count as discarded."""
        if self._running and self._context_ok():
            self._settle_all(pending, 'errors.internal')
            self.error(None, 'internal', f'unexpected {type(exc).__name__}: {exc}')

    @staticmethod
    def _settle(pending: dict, cam: Camera, key: str) -> None:
        """Count ``cam``'s frame of this batch as ``key`` (its one outcome)."""
        if pending.pop(cam.name, None) is not None:
            cam.counters.inc(key)

    def _settle_all(self, pending: dict, key: str) -> None:
        """Settle every pending frame as ``key``; an ``errors.*`` kind is counted under its
        own key too, and the frame's outcome is ``frames.errors``."""
        outcome = 'frames.errors' if key.startswith('errors.') else key
        for cam in list(pending.values()):
            if outcome != key:
                cam.counters.inc(key)
            self._settle(pending, cam, outcome)

    # -- one batch ---------------------------------------------------------------------------
    def _segmenter_for(self, index: int, threads: int) -> tuple[Any, Any, Any, bool]:
        """The current settings and Segmenter, the Segmenter that worker ``index`` runs, and
        whether that one is the worker's own (no lock needed). With several workers on a
        backend that cannot be shared (TFLite), each worker gets a replica with ``threads`` CPU
        threads, built again when the Segmenter changes (a fallback)."""
        cfg, seg = self._settings()
        if seg is None or self._worker_count < 2 or concurrent_safe(seg) \
                or not side_by_side(seg):
            return cfg, seg, seg, concurrent_safe(seg)
        base, own = self._replicas.get(index, (None, None))
        if base is not seg:
            try:
                own = seg.replica(max(1, threads))
            except Exception as exc:     # memory, a runtime refusing a second instance
                own = None
                self.log.warn('replica', f'worker {index} shares the backend, one batch at a '
                              f'time: no backend of its own ({exc})')
            self._replicas[index] = (seg, own)
        return (cfg, seg, own, True) if own is not None else (cfg, seg, seg, False)

    def _infer(self, batch: Batch, pending: dict, index: int, threads: int) -> tuple | None:
        """Decode the batch's frames and run the good ones together (``max_batch`` at a
        time), under one snapshot of the settings, on worker ``index``'s Segmenter; returns
        what the publisher needs, or None when nothing is left to publish."""
        cfg, base, seg, unlocked = self._segmenter_for(index, threads)
        if cfg is None or seg is None:
            return None     # cleaned up meanwhile: the frames count as discarded
        ready = []      # (camera, message, rgb, wanted outputs, receive time, decode seconds)
        for frame in batch.frames:
            cam = self.cams[frame.camera]
            want = wanted_outputs(cam, cfg, self.ground)
            if not any(want.values()):
                self._settle(pending, cam, 'frames.skipped_no_subscribers')
                continue
            t0 = time.perf_counter()
            try:
                msg = deserialize_message(frame.payload, cam.in_type)
            except Exception as exc:  # not CDR of the subscribed type
                self.error(cam, 'deserialize', f'frame rejected: cannot deserialize '
                           f'{cam.in_type.__name__}: {exc}', pending)
                continue
            decoder_said: list[str] = []
            try:
                # The Segmenter's own check too, per frame, so one bad frame never costs the
                # rest of the batch.
                rgb = ensure_rgb8(image_from_msg(msg, cfg.max_image_pixels, decoder_said),
                                  cfg.max_image_pixels)
            except ValueError as exc:
                self.error(cam, error_kind(exc), f'frame rejected: {exc}', pending)
                continue
            if decoder_said:
                # Damaged but decodable (e.g. a JPEG cut short): processed, counted, logged
                # throttled instead of the decoder printing a line per frame.
                cam.counters.inc('frames.decoder_warnings')
                where = f'{cam.name}: ' if cam.name else ''
                self.log.warn(
                    f'{cam.name}/decoder', f'{where}decoder warning on a frame (processed '
                    f'anyway; {cam.counters.get("frames.decoder_warnings")} so far): '
                    + '; '.join(decoder_said))
            ready.append((cam, msg, rgb, want, frame.received, time.perf_counter() - t0))
        runs = []       # (frames of one backend run, its InferredBatch)
        for i in range(0, len(ready), cfg.max_batch):
            chunk = ready[i:i + cfg.max_batch]
            try:
                with (_NO_LOCK if unlocked else self._run_lock):
                    inferred = seg.run_batch([r[2] for r in chunk],
                                             confidence=[r[3]['confidence'] for r in chunk],
                                             occupancy=[r[3]['occupancy'] for r in chunk])
            except Exception as exc:
                self._run_failed(exc, chunk, cfg, seg, pending, base)
                continue
            runs.append((chunk, inferred))
        return (cfg, base, seg, runs) if runs else None

    def _publish_job(self, job: tuple, pending: dict) -> None:
        """Postprocess each run of a batch and publish each camera's outputs with its own
        input header, under the settings the batch was inferred with."""
        cfg, base, seg, runs = job
        for chunk, inferred in runs:
            try:
                results = seg.finish_batch(inferred, regions=cfg.regions)
            except Exception as exc:
                self._run_failed(exc, chunk, cfg, seg, pending, base)
                continue
            self.counters.inc('batches')
            self.counters.inc('batches.frames', len(chunk))
            self.latency.add('inference', results[0].timings['inference'])
            for (cam, msg, rgb, want, t_recv, decode_s), res in zip(chunk, results):
                t2 = time.perf_counter()
                publish(cam, msg.header, rgb, want, res, seg, cfg)
                ground = self.ground
                if ground is not None:      # projects only if a ground output has subscribers
                    ground.on_frame(cam.name, msg.header, res.labels)
                t3 = time.perf_counter()
                self._settle(pending, cam, 'frames.processed')
                cam.out_rate.tick()
                lat = cam.latency
                lat.add('decode', decode_s)
                for k in ('preprocess', 'inference', 'postprocess'):
                    lat.add(k, res.timings[k])
                lat.add('encode_publish', t3 - t2)
                lat.add('end_to_end', time.monotonic() - t_recv)

    def _run_failed(self, exc: Exception, chunk: list, cfg, seg, pending: dict, base) -> None:
        """A run of ``chunk``'s frames on ``seg`` failed (in the backend or in
        postprocessing): a bad frame is that frame's error; anything else counts against every
        frame of the run and may start a fallback for ``base``, the settings' Segmenter (``seg``
        or the one it is a worker's replica of)."""
        if isinstance(exc, ImageError):
            # A bad frame says nothing about the backend: never a reason to fall back.
            for cam, *_ in chunk:
                self.error(cam, error_kind(exc), f'frame rejected: {exc}', pending)
            return
        for cam, *_ in chunk:     # each camera's diagnostics show its lost frames
            cam.counters.inc('errors.inference')
            self._settle(pending, cam, 'frames.errors')
        self.error(None, 'inference', f'inference failed on {seg.backend.describe()} '
                   f'(batch of {len(chunk)}): {exc}')
        self._try_fallback(exc, base, cfg)

    def _try_fallback(self, exc: Exception, failed, cfg) -> None:
        with self._fallback_lock:
            if self._settings()[1] is not failed:
                return      # another worker has already replaced the failed backend
            try:
                backend = failed.backend
                seg, note = cfg.fallback_segmenter(backend.name, exc, backend.device)
            except Exception as err:
                self.logger.error(f'no fallback backend available: {err}')
                return
            if seg is not None:
                self._replace_segmenter(seg, note)
                self.counters.inc('fallbacks')
                self.logger.warning(note)

    def error(self, cam: Camera | None, kind: str, text: str,
              pending: dict | None = None) -> None:
        """Count an error (for ``cam``'s frame, its outcome; or model-wide) and log it,
        throttled per kind."""
        counters = cam.counters if cam is not None else self.counters
        counters.inc(f'errors.{kind}')
        if cam is not None and pending is not None:
            self._settle(pending, cam, 'frames.errors')
        where = f'{cam.cfg.label}: ' if cam is not None and cam.name else ''
        total = counters.get(f'errors.{kind}')
        self.log.warn(f'{cam.name if cam else ""}/{kind}',
                      f'[{kind}] {where}{text} ({total} so far)')
