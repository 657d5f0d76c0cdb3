"""The ROS 2 segmentation node: a thin lifecycle shell around ``pspnet_ros.core.Segmenter``.

Subscribes ``image`` (or ``image/compressed``) and optionally ``camera_info``; publishes
``~/mask``, ``~/color_mask``, ``~/overlay``, ``~/confidence``, ``~/occupancy``,
``~/camera_info``, ``~/label_info`` and ``/diagnostics``. With ``cameras: [front, ...]`` each
camera has its own ``front/image`` ... inputs and ``~/front/mask`` ... outputs, and one model
serves them all. Inference runs on one worker thread; per camera the newest frame wins and
every overwritten frame is counted as dropped; the scheduler (``cameras.CameraSet``) batches
the waiting frames of all cameras fairly.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
import json
import os
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.serialization import deserialize_message
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from ..core.image import ensure_rgb8, ImageError
from ..core.segmenter import overlay
from ..core.threads import choose_spin, configure_threads, ThreadSettings, usable_cpus
from .cameras import Batch, CameraSet
from . import parameters
from .config import CameraConfig, concurrent_safe, NodeConfig, plan_workers
from .convert import (cdr_stamp, error_kind, float_to_msg, image_from_msg, labels_to_msg,
                      occupancy_to_msg, rgb_to_msg)
from .stats import Counters, LatencyStats, RateMeter

OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence', 'occupancy', 'camera_info')
FRAME_COUNTS = ('frames.received', 'frames.processed', 'frames.dropped', 'frames.lost',
                'frames.decoder_warnings', 'frames.skipped_no_subscribers')


# What the starvation / lost-frames warnings tell the user to do.
LARGE_FRAMES_FIX = ('camera-sized frames need the Fast DDS profile '
                    'config/fastdds_large_frames.xml in BOTH the camera and this process '
                    '(segment.launch.py sets it; else export FASTDDS_DEFAULT_PROFILES_FILE), or '
                    'image_qos: reliable across hosts; see docs/ROS_INTERFACE.md')

# Starvation and lost frames share one warning, logged at most this often (seconds); the
# counts stay current in /diagnostics.
TRANSPORT_WARN_PERIOD = 60.0


class _Camera:
    """One camera's ROS side: its subscriptions, publishers, camera info and statistics."""

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
        self.last_frame = time.monotonic()
        self.last_lost = -1e9              # when the middleware last reported lost frames
        self.matched_since: float | None = None

    def wanted(self, name: str) -> bool:
        pub = self.pubs.get(name)
        return pub is not None and pub.get_subscription_count() > 0


