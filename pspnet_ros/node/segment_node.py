"""The ROS 2 segmentation node: lifecycle transitions, entities and parameters around
``pspnet_ros.core.Segmenter``.

Subscribes ``image`` (or ``image/compressed``) and optionally ``camera_info``; publishes
``~/mask``, ``~/color_mask``, ``~/overlay``, ``~/confidence``, ``~/occupancy``,
``~/camera_info``, ``~/label_info`` and ``/diagnostics``. With ``cameras: [front, ...]`` each
camera has its own ``front/image`` ... inputs and ``~/front/mask`` ... outputs, and one model
serves them all. The frame path (``inference.FramePath``) runs ``inference_workers`` threads;
per camera the newest frame wins and every overwritten frame is counted as dropped; the
scheduler (``cameras.CameraSet``) batches the waiting frames of all cameras fairly. The
status is assembled by pure functions (``diagnostics``) from snapshots taken here.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import os
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from ..core.threads import choose_spin, configure_threads, ThreadSettings, usable_cpus
from . import diagnostics, parameters
from .cameras import CameraSet
from .config import NodeConfig, plan_workers
from .convert import label_info_msg, status_to_msg
from .diagnostics import ModelSnapshot, Status
from .ground import ground_config, GroundGrid
from .inference import Camera, FramePath, ThrottledLog
from .stats import Counters, LatencyStats, RecentRise
from .warmup import warm_up

# Transport warnings are logged at most this often (seconds) per camera and kind; the
# counts stay current in /diagnostics.
TRANSPORT_WARN_PERIOD = 60.0


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
        self.auto_choice = None          # autoselect.Selection when auto measured or cached
        self.choice_values: dict[str, str] = {}    # backend_choice ... for /diagnostics
        # Model-wide counters and stage latencies (per-batch); per-camera ones are in Camera.
        self.counters = Counters()
        self.latency = LatencyStats()
        self.cams: dict[str, Camera] = {}
        self.camset: CameraSet | None = None
        # Model builds and inference run on this pool. The model is built on its first
        # thread, which also runs the first (often only) worker: PyTorch's OpenMP pool belongs
        # to the thread that calls it, and building the model on the executor thread and
        # running it on another left two pools on the cores, ~35 % slower on 2 cores (45 vs 33
        # ms, docs/history/BENCHMARKS-2026-11.md). Further workers (inference_workers) start
        # further threads, each with an OpenMP pool of its own size.
        self._infer_pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                              thread_name_prefix='pspnet_inference')
        self.workers = 1                 # inference workers of the current configuration
        self.worker_threads = 0          # CPU threads of each worker (0: the process's)
        self._pubs: dict = {}
        self._diag_timer = None
        self.log = ThrottledLog(self.get_logger(),
                                lambda: self.cfg.log_throttle_sec if self.cfg else 5.0)
        self.frames = FramePath(lambda: (self.cfg, self.segmenter), self._use_fallback,
                                self.get_logger(), self.log, self.counters, self.latency,
                                lambda: self.context.ok())
        self._recent: dict[str, RecentRise] = {}     # error totals per status, for the level
        self.options_note = ''
        self.ground: GroundGrid | None = None        # the ground grid when ground_enabled
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
        # backend auto times its candidates (or reads the cached choice) on the thread that
        # runs the model, then builds the chosen one (config.NodeConfig.auto_choice).
        if self.cfg.backend == 'auto' and self.cfg.auto_budget_s > 0:
            self.get_logger().info(f'backend auto: timing the candidates within '
                                   f'{self.cfg.auto_budget_s:g} s, unless a cached choice '
                                   'applies')
        self.segmenter, self.backend_note, self.auto_choice, auto_why = \
            self._infer_pool.submit(self._build, self.cfg, lambda: not self.context.ok()).result()
        if self.auto_choice is not None:
            choice = self.auto_choice.describe()
            self.choice_values = self.auto_choice.values()
        elif self.cfg.backend == 'auto':
            choice = f'auto: fixed chain ({auto_why})'
            self.choice_values = {'backend_choice': 'fixed', 'auto.why': auto_why}
        else:
            choice = ''
            self.choice_values = {'backend_choice': 'configured'}
        # The whole frame path once, on the thread that built the model (and runs the first
        # worker), so the first camera frame costs what the others cost (node/warmup.py).
        try:
            seconds = self._infer_pool.submit(warm_up, self.segmenter, self.cfg).result()
            warm = f'warm-up {seconds:.2f} s'
        except Exception as exc:  # a run-time failure: the frame path falls back or counts it
            warm = f'warm-up failed ({exc}); the first frame pays the start-up costs'
            self.get_logger().warning(warm)
        for note in (self.options_note, *self.threads.notes, self.backend_note):
            if note:
                self.get_logger().warning(note)
        cfg = self.cfg
        self.workers, self.worker_threads, workers_note = plan_workers(
            cfg, self.segmenter, self.threads.threads)
        if workers_note:
            self.get_logger().warning(workers_note)
        self.cams = {c.name: Camera(c) for c in cfg.cameras}
        self._recent = {}
        # Several workers (torch or TFLite on CPU) take one frame each: on CPU a batch runs
        # no faster than its frames one by one (scripts/bench_batch.py: 0.92-1.02x), and a
        # worker of one frame holds a quarter of a 4-frame batch's activations and answers
        # sooner.
        batch = 1 if self.workers > 1 else cfg.max_batch
        self.camset = CameraSet(list(self.cams), max_batch=batch,
                                sync_tolerance=cfg.sync_tolerance, sync_wait=cfg.sync_wait,
                                one_in_flight=self.workers > 1,
                                counters={n: c.counters for n, c in self.cams.items()},
                                set_counters=self.counters)
        self._make_publishers()
        self._make_ground()
        self.get_logger().info(
            f'configured: model {self.segmenter.card.name} ({self.segmenter.num_classes} '
            f'classes, input {self.segmenter.input_size[1]}x{self.segmenter.input_size[0]}) on '
            f'{self.segmenter.backend.selection}; {self.threads.describe()}'
            + (f'; {self.workers} inference workers of {self.worker_threads} thread'
               f'{"s" if self.worker_threads > 1 else ""} each' if self.workers > 1 else '')
            + (f'; {self.memory_note}' if self.memory_note else '')
            + f'; {warm}' + (f'; {choice}' if choice else ''))

    @staticmethod
    def _build(cfg: NodeConfig, stop) -> tuple:
        """``(segmenter, fallback note, auto selection or None, why auto runs its fixed
        chain)``; runs on the inference thread. ``stop()``: a signal ended ROS meanwhile."""
        choice, why = cfg.auto_choice(stop=stop)
        if stop():
            raise RuntimeError('configure interrupted by a signal')
        seg, note = cfg.build_segmenter(choice)
        return seg, note, choice, why

    def _make_ground(self) -> None:
        """The ground-plane grid (node/ground.py) and its publishers, when ground_enabled."""
        cams = self.cfg.cameras
        gcfg = ground_config(parameters.values(self), self.segmenter.labelset,
                             [c.name for c in cams])
        if gcfg is not None:
            self.ground = GroundGrid(self, gcfg, [(c.name, c.label, c.topic, c.output)
                                                  for c in cams])
            self.ground.make_publishers()
        self.frames.ground = self.ground

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
        if self.ground is not None:
            self.ground.subscribe()
        self._publish_label_info()
        self.frames.start(self.cams, self.camset, self._infer_pool, self.workers,
                          self.worker_threads or self.threads.threads)
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
        """Stop every camera's subscriptions, the inference workers (frames still waiting
        are counted as discarded on transition) and the diagnostics timer."""
        for cam in self.cams.values():
            for s in cam.subs:
                self.destroy_subscription(s)
            cam.subs = []
        if self.ground is not None:
            self.ground.unsubscribe()
        self.frames.stop()
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
        if self.ground is not None:
            self.ground.release()
            self.ground = self.frames.ground = None
        self.frames.release()
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

    def _subscribe(self, cam: Camera) -> None:
        cfg = cam.cfg
        reliability = (ReliabilityPolicy.RELIABLE if cfg.image_qos == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=cfg.qos_depth, reliability=reliability,
                         history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda event: self._on_sub_incompatible(cam, event),
            message_lost=lambda event: self._on_message_lost(cam, event))
        cam.subscribed(time.monotonic())
        # raw=True: the callback gets the serialized bytes and only the frame the worker
        # takes is turned into a Python message, so frames dropped under overload cost a copy,
        # not a conversion holding the GIL that inference also needs.
        if cfg.input_transport == 'compressed':
            cam.in_type, topic = CompressedImage, cfg.topic('image/compressed')
        else:
            cam.in_type, topic = Image, cfg.topic('image')
        cam.subs = [self.create_subscription(cam.in_type, topic,
                                             lambda raw: self.frames.on_image(cam, raw), qos,
                                             event_callbacks=events, raw=True)]
        if cfg.use_camera_info:
            cam.subs.append(self.create_subscription(
                CameraInfo, cfg.topic('camera_info'),
                lambda msg: setattr(cam, 'camera_info', msg), qos))

    def _on_sub_incompatible(self, cam: Camera, event) -> None:
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

    def _on_message_lost(self, cam: Camera, event) -> None:
        # The middleware saw frames that never reached this subscription (e.g. fragments
        # dropped: camera-sized frames without the large-frames profile).
        n = int(event.total_count_change)
        if n <= 0:
            return
        cam.lost(n, time.monotonic())
        where = f'{cam.name}: ' if cam.name else ''
        self.log.warn(f'{cam.name}/transport', f'{where}{n} frame(s) lost in transport before '
                      f'reaching the node ({cam.counters.get("frames.lost")} so far): '
                      f'{diagnostics.LARGE_FRAMES_FIX}', TRANSPORT_WARN_PERIOD)

    def _on_pub_incompatible(self, event) -> None:
        self.counters.inc('errors.qos_incompatible')
        self.get_logger().warning(
            f'a subscriber to an output topic requests an incompatible QoS (policy '
            f'{event.last_policy_kind}); outputs are reliable + volatile (label_info is '
            'transient local): subscribe with a compatible profile')

    # -- frame path --------------------------------------------------------------------------
    def _use_fallback(self, seg, note: str) -> None:
        """A fallback backend took over after a run-time failure (``FramePath``)."""
        self.segmenter, self.backend_note = seg, note

    def _close_inference(self) -> None:
        """Stop the workers and release the inference threads (shutdown, process exit)."""
        self.frames.stop()
        self._infer_pool.shutdown(wait=False)

    # -- metadata ----------------------------------------------------------------------------
    def _publish_label_info(self) -> None:
        self._pubs['label_info'].publish(label_info_msg(self.segmenter, self.cfg.regions))

    def _snapshots(self, now: float) -> tuple[ModelSnapshot, list]:
        """The model's and every camera's state now, for ``diagnostics.statuses``."""
        seg, camset = self.segmenter, self.camset
        model = ModelSnapshot(
            backend=seg.backend.name if seg else 'none',
            device=seg.backend.device if seg else 'none', model=seg.card.name if seg else 'none',
            counters=self.counters.snapshot(), latency=self.latency.summary(),
            backend_note=self.backend_note, options_note=self.options_note,
            choice=self.choice_values,
            threads=self.threads.threads, workers=self.workers, cpus=self.threads.usable_cpus)
        cams = []
        for cam in self.cams.values():
            topic = cam.subs[0].topic_name if cam.subs else cam.cfg.topic('image')
            window = (camset.silence_window(cam.name)
                      if camset is not None and camset.sync_tolerance > 0 else None)
            cams.append(cam.snapshot(now, self.count_publishers(topic) if cam.subs else 0,
                                     topic, window))
        return model, cams

    def _publish_diag(self) -> None:
        now = time.monotonic()
        cfg = self.cfg
        if cfg is None:
            return
        model, cams = self._snapshots(now)

        def recent(name: str, total: int) -> int:
            return self._recent.setdefault(name, RecentRise()).rise(
                total, now, cfg.diagnostics_window_s)
        found, notes = diagnostics.statuses(
            self.get_fully_qualified_name(), model, cams, multi_camera=cfg.multi_camera,
            warn_after=cfg.starvation_warn_sec, window=cfg.diagnostics_window_s, recent=recent)
        for cam, (kind, text) in notes.items():
            if kind:
                # The transport advice kinds share one throttle: one line a minute at most.
                key = 'transport' if kind in ('never_delivered', 'lost') else kind
                self.log.warn(f'{cam}/{key}', text, TRANSPORT_WARN_PERIOD)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        if self.ground is not None:
            found.append(Status(f'{self.get_fully_qualified_name()}: ground', 'ground',
                                *self.ground.status(), self.ground.values()))
        arr.status = [status_to_msg(st) for st in found]
        self._pubs['diagnostics'].publish(arr)
