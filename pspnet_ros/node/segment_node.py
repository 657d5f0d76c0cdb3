"""The ROS 2 segmentation node: a thin lifecycle shell around ``pspnet_ros.core.Segmenter``.

Subscribes ``image`` (or ``image/compressed``) and optionally ``camera_info``; publishes
``~/mask``, ``~/color_mask``, ``~/overlay``, ``~/confidence``, ``~/occupancy``,
``~/camera_info``, ``~/label_info`` and ``/diagnostics``. Inference runs on a worker thread;
the newest frame wins and every overwritten frame is counted as dropped.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
import json
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import rclpy
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.serialization import deserialize_message
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from ..core.image import ImageError
from ..core.segmenter import overlay
from ..core.threads import configure_threads, ThreadSettings, usable_cpus
from .config import NodeConfig, READ_ONLY_AFTER_CONFIGURE
from .convert import (error_kind, float_to_msg, image_from_msg, labels_to_msg,
                      occupancy_to_msg, rgb_to_msg)
from .stats import Counters, LatencyStats, RateMeter


def _desc(text: str, *, lo=None, hi=None, step=None, integer=False,
          read_only=False) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text, read_only=read_only)
    if lo is not None and integer:
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step or 1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                     step=float(step or 0.0))]
    return d


# What the starvation / lost-frames warnings tell the user to do.
LARGE_FRAMES_FIX = ('camera-sized frames need the Fast DDS profile '
                    'config/fastdds_large_frames.xml in BOTH the camera and this process '
                    '(segment.launch.py sets it; else export FASTDDS_DEFAULT_PROFILES_FILE), or '
                    'image_qos: reliable across hosts; see docs/ROS_INTERFACE.md')

# Starvation and lost frames share one warning, logged at most this often (seconds); the
# counts stay current in /diagnostics.
TRANSPORT_WARN_PERIOD = 60.0

# name -> (default, descriptor)
PARAMETERS = {
    'model': ('', _desc('model card YAML; empty = the shipped CamVid model')),
    'backend': ('torch', _desc('inference backend: torch, onnxruntime, tflite, edgetpu, auto')),
    'device': ('cpu', _desc('backend device: cpu, cuda, cuda:N, or an Edge TPU selector')),
    'fallback_backends': ('', _desc('comma-separated backends to try, in order, if the main one '
                                    'is unavailable or fails; empty = no fallback')),
    'backend_options': ([], _desc('backend options as "key=value" strings, e.g. '
                                  'fp16=true (torch), providers=cpu (onnxruntime); empty = '
                                  'the defaults of the backend (torch: channels_last=true, '
                                  'fuse_bn=true); options of other backends are ignored with '
                                  'a warning')),
    'input_size': ([0, 0], _desc('network input [height, width]; [0, 0] = model card')),
    'resize_mode': ('', _desc('stretch or letterbox; empty = model card')),
    'max_image_pixels': (4096 * 4096, _desc('frames with more pixels are rejected',
                                            lo=1, hi=2 ** 31 - 1, integer=True)),
    'num_threads': (0, _desc('CPU threads for inference; 0 = one per usable CPU; capped at the '
                             'CPUs the process may use (its affinity)',
                             lo=0, hi=256, integer=True)),
    'cpu_affinity': ([], _desc('CPUs to pin the node to, e.g. [2, 3]; empty = leave the '
                               'affinity as started (taskset, cgroups)')),
    'input_transport': ('raw', _desc('raw (sensor_msgs/Image on "image") or compressed '
                                     '(sensor_msgs/CompressedImage on "image/compressed")')),
    'image_qos': ('sensor_data', _desc('sensor_data (best effort) or reliable')),
    'qos_depth': (2, _desc('subscription queue depth', lo=1, hi=100, integer=True)),
    'use_camera_info': (False, _desc('subscribe camera_info and republish it for the mask')),
    'publish_color_mask': (True, _desc('publish ~/color_mask (rgb8)')),
    'publish_overlay': (True, _desc('publish ~/overlay (rgb8)')),
    'publish_confidence': (False, _desc('publish ~/confidence (32FC1 max class probability)')),
    'overlay_alpha': (0.5, _desc('weight of the colour mask in ~/overlay', lo=0.0, hi=1.0)),
    'occupancy_regions': (['ahead:0.3,0.5,0.7,1.0'],
                          _desc('named image regions for ~/occupancy, "name:x0,y0,x1,y1" as '
                                'fractions of width/height')),
    'diagnostics_period': (1.0, _desc('seconds between /diagnostics messages',
                                      lo=0.1, hi=60.0)),
    'starvation_warn_sec': (3.0, _desc('WARN in /diagnostics when publishers are matched on '
                                       'the image topic but no frame arrived for this long',
                                       lo=0.1, hi=3600.0)),
    'log_throttle_sec': (5.0, _desc('minimum seconds between repeated warnings of one kind',
                                    lo=0.0, hi=3600.0)),
    'autostart': (True, _desc('configure and activate on start (set false under a lifecycle '
                              'manager)', read_only=True)),
}


class SegmentNode(LifecycleNode):
    """PSPNet segmentation as a managed node."""

    def __init__(self, node_name: str = 'pspnet_segmentation', **kwargs):
        super().__init__(node_name, **kwargs)
        arrays = {'occupancy_regions': Parameter.Type.STRING_ARRAY,
                  'backend_options': Parameter.Type.STRING_ARRAY,
                  'cpu_affinity': Parameter.Type.INTEGER_ARRAY}
        for name, (default, desc) in PARAMETERS.items():
            if name in arrays:
                # Arrays: declared by type, since an empty default has no type.
                self.declare_parameter(name, arrays[name], desc)
                try:
                    unset = self.get_parameter(name).value is None
                except ParameterUninitializedException:   # not in the params file
                    unset = True
                if unset:
                    self.set_parameters([Parameter(name, arrays[name], list(default))])
            else:
                self.declare_parameter(name, default, desc)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.cfg: NodeConfig | None = None
        self.segmenter = None
        self.backend_note = ''
        self.counters = Counters()
        self.latency = LatencyStats()
        self.in_rate, self.out_rate = RateMeter(), RateMeter()
        self._slot = None
        self._cond = threading.Condition()
        # Every model build and every inference runs on this one thread. PyTorch's OpenMP
        # pool belongs to the thread that calls it; building the model on the executor thread
        # and running it on another leaves two pools on the cores, which made inference ~35 %
        # slower on 2 cores (45 vs 33 ms, docs/BENCHMARKS.md).
        self._infer_pool = ThreadPoolExecutor(max_workers=1,
                                              thread_name_prefix='pspnet_inference')
        self._worker: Future | None = None
        self._running = False
        self._camera_info: CameraInfo | None = None
        self._subs = []
        self._pubs: dict = {}
        self._diag_timer = None
        self._last_warn: dict[str, float] = {}
        self.options_note = ''
        self._start_cpus = usable_cpus()
        self.threads = configure_threads(0)
        self._last_lost = -1e9               # when the middleware last reported lost frames
        self._last_frame = time.monotonic()
        self._matched_since: float | None = None
        if self.get_parameter('autostart').value:
            self.trigger_configure()
            if self._state_machine.current_state[1] == 'inactive':
                self.trigger_activate()

    # -- parameters --------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        configured = self.cfg is not None
        for p in params:
            if configured and p.name in READ_ONLY_AFTER_CONFIGURE:
                return SetParametersResult(
                    successful=False,
                    reason=f'{p.name} is read-only while configured; deactivate and clean up '
                           'the node, change it, then configure again')
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
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        values.update({k: v for k, v in (changes or {}).items() if k in PARAMETERS})
        return NodeConfig.from_parameters(values)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.cfg = self._read_config()
            self.threads = self._apply_threads(self.cfg)
            self.options_note = self.cfg.options_for(self.cfg.backend)[1]
            self.segmenter, self.backend_note = self._infer_pool.submit(
                self.cfg.build_segmenter).result()
        except Exception as exc:  # configuration errors must be readable, never a trace
            self.cfg = None
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        for note in (self.options_note, *self.threads.notes, self.backend_note):
            if note:
                self.get_logger().warning(note)
        self._make_publishers()
        self.get_logger().info(
            f'configured: model {self.segmenter.card.name} ({self.segmenter.num_classes} '
            f'classes, input {self.segmenter.input_size[1]}x{self.segmenter.input_size[0]}) on '
            f'{self.segmenter.backend.selection}; {self.threads.describe()}')
        return TransitionCallbackReturn.SUCCESS

    def _apply_threads(self, cfg: NodeConfig) -> ThreadSettings:
        """Pin the process to ``cpu_affinity`` (or back to the CPUs it started with) and size
        the inference pools for the CPUs it may use."""
        return configure_threads(cfg.num_threads, cfg.cpu_affinity or self._start_cpus)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._make_subscriptions()
        self._publish_label_info()
        self._running = True
        self._worker = self._infer_pool.submit(self._work)
        self._diag_timer = self.create_timer(self.cfg.diagnostics_period, self._publish_diag)
        self.get_logger().info(f'active: listening on {self._subs[0].topic_name}')
        return super().on_activate(state)

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
        """Stop the worker, the image/camera_info subscriptions and the diagnostics timer."""
        self._stop_worker()
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def _release_outputs(self) -> None:
        for p in self._pubs.values():
            self.destroy_publisher(p)
        self._pubs = {}
        self.segmenter = None
        self.cfg = None

    # -- entities ----------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        # Reliable with a few samples of history, so a subscriber that is briefly slow to
        # acknowledge still gets every published frame.
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        events = PublisherEventCallbacks(incompatible_qos=self._on_pub_incompatible)
        spec = {'mask': Image, 'color_mask': Image, 'overlay': Image, 'confidence': Image,
                'occupancy': PointCloud2, 'camera_info': CameraInfo}
        for name, typ in spec.items():
            self._pubs[name] = self.create_publisher(typ, f'~/{name}', out_qos,
                                                     event_callbacks=events)
        self._pubs['label_info'] = self.create_publisher(String, '~/label_info', latched)
        self._pubs['diagnostics'] = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def _make_subscriptions(self) -> None:
        cfg = self.cfg
        reliability = (ReliabilityPolicy.RELIABLE if cfg.image_qos == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=cfg.qos_depth, reliability=reliability,
                         history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_sub_incompatible,
                                            message_lost=self._on_message_lost)
        self._last_frame = time.monotonic()
        self._matched_since = None
        # raw=True: the callback gets the serialized bytes and only the frame the worker
        # takes is turned into a Python message, so frames dropped under overload cost a copy,
        # not a conversion holding the GIL that inference also needs.
        if cfg.input_transport == 'compressed':
            self._in_type = CompressedImage
            sub = self.create_subscription(CompressedImage, 'image/compressed', self._on_image,
                                           qos, event_callbacks=events, raw=True)
        else:
            self._in_type = Image
            sub = self.create_subscription(Image, 'image', self._on_image, qos,
                                           event_callbacks=events, raw=True)
        self._subs = [sub]
        if cfg.use_camera_info:
            self._subs.append(self.create_subscription(CameraInfo, 'camera_info',
                                                       self._on_camera_info, qos))

    def _on_sub_incompatible(self, event) -> None:
        self.counters.inc('errors.qos_incompatible')
        want = self.cfg.image_qos if self.cfg else '?'
        fix = ('set image_qos: sensor_data (best effort accepts any publisher)'
               if want == 'reliable' else
               'the publisher asks for something this subscription does not offer; check its '
               'durability/deadline settings')
        topic = self._subs[0].topic_name if self._subs else 'image'
        self.get_logger().warning(
            f'incompatible QoS with a publisher on {topic} (policy {event.last_policy_kind}); '
            f'no frames will arrive: {fix}')

    def _on_message_lost(self, event) -> None:
        # The middleware saw frames that never reached this subscription (e.g. fragments
        # dropped: camera-sized frames without the large-frames profile).
        n = int(event.total_count_change)
        if n <= 0:
            return
        self.counters.inc('frames.lost', n)
        self._last_lost = time.monotonic()
        self._warn_throttled('transport', f'{n} frame(s) lost in transport before reaching '
                             f'the node ({self.counters.get("frames.lost")} so far): '
                             f'{LARGE_FRAMES_FIX}', TRANSPORT_WARN_PERIOD)

    def _starvation(self, now: float) -> float:
        """Seconds without a frame while publishers are matched on the image topic (0 when
        frames arrive or nobody publishes); logged at most once a minute."""
        if not self._subs or self.cfg is None:
            return 0.0
        topic = self._subs[0].topic_name
        publishers = self.count_publishers(topic)
        if publishers == 0:
            self._matched_since = None
            return 0.0
        if self._matched_since is None:
            self._matched_since = now
        quiet = now - max(self._last_frame, self._matched_since)
        if quiet < self.cfg.starvation_warn_sec:
            return 0.0
        self._warn_throttled(
            'transport', f'{publishers} publisher(s) matched on {topic} but no frame arrived '
            f'for {quiet:.1f} s ({self.counters.get("frames.lost")} reported lost): '
            f'{LARGE_FRAMES_FIX}', TRANSPORT_WARN_PERIOD)
        return quiet

    def _on_pub_incompatible(self, event) -> None:
        self.counters.inc('errors.qos_incompatible')
        self.get_logger().warning(
            f'a subscriber to an output topic requests an incompatible QoS (policy '
            f'{event.last_policy_kind}); outputs are reliable + volatile (label_info is '
            'transient local): subscribe with a compatible profile')

    # -- data path ---------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_image(self, msg) -> None:
        now = time.monotonic()
        self._last_frame = now
        self.counters.inc('frames.received')
        self.in_rate.tick(now)
        with self._cond:
            if self._slot is not None:
                self.counters.inc('frames.dropped')
            self._slot = (msg, now)
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._running and self._slot is None:
                    self._cond.wait(0.5)
                if not self._running:
                    return
                msg, t_recv = self._slot
                self._slot = None
            try:
                self._process(msg, t_recv)
            except Exception as exc:  # a bad frame or a failing backend must not kill the node
                if not self._running or not self.context.ok():
                    # Ctrl-C / SIGTERM / shutdown during a frame: its outputs are gone with
                    # ROS; not an error.
                    return
                self._error('internal', f'unexpected {type(exc).__name__}: {exc}')

    def _close_inference(self) -> None:
        """Stop the worker and release the inference thread (shutdown, process exit)."""
        self._stop_worker()
        self._infer_pool.shutdown(wait=False)

    def _stop_worker(self) -> None:
        with self._cond:
            self._running = False
            self._slot = None
            self._cond.notify_all()
        if self._worker is not None:
            try:
                self._worker.result(timeout=10.0)
            except FutureTimeout:
                self.get_logger().warning('inference thread still busy after 10 s; leaving it')
            self._worker = None

    def _wanted(self, name: str) -> bool:
        pub = self._pubs.get(name)
        return pub is not None and pub.get_subscription_count() > 0

    def _process(self, msg, t_recv: float) -> None:
        cfg, seg = self.cfg, self.segmenter
        if cfg is None or seg is None:
            return
        outputs = ('mask', 'color_mask', 'overlay', 'confidence', 'occupancy', 'camera_info')
        want = {n: self._wanted(n) for n in outputs}
        want['color_mask'] &= cfg.publish_color_mask
        want['overlay'] &= cfg.publish_overlay
        want['confidence'] &= cfg.publish_confidence
        if not any(want.values()):
            self.counters.inc('frames.skipped_no_subscribers')
            return
        t0 = time.perf_counter()
        if isinstance(msg, bytes):
            try:
                msg = deserialize_message(msg, self._in_type)
            except Exception as exc:  # not CDR of the subscribed type
                self._error('deserialize', f'frame rejected: cannot deserialize '
                            f'{self._in_type.__name__}: {exc}')
                return
        decoder_said: list[str] = []
        try:
            rgb = image_from_msg(msg, cfg.max_image_pixels, decoder_said)
        except ValueError as exc:
            self._error(error_kind(exc), f'frame rejected: {exc}')
            return
        if decoder_said:
            # Damaged but decodable (e.g. a JPEG cut short): processed, counted, logged
            # throttled instead of the decoder printing a line per frame.
            self.counters.inc('frames.decoder_warnings')
            self._warn_throttled('decoder', f'decoder warning on a frame (processed anyway; '
                                 f'{self.counters.get("frames.decoder_warnings")} so far): '
                                 + '; '.join(decoder_said))
        t1 = time.perf_counter()
        try:
            res = seg(rgb, confidence=want['confidence'], occupancy=want['occupancy'],
                      regions=cfg.regions)
        except ImageError as exc:
            # A bad frame says nothing about the backend: never a reason to fall back.
            self._error(error_kind(exc), f'frame rejected: {exc}')
            return
        except Exception as exc:
            self._error('inference', f'inference failed on {seg.backend.describe()}: {exc}')
            self._try_fallback(exc)
            return
        t2 = time.perf_counter()
        header = msg.header
        pubs = self._pubs
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
        if want['camera_info'] and self._camera_info is not None:
            info = self._camera_info
            info.header = header
            pubs['camera_info'].publish(info)
        t3 = time.perf_counter()
        self.counters.inc('frames.processed')
        self.out_rate.tick()
        lat = self.latency
        lat.add('decode', t1 - t0)
        for k in ('preprocess', 'inference', 'postprocess'):
            lat.add(k, res.timings[k])
        lat.add('encode_publish', t3 - t2)
        lat.add('end_to_end', time.monotonic() - t_recv)

    def _try_fallback(self, exc: Exception) -> None:
        try:
            backend = self.segmenter.backend
            seg, note = self.cfg.fallback_segmenter(backend.name, exc, backend.device)
        except Exception as err:
            self.get_logger().error(f'no fallback backend available: {err}')
            return
        if seg is not None:
            self.segmenter, self.backend_note = seg, note
            self.counters.inc('fallbacks')
            self.get_logger().warning(note)

    def _error(self, kind: str, text: str) -> None:
        self.counters.inc(f'errors.{kind}')
        total = self.counters.get(f'errors.{kind}')
        self._warn_throttled(kind, f'[{kind}] {text} ({total} so far)')

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

    def diagnostics_values(self) -> dict[str, str]:
        c = self.counters.snapshot()
        vals = {'backend': self.segmenter.backend.name if self.segmenter else 'none',
                'device': self.segmenter.backend.device if self.segmenter else 'none',
                'model': self.segmenter.card.name if self.segmenter else 'none',
                'input_rate_hz': f'{self.in_rate.rate():.2f}',
                'output_rate_hz': f'{self.out_rate.rate():.2f}'}
        for k in ('frames.received', 'frames.processed', 'frames.dropped', 'frames.lost',
                  'frames.decoder_warnings', 'frames.skipped_no_subscribers'):
            vals[k] = str(c.get(k, 0))
        for k, v in sorted(c.items()):
            if k.startswith(('errors.', 'fallbacks')):
                vals[k] = str(v)
        for stage, s in self.latency.summary().items():
            for q in ('p50_ms', 'p90_ms', 'p99_ms'):
                vals[f'latency.{stage}.{q}'] = f'{s[q]:.2f}'
        if self.backend_note:
            vals['backend_note'] = self.backend_note
        if self.options_note:
            vals['backend_options_note'] = self.options_note
        vals['threads'] = str(self.threads.threads)
        vals['cpus'] = ','.join(str(c) for c in self.threads.usable_cpus)
        return vals

    def _publish_diag(self) -> None:
        now = time.monotonic()
        vals = self.diagnostics_values()
        starved = self._starvation(now)
        errors = sum(int(v) for k, v in vals.items() if k.startswith('errors.'))
        lost = int(vals['frames.lost'])
        recent_loss = now - self._last_lost < max(10.0, self.cfg.starvation_warn_sec)
        st = DiagnosticStatus()
        st.name = f'{self.get_fully_qualified_name()}: segmentation'
        st.hardware_id = vals['device']
        if errors or self.backend_note or starved or recent_loss:
            st.level = DiagnosticStatus.WARN
            parts = [f'{errors} frame errors'] if errors else []
            if self.backend_note:
                parts.append('running on fallback backend')
            if starved or recent_loss:
                what = (f'no frames for {starved:.0f} s from matched publishers' if starved
                        else 'frames lost in transport')
                parts.append(f'{what} (frames.lost {lost}): {LARGE_FRAMES_FIX}')
            st.message = '; '.join(parts)
        else:
            st.level = DiagnosticStatus.OK
            st.message = 'ok'
        st.values = [KeyValue(key=k, value=v) for k, v in vals.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self._pubs['diagnostics'].publish(arr)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = SegmentNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._close_inference()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