class SegmentNode(LifecycleNode):
    """PSPNet segmentation as a managed node."""

    def __init__(self, node_name: str = 'pspnet_segmentation', memory_note: str = '',
                 **kwargs):
        super().__init__(node_name, **kwargs)
        self.memory_note = memory_note      # what main() did to malloc, for the configure log
        parameters.declare(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.cfg: NodeConfig | None = None
        self.segmenter = None
        self.backend_note = ''
        # Model-wide counters and stage latencies (per-batch); per-camera ones are in _Camera.
        self.counters = Counters()
        self.latency = LatencyStats()
        self.cams: dict[str, _Camera] = {}
        self.camset: CameraSet | None = None
        # Model builds and inference run on this pool. The model is built on its first
        # thread, which also runs the first (often only) worker: PyTorch's OpenMP pool belongs
        # to the thread that calls it, and building the model on the executor thread and
        # running it on another left two pools on the cores, ~35 % slower on 2 cores (45 vs 33
        # ms, docs/BENCHMARKS.md). Further workers (inference_workers) start further threads,
        # each with an OpenMP pool of its own size.
        self._infer_pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                              thread_name_prefix='pspnet_inference')
        self._workers: list[Future] = []
        self.workers = 1                 # inference workers of the current configuration
        self.worker_threads = 0          # CPU threads of each worker (0: the process's)
        # Backends other than torch on CPU are not safe to run from two threads at once
        # (TFLite interpreters, CUDA graphs' static buffers): their batches take turns.
        self._run_lock = threading.Lock()
        self._fallback_lock = threading.Lock()
        self._running = False
        self._pubs: dict = {}
        self._diag_timer = None
        self._last_warn: dict[str, float] = {}
        self.options_note = ''
        self._start_cpus = usable_cpus()
        self.threads = configure_threads(0, spin=None)

    # -- parameters --------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        configured = self.cfg is not None
        refused = parameters.refusal([p.name for p in params], configured)
        if refused:
            return SetParametersResult(successful=False, reason=refused)
        # The same validation configure uses, on the values as they would be after the change.
        try:
            self._read_config({p.name: p.value for p in params})
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if configured:
            # Cosmetic parameters take effect on the next frame.
            changes = {p.name: p.value for p in params}
            self.cfg = self.cfg.updated(changes)
            if 'max_image_pixels' in changes and self.segmenter is not None:
                # The Segmenter checks frames too; both must use the new limit.
                self.segmenter.max_pixels = int(changes['max_image_pixels'])
            if 'occupancy_regions' in changes and 'label_info' in self._pubs:
                self._publish_label_info()      # region names/boxes live there
        return SetParametersResult(successful=True)

    def _read_config(self, changes: dict | None = None) -> NodeConfig:
        """The configuration from the current parameters, with ``changes`` applied."""
        return NodeConfig.from_parameters(parameters.values(self, changes))

    # -- lifecycle ---------------------------------------------------------------------------
    def autostart(self) -> None:
        """Configure and activate, unless ``autostart`` is false (a lifecycle manager will)."""
        if self.get_parameter('autostart').value:
            self.trigger_configure()
            if self._state_machine.current_state[1] == 'inactive' and self.context.ok():
                self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # configuration errors must be readable, never a trace
            self._undo_configure()
            if self.context.ok():     # else a signal ended ROS during the configure
                self.get_logger().error(f'configure failed: {exc}')
            else:
                self._quiet()
            return TransitionCallbackReturn.FAILURE
        if not self.context.ok():     # a signal during the configure: nothing to start
            self._undo_configure()
            self._quiet()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _quiet(self) -> None:
        """The process is ending (a signal shut ROS down during a transition): rclpy's
        lifecycle cannot publish the transition's event on the shut-down context and would log
        that as an ERROR; only fatal messages are left to log."""
        from rclpy.logging import LoggingSeverity
        self.get_logger().set_level(LoggingSeverity.FATAL)

    def _undo_configure(self) -> None:
        """Give back what a failed configure applied: publishers, model, and the process's
        CPU affinity and thread counts as they were before it."""
        self._release_outputs()
        self.threads = configure_threads(0, self._start_cpus, spin=None)

    def _configure(self) -> None:
        parameters.declare_camera_overrides(self)   # cameras may have changed since start
        # libgomp reads its spin count when torch loads, and checking the options below
        # loads the backend: one camera does not spin, several do (core.threads).
        spin_notes = choose_spin(len(self.get_parameter('cameras').value or []) > 1)
        self.cfg = self._read_config()
        self.threads = self._apply_threads(self.cfg)
        self.threads.notes[:0] = spin_notes
        self.options_note = self.cfg.options_for(self.cfg.backend)[1]
        self.segmenter, self.backend_note = self._infer_pool.submit(
            self.cfg.build_segmenter).result()
        for note in (self.options_note, *self.threads.notes, self.backend_note):
            if note:
                self.get_logger().warning(note)
        cfg = self.cfg
        self.workers, self.worker_threads, workers_note = plan_workers(
            cfg, self.segmenter, self.threads.threads)
        if workers_note:
            self.get_logger().warning(workers_note)
        self.cams = {c.name: _Camera(c) for c in cfg.cameras}
        # Several workers (torch on CPU) take one frame each: on CPU a batch runs no faster
        # than its frames one by one (scripts/bench_batch.py: 0.92-1.02x), and a worker of
        # one frame holds a quarter of a 4-frame batch's activations and answers sooner.
        batch = 1 if self.workers > 1 else cfg.max_batch
        self.camset = CameraSet(list(self.cams), max_batch=batch,
                                sync_tolerance=cfg.sync_tolerance, sync_wait=cfg.sync_wait,
                                one_in_flight=self.workers > 1)
        self._make_publishers()
        self.get_logger().info(
            f'configured: model {self.segmenter.card.name} ({self.segmenter.num_classes} '
            f'classes, input {self.segmenter.input_size[1]}x{self.segmenter.input_size[0]}) on '
            f'{self.segmenter.backend.selection}; {self.threads.describe()}'
            + (f'; {self.workers} inference workers of {self.worker_threads} thread'
               f'{"s" if self.worker_threads > 1 else ""} each' if self.workers > 1 else '')
            + (f'; {self.memory_note}' if self.memory_note else ''))

    def _apply_threads(self, cfg: NodeConfig) -> ThreadSettings:
        """Pin the process to ``cpu_affinity`` (or back to the CPUs it started with) and size
        the inference pools for the CPUs it may use (the spin count is chosen before, in
        ``on_configure``)."""
        return configure_threads(cfg.num_threads, cfg.cpu_affinity or self._start_cpus,
                                 spin=None)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        # The lifecycle publishers publish from here on (label_info is the first message).
        result = super().on_activate(state)
        self._make_subscriptions()
        self._publish_label_info()
        self._running = True
        self.camset.reopen()
        self._workers = [self._infer_pool.submit(self._work) for _ in range(self.workers)]
        self._diag_timer = self.create_timer(self.cfg.diagnostics_period, self._publish_diag)
        topics = ', '.join(c.subs[0].topic_name for c in self.cams.values())
        extra = (f' ({len(self.cams)} cameras, batches of up to {self.camset.max_batch}'
                 + (f', synchronised within {self.cfg.sync_tolerance} s' if
                    self.cfg.sync_tolerance else '')
                 + (f', {self.workers} inference workers' if self.workers > 1 else '')
                 + ')') if self.cfg.multi_camera else ''
        self.get_logger().info(f'active: listening on {topics}{extra}')
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._release_inputs()
        self.get_logger().info('deactivated: image subscription and diagnostics stopped')
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release_outputs()
        self.get_logger().info('cleaned up: publishers and model released')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        # Reached from unconfigured, inactive or active: release whatever that state holds.
        self._release_inputs()
        self._release_outputs()
        self._close_inference()
        self.get_logger().info(f'shut down from {state.label}: subscriptions, timers, '
                               'publishers and the model released')
        return TransitionCallbackReturn.SUCCESS

    def _release_inputs(self) -> None:
        """Stop the worker, every camera's subscriptions and the diagnostics timer."""
        self._stop_worker()
        for cam in self.cams.values():
            for s in cam.subs:
                self.destroy_subscription(s)
            cam.subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def _release_outputs(self) -> None:
        for cam in self.cams.values():
            for p in cam.pubs.values():
                self.destroy_lifecycle_publisher(p)
            cam.pubs = {}
        for p in self._pubs.values():
            self.destroy_lifecycle_publisher(p)
        self._pubs = {}
        self.cams = {}
        self.camset = None
        self.segmenter = None
        self.cfg = None

    # -- entities ----------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        # Lifecycle publishers (as ros2/demos' lifecycle_py): nothing goes out while the node
        # is inactive, e.g. a frame finishing after a deactivate or label_info after a
        # parameter change. Reliable with a few samples of history, so a subscriber that is
        # briefly slow to acknowledge still gets every published frame.
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        events = PublisherEventCallbacks(incompatible_qos=self._on_pub_incompatible)
        spec = {'mask': Image, 'color_mask': Image, 'overlay': Image, 'confidence': Image,
                'occupancy': PointCloud2, 'camera_info': CameraInfo}
        for cam in self.cams.values():
            for name, typ in spec.items():
                cam.pubs[name] = self.create_lifecycle_publisher(
                    typ, cam.cfg.output(name), out_qos, event_callbacks=events)
        self._pubs['label_info'] = self.create_lifecycle_publisher(String, '~/label_info',
                                                                   latched)
        self._pubs['diagnostics'] = self.create_lifecycle_publisher(DiagnosticArray,
                                                                    '/diagnostics', 10)

    def _make_subscriptions(self) -> None:
        for cam in self.cams.values():
            self._subscribe(cam)

    def _subscribe(self, cam: _Camera) -> None:
        cfg = cam.cfg
        reliability = (ReliabilityPolicy.RELIABLE if cfg.image_qos == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=cfg.qos_depth, reliability=reliability,
                         history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda event: self._on_sub_incompatible(cam, event),
            message_lost=lambda event: self._on_message_lost(cam, event))
        cam.last_frame = time.monotonic()
        cam.matched_since = None
        # raw=True: the callback gets the serialized bytes and only the frame the worker
        # takes is turned into a Python message, so frames dropped under overload cost a copy,
        # not a conversion holding the GIL that inference also needs.
        if cfg.input_transport == 'compressed':
            cam.in_type, topic = CompressedImage, cfg.topic('image/compressed')
        else:
            cam.in_type, topic = Image, cfg.topic('image')
        cam.subs = [self.create_subscription(cam.in_type, topic,
                                             lambda raw: self._on_image(cam, raw), qos,
                                             event_callbacks=events, raw=True)]
        if cfg.use_camera_info:
            cam.subs.append(self.create_subscription(
                CameraInfo, cfg.topic('camera_info'),
                lambda msg: setattr(cam, 'camera_info', msg), qos))

    def _on_sub_incompatible(self, cam: _Camera, event) -> None:
        cam.counters.inc('errors.qos_incompatible')
        want = cam.cfg.image_qos
        fix = ('set image_qos: sensor_data (best effort accepts any publisher)'
               if want == 'reliable' else
               'the publisher asks for something this subscription does not offer; check its '
               'durability/deadline settings')
        topic = cam.subs[0].topic_name if cam.subs else cam.cfg.topic('image')
        self.get_logger().warning(
            f'incompatible QoS with a publisher on {topic} (policy {event.last_policy_kind}); '
            f'no frames will arrive: {fix}')

    def _on_message_lost(self, cam: _Camera, event) -> None:
        # The middleware saw frames that never reached this subscription (e.g. fragments
        # dropped: camera-sized frames without the large-frames profile).
        n = int(event.total_count_change)
        if n <= 0:
            return
        cam.counters.inc('frames.lost', n)
        cam.last_lost = time.monotonic()
        where = f'{cam.name}: ' if cam.name else ''
        self._warn_throttled(f'{cam.name}/transport', f'{where}{n} frame(s) lost in transport '
                             f'before reaching the node ({cam.counters.get("frames.lost")} so '
                             f'far): {LARGE_FRAMES_FIX}', TRANSPORT_WARN_PERIOD)

    def _starvation(self, cam: _Camera, now: float) -> float:
        """Seconds without a frame while publishers are matched on the camera's image topic
        (0 when frames arrive or nobody publishes); logged at most once a minute."""
        if not cam.subs or self.cfg is None:
            return 0.0
        topic = cam.subs[0].topic_name
        publishers = self.count_publishers(topic)
        if publishers == 0:
            cam.matched_since = None
            return 0.0
        if cam.matched_since is None:
            cam.matched_since = now
        quiet = now - max(cam.last_frame, cam.matched_since)
        if quiet < self.cfg.starvation_warn_sec:
            return 0.0
        self._warn_throttled(
            f'{cam.name}/transport', f'{publishers} publisher(s) matched on {topic} but no '
            f'frame arrived for {quiet:.1f} s ({cam.counters.get("frames.lost")} reported '
            f'lost): {LARGE_FRAMES_FIX}', TRANSPORT_WARN_PERIOD)
        return quiet

    def _on_pub_incompatible(self, event) -> None:
        self.counters.inc('errors.qos_incompatible')
        self.get_logger().warning(
            f'a subscriber to an output topic requests an incompatible QoS (policy '
            f'{event.last_policy_kind}); outputs are reliable + volatile (label_info is '
            'transient local): subscribe with a compatible profile')

    # -- data path ---------------------------------------------------------------------------
    def _on_image(self, cam: _Camera, raw: bytes) -> None:
        now = time.monotonic()
        cam.last_frame = now
        cam.counters.inc('frames.received')
        cam.in_rate.tick(now)
        camset = self.camset
        if camset is not None and camset.put(cam.name, raw, cdr_stamp(raw), now):
            cam.counters.inc('frames.dropped')

    def _work(self) -> None:
        camset = self.camset
        if 'torch' in sys.modules:
            # This thread's OpenMP pool only (its size is per calling thread); a thread of the
            # pool may have served another worker count before a reconfigure.
            import torch
            torch.set_num_threads(self.worker_threads or self.threads.threads)
        while self._running:
            batch = camset.wait(0.5)
            if batch is None or not self._running:
                continue
            try:
                self._process(batch)
            except Exception as exc:  # a bad frame or a failing backend must not kill the node
                if not self._running or not self.context.ok():
                    # Ctrl-C / SIGTERM / shutdown during a frame: its outputs are gone with
                    # ROS; not an error.
                    return
                self._error(None, 'internal', f'unexpected {type(exc).__name__}: {exc}')
            finally:
                camset.done(batch)

    def _close_inference(self) -> None:
        """Stop the worker and release the inference thread (shutdown, process exit)."""
        self._stop_worker()
        self._infer_pool.shutdown(wait=False)

    def _stop_worker(self) -> None:
        self._running = False
        if self.camset is not None:
            self.camset.close()
            self.camset.clear()
        end = time.monotonic() + 10.0
        for worker in self._workers:
            try:
                worker.result(timeout=max(0.0, end - time.monotonic()))
            except FutureTimeout:
                self.get_logger().warning('inference thread still busy after 10 s; leaving it')
                break
        self._workers = []

    def _process(self, batch: Batch) -> None:
        """Decode the batch's frames, run the good ones together (``max_batch`` at a time) and
        publish each camera's outputs with its own input header."""
        cfg, seg = self.cfg, self.segmenter
        if cfg is None or seg is None:
            return
        ready = []      # (camera, message, rgb, wanted outputs, receive time, decode seconds)
        for frame in batch.frames:
            cam = self.cams[frame.camera]
            want = {n: cam.wanted(n) for n in OUTPUTS}
            want['color_mask'] &= cfg.publish_color_mask
            want['overlay'] &= cfg.publish_overlay
            want['confidence'] &= cfg.publish_confidence
            if not any(want.values()):
                cam.counters.inc('frames.skipped_no_subscribers')
                continue
            t0 = time.perf_counter()
            try:
                msg = deserialize_message(frame.payload, cam.in_type)
            except Exception as exc:  # not CDR of the subscribed type
                self._error(cam, 'deserialize', f'frame rejected: cannot deserialize '
                            f'{cam.in_type.__name__}: {exc}')
                continue
            decoder_said: list[str] = []
            try:
                # The Segmenter's own check too, per frame, so one bad frame never costs the
                # rest of the batch.
                rgb = ensure_rgb8(image_from_msg(msg, cfg.max_image_pixels, decoder_said),
                                  seg.max_pixels)
            except ValueError as exc:
                self._error(cam, error_kind(exc), f'frame rejected: {exc}')
                continue
            if decoder_said:
                # Damaged but decodable (e.g. a JPEG cut short): processed, counted, logged
                # throttled instead of the decoder printing a line per frame.
                cam.counters.inc('frames.decoder_warnings')
                where = f'{cam.name}: ' if cam.name else ''
                self._warn_throttled(
                    f'{cam.name}/decoder', f'{where}decoder warning on a frame (processed '
                    f'anyway; {cam.counters.get("frames.decoder_warnings")} so far): '
                    + '; '.join(decoder_said))
            ready.append((cam, msg, rgb, want, frame.received, time.perf_counter() - t0))
        if not batch.complete:
            self.counters.inc('sync.incomplete')
        elif cfg.sync_tolerance > 0:
            self.counters.inc('sync.complete')
        for i in range(0, len(ready), cfg.max_batch):
            self._run(ready[i:i + cfg.max_batch])

    def _run(self, ready: list) -> None:
        cfg, seg = self.cfg, self.segmenter
        try:
            with (_NO_LOCK if concurrent_safe(seg) else self._run_lock):
                results = seg.segment_batch([r[2] for r in ready],
                                            confidence=[r[3]['confidence'] for r in ready],
                                            occupancy=[r[3]['occupancy'] for r in ready],
                                            regions=cfg.regions)
        except ImageError as exc:
            # A bad frame says nothing about the backend: never a reason to fall back.
            for cam, *_ in ready:
                self._error(cam, error_kind(exc), f'frame rejected: {exc}')
            return
        except Exception as exc:
            for cam, *_ in ready:     # each camera's diagnostics show its lost frames
                cam.counters.inc('errors.inference')
            self._error(None, 'inference', f'inference failed on {seg.backend.describe()} '
                        f'(batch of {len(ready)}): {exc}')
            self._try_fallback(exc, seg)
            return
        self.counters.inc('batches')
        self.counters.inc('batches.frames', len(ready))
        timings = results[0].timings
        self.latency.add('inference', timings['inference'])
        for (cam, msg, rgb, want, t_recv, decode_s), res in zip(ready, results):
            t2 = time.perf_counter()
            self._publish(cam, msg.header, rgb, want, res, seg)
            t3 = time.perf_counter()
            cam.counters.inc('frames.processed')
            cam.out_rate.tick()
            lat = cam.latency
            lat.add('decode', decode_s)
            for k in ('preprocess', 'inference', 'postprocess'):
                lat.add(k, res.timings[k])
            lat.add('encode_publish', t3 - t2)
            lat.add('end_to_end', time.monotonic() - t_recv)

    def _publish(self, cam: _Camera, header, rgb, want: dict, res, seg) -> None:
        cfg, pubs = self.cfg, cam.pubs
        if want['mask']:
            pubs['mask'].publish(labels_to_msg(res.labels, header))
        if want['color_mask'] or want['overlay']:
            color = seg.colorize(res.labels)
            if want['color_mask']:
                pubs['color_mask'].publish(rgb_to_msg(color, header))
            if want['overlay']:
                pubs['overlay'].publish(rgb_to_msg(overlay(rgb, color, cfg.overlay_alpha),
                                                   header))
        if want['confidence']:
            pubs['confidence'].publish(float_to_msg(res.confidence, header))
        if want['occupancy']:
            pubs['occupancy'].publish(occupancy_to_msg(res.occupancy, seg.class_names,
                                                       cfg.regions, header))
        if want['camera_info'] and cam.camera_info is not None:
            info = cam.camera_info
            info.header = header
            pubs['camera_info'].publish(info)

    def _try_fallback(self, exc: Exception, failed) -> None:
        with self._fallback_lock:
            if self.segmenter is not failed:
                return      # another worker has already replaced the failed backend
            try:
                backend = failed.backend
                seg, note = self.cfg.fallback_segmenter(backend.name, exc, backend.device)
            except Exception as err:
                self.get_logger().error(f'no fallback backend available: {err}')
                return
            if seg is not None:
                self.segmenter, self.backend_note = seg, note
                self.counters.inc('fallbacks')
                self.get_logger().warning(note)

    def _error(self, cam: _Camera | None, kind: str, text: str) -> None:
        """Count an error (for ``cam``, or model-wide) and log it, throttled per kind."""
        counters = cam.counters if cam is not None else self.counters
        counters.inc(f'errors.{kind}')
        where = f'{cam.cfg.label}: ' if cam is not None and cam.name else ''
        total = counters.get(f'errors.{kind}')
        self._warn_throttled(f'{cam.name if cam else ""}/{kind}',
                             f'[{kind}] {where}{text} ({total} so far)')

    def _warn_throttled(self, kind: str, text: str, at_least: float = 0.0) -> None:
        """Log ``text`` unless a warning of this kind was logged in the last
        ``log_throttle_sec`` (or ``at_least`` seconds, if longer)."""
        now = time.monotonic()
        throttle = max(self.cfg.log_throttle_sec if self.cfg else 5.0, at_least)
        if now - self._last_warn.get(kind, -1e9) >= throttle:
            self._last_warn[kind] = now
            self.get_logger().warning(text)

    # -- metadata ----------------------------------------------------------------------------
    def _publish_label_info(self) -> None:
        seg = self.segmenter
        pal = seg.palette.tolist()
        info = {'label_set': seg.labelset.name, 'model': seg.card.name,
                'ignore_index': seg.labelset.ignore_index,
                'classes': [{'id': i, 'name': n, 'color': pal[i]}
                            for i, n in enumerate(seg.class_names)],
                # ~/occupancy point 0 is the whole frame, point i the i-th region here.
                'occupancy_regions': [{'name': n, 'box': list(b)}
                                      for n, b in self.cfg.regions.items()]}
        self._pubs['label_info'].publish(String(data=json.dumps(info)))

    @staticmethod
    def _stats_values(counters: dict, latency: dict) -> dict[str, str]:
        vals = {}
        for k, v in sorted(counters.items()):
            if k.startswith(('errors.', 'fallbacks', 'sync.')):
                vals[k] = str(v)
        for stage, s in latency.items():
            for q in ('p50_ms', 'p90_ms', 'p99_ms'):
                vals[f'latency.{stage}.{q}'] = f'{s[q]:.2f}'
        return vals

    def camera_values(self, cam: _Camera) -> dict[str, str]:
        """One camera's diagnostics: rates, frame counts, errors, latency percentiles."""
        c = cam.counters.snapshot()
        vals = {'input_rate_hz': f'{cam.in_rate.rate():.2f}',
                'output_rate_hz': f'{cam.out_rate.rate():.2f}'}
        for k in FRAME_COUNTS:
            vals[k] = str(c.get(k, 0))
        camset = self.camset
        if camset is not None and camset.sync_tolerance > 0:
            # How long this camera may send nothing before synchronised sets stop waiting.
            vals['sync.silence_window_s'] = f'{camset.silence_window(cam.name):.3f}'
        vals.update(self._stats_values(c, cam.latency.summary()))
        return vals

    def model_values(self) -> dict[str, str]:
        """The shared model's diagnostics: backend, batches, model-wide errors."""
        seg = self.segmenter
        c = self.counters.snapshot()
        vals = {'backend': seg.backend.name if seg else 'none',
                'device': seg.backend.device if seg else 'none',
                'model': seg.card.name if seg else 'none'}
        batches = c.get('batches', 0)
        vals['batches'] = str(batches)
        vals['mean_batch'] = f'{c.get("batches.frames", 0) / batches:.2f}' if batches else '0'
        vals.update(self._stats_values(c, {f'batch_{k}': v for k, v in
                                           self.latency.summary().items()}))
        if self.backend_note:
            vals['backend_note'] = self.backend_note
        if self.options_note:
            vals['backend_options_note'] = self.options_note
        vals['threads'] = str(self.threads.threads)
        vals['inference_workers'] = str(self.workers)
        vals['cpus'] = ','.join(str(c) for c in self.threads.usable_cpus)
        return vals

    def diagnostics_values(self) -> dict[str, str]:
        """The node status: the model's values plus every camera's frame counts and rates
        summed (for one unnamed camera: exactly that camera's values)."""
        vals = self.model_values()
        cams = list(self.cams.values())
        if len(cams) == 1 and not cams[0].name:
            vals.update(self.camera_values(cams[0]))
            return vals
        per = [self.camera_values(c) for c in cams]
        for k in ('input_rate_hz', 'output_rate_hz'):
            vals[k] = f'{sum(float(v[k]) for v in per):.2f}'
        for k in FRAME_COUNTS:
            vals[k] = str(sum(int(v[k]) for v in per))
        vals['cameras'] = ','.join(c.name for c in cams)
        return vals

    def _starving(self, cam: _Camera, now: float) -> str:
        """Why ``cam`` gets no frames (starved, or frames lost recently), or ''."""
        starved = self._starvation(cam, now)
        recent_loss = now - cam.last_lost < max(10.0, self.cfg.starvation_warn_sec)
        if not (starved or recent_loss):
            return ''
        what = (f'no frames for {starved:.0f} s from matched publishers' if starved
                else 'frames lost in transport')
        where = f'{cam.name}: ' if cam.name else ''
        return (f'{where}{what} (frames.lost {cam.counters.get("frames.lost")}): '
                f'{LARGE_FRAMES_FIX}')

    def _status(self, name: str, vals: dict[str, str], notes: list[str],
                fallback: bool) -> DiagnosticStatus:
        errors = sum(int(v) for k, v in vals.items() if k.startswith('errors.'))
        st = DiagnosticStatus()
        st.name = f'{self.get_fully_qualified_name()}: {name}'
        st.hardware_id = self.segmenter.backend.device if self.segmenter else 'none'
        if errors or fallback or notes:
            st.level = DiagnosticStatus.WARN
            parts = [f'{errors} frame errors'] if errors else []
            if fallback:
                parts.append('running on fallback backend')
            st.message = '; '.join(parts + notes)
        else:
            st.level = DiagnosticStatus.OK
            st.message = 'ok'
        st.values = [KeyValue(key=k, value=v) for k, v in vals.items()]
        return st

    def _publish_diag(self) -> None:
        now = time.monotonic()
        starving = {c.name: self._starving(c, now) for c in self.cams.values()}
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        multi = self.cfg is not None and self.cfg.multi_camera
        # The node status names every starving camera; a camera status names its own.
        arr.status = [self._status('segmentation', self.diagnostics_values(),
                                   [n for n in starving.values() if n],
                                   bool(self.backend_note))]
        if multi:
            arr.status += [self._status(f'camera {c.name}', self.camera_values(c),
                                        [starving[c.name]] if starving[c.name] else [], False)
                           for c in self.cams.values()]
        self._pubs['diagnostics'].publish(arr)


_NO_LOCK = contextlib.nullcontext()
