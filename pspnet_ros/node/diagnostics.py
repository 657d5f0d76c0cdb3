"""The node's status as pure functions: snapshots of its counters and transport in, statuses out.

Nothing here talks to ROS or keeps a clock: the node takes a ``ModelSnapshot`` and one
``CameraSnapshot`` per camera, and ``statuses`` turns them into the ``/diagnostics`` entries
(``convert.status_to_msg`` makes the messages), so every rule below is tested without DDS.

The counters are totals since configure. The level looks at a recent window instead
(``diagnostics_window_s``): errors that happened in it, a fallback backend in use, and what
the transport does now (no publisher, a publisher that never delivered, a camera that
stalled, frames lost recently).
"""
from __future__ import annotations

from dataclasses import dataclass, field

OK, WARN, ERROR = 0, 1, 2

# Per camera, every received frame ends in exactly one of these (or still waits or runs).
FRAME_OUTCOMES = ('frames.processed', 'frames.dropped', 'frames.skipped_no_subscribers',
                  'frames.errors', 'frames.discarded_on_transition')
FRAME_COUNTS = ('frames.received',) + FRAME_OUTCOMES + (
    'frames.lost', 'frames.gaps_inferred', 'frames.decoder_warnings')

# What the transport warnings tell the user to do when frames do not get through.
LARGE_FRAMES_FIX = ('camera-sized frames need the Fast DDS profile '
                    'config/fastdds_large_frames.xml in BOTH the camera and this process '
                    '(segment.launch.py sets it; else export FASTDDS_DEFAULT_PROFILES_FILE), or '
                    'image_qos: reliable across hosts; see docs/ROS_INTERFACE.md')
# What the middleware cannot tell (docs/ROS_INTERFACE.md, "Counters").
LOSS_REPORTING = ('partial: frames.lost counts the losses the middleware reports; frames '
                  'overwritten in a full subscription queue are not reported, and are inferred '
                  'as frames.gaps_inferred only when the camera stamps at a regular period')
# A reported loss keeps the transport warning up for at least this long (seconds).
LOSS_WARN_SEC = 10.0


@dataclass(frozen=True)
class CameraSnapshot:
    """One camera at one moment.

    Times are seconds before the snapshot: ``last_frame_age`` since its last frame (None when
    none arrived since it subscribed), ``quiet_s`` since its last frame or since publishers
    were matched, whichever is later, ``unmatched_s`` since it subscribed or last saw a
    publisher leave (0 while one is matched), ``lost_age`` since the middleware last reported
    lost frames (None: never). ``delivered`` says whether a frame arrived since the current
    publishers were matched.
    """

    name: str
    topic: str
    counters: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    input_rate_hz: float = 0.0
    output_rate_hz: float = 0.0
    silence_window_s: float | None = None
    publishers: int = 0
    delivered: bool = False
    last_frame_age: float | None = None
    quiet_s: float = 0.0
    unmatched_s: float = 0.0
    lost_age: float | None = None

    @property
    def label(self) -> str:
        return self.name or 'image'


@dataclass(frozen=True)
class ModelSnapshot:
    """The shared model and the node-wide counters at one moment."""

    backend: str = 'none'
    device: str = 'none'
    model: str = 'none'
    counters: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    backend_note: str = ''
    options_note: str = ''
    choice: dict = field(default_factory=dict)   # backend_choice, auto.<candidate> times
    threads: int = 0
    workers: int = 1
    cpus: tuple = ()


@dataclass(frozen=True)
class Status:
    """One ``/diagnostics`` entry, ROS-free."""

    name: str
    hardware_id: str
    level: int
    message: str
    values: dict


def stats_values(counters: dict, latency: dict) -> dict[str, str]:
    """Error, fallback and sync counters, and latency percentiles per stage."""
    vals = {}
    for k, v in sorted(counters.items()):
        if k.startswith(('errors.', 'fallbacks', 'sync.')):
            vals[k] = str(v)
    for stage, s in latency.items():
        for q in ('p50_ms', 'p90_ms', 'p99_ms'):
            vals[f'latency.{stage}.{q}'] = f'{s[q]:.2f}'
    return vals


def in_progress(counters: dict) -> int:
    """Frames received and not yet at an outcome (waiting or running); 0 when idle."""
    return counters.get('frames.received', 0) - sum(counters.get(k, 0) for k in FRAME_OUTCOMES)


def camera_values(cam: CameraSnapshot) -> dict[str, str]:
    """One camera's diagnostics: rates, frame counts, errors, latency percentiles."""
    c = cam.counters
    vals = {'input_rate_hz': f'{cam.input_rate_hz:.2f}',
            'output_rate_hz': f'{cam.output_rate_hz:.2f}'}
    for k in FRAME_COUNTS:
        vals[k] = str(c.get(k, 0))
    vals['frames.in_progress'] = str(in_progress(c))
    vals['loss_reporting'] = LOSS_REPORTING
    if cam.silence_window_s is not None:
        # How long this camera may send nothing before synchronised sets stop waiting.
        vals['sync.silence_window_s'] = f'{cam.silence_window_s:.3f}'
    vals.update(stats_values(c, cam.latency))
    return vals


def model_values(m: ModelSnapshot) -> dict[str, str]:
    """The shared model's diagnostics: backend, how it was chosen (``backend_choice``:
    configured, measured, cached or fixed, with ``auto.<candidate>`` times), batches,
    model-wide errors."""
    c = m.counters
    vals = {'backend': m.backend, 'device': m.device, 'model': m.model, **m.choice}
    batches = c.get('batches', 0)
    vals['batches'] = str(batches)
    vals['mean_batch'] = f'{c.get("batches.frames", 0) / batches:.2f}' if batches else '0'
    vals.update(stats_values(c, {f'batch_{k}': v for k, v in m.latency.items()}))
    if m.backend_note:
        vals['backend_note'] = m.backend_note
    if m.options_note:
        vals['backend_options_note'] = m.options_note
    vals['threads'] = str(m.threads)
    vals['inference_workers'] = str(m.workers)
    vals['cpus'] = ','.join(str(c) for c in m.cpus)
    return vals


def node_values(m: ModelSnapshot, cams: list[CameraSnapshot]) -> dict[str, str]:
    """The node status: the model's values plus every camera's frame counts and rates summed
    (for one unnamed camera: exactly that camera's values)."""
    vals = model_values(m)
    if len(cams) == 1 and not cams[0].name:
        vals.update(camera_values(cams[0]))
        return vals
    per = [camera_values(c) for c in cams]
    for k in ('input_rate_hz', 'output_rate_hz'):
        vals[k] = f'{sum(float(v[k]) for v in per):.2f}'
    for k in FRAME_COUNTS + ('frames.in_progress',):
        vals[k] = str(sum(int(v[k]) for v in per))
    vals['loss_reporting'] = LOSS_REPORTING
    vals['cameras'] = ','.join(c.name for c in cams)
    return vals


def transport(cam: CameraSnapshot, warn_after: float) -> tuple[str, str]:
    """Why ``cam`` gets no frames, as ``(kind, message)``; ``('', '')`` when it does.

    Kinds: ``no_publisher`` (nobody publishes on its topic), ``never_delivered`` (publishers
    are matched but not one frame arrived: transport or QoS profile), ``lost`` (the
    middleware reported lost frames recently: transport), ``stalled`` (the camera delivered
    and then stopped: a camera fault, not a transport one).
    """
    where = f'{cam.name}: ' if cam.name else ''
    lost = cam.counters.get('frames.lost', 0)
    if cam.publishers == 0:
        if cam.unmatched_s < warn_after:
            return '', ''
        return 'no_publisher', (f'{where}no publisher on {cam.topic} for '
                                f'{cam.unmatched_s:.0f} s: start the camera, or remap the '
                                'image topic to the one it publishes')
    if cam.quiet_s >= warn_after and not cam.delivered:
        return 'never_delivered', (f'{where}{cam.publishers} publisher(s) matched on '
                                   f'{cam.topic} but no frame arrived for {cam.quiet_s:.0f} s '
                                   f'(frames.lost {lost}): {LARGE_FRAMES_FIX}')
    if cam.lost_age is not None and cam.lost_age < max(LOSS_WARN_SEC, warn_after):
        return 'lost', (f'{where}frames lost in transport (frames.lost {lost}): '
                        f'{LARGE_FRAMES_FIX}')
    if cam.quiet_s >= warn_after:
        age = cam.last_frame_age if cam.last_frame_age is not None else cam.quiet_s
        return 'stalled', (f'{where}camera {cam.label} stalled: its last frame arrived '
                           f'{age:.1f} s ago on {cam.topic} ({cam.publishers} publisher(s) '
                           'still matched)')
    return '', ''


def status(name: str, hardware_id: str, vals: dict[str, str], recent_errors: int,
           window: float, fallback: bool, notes: list[str]) -> Status:
    """One entry: WARN while errors happened in the last ``window`` seconds, a fallback
    backend runs, or a transport note applies; else OK."""
    parts = []
    if recent_errors:
        parts.append(f'{recent_errors} frame errors in the last {window:g} s')
    if fallback:
        parts.append('running on fallback backend')
    parts += notes
    level = WARN if parts else OK
    return Status(name, hardware_id, level, '; '.join(parts) if parts else 'ok', vals)


def error_total(vals: dict[str, str]) -> int:
    """The sum of the ``errors.*`` values of a status."""
    return sum(int(v) for k, v in vals.items() if k.startswith('errors.'))


def statuses(node_name: str, m: ModelSnapshot, cams: list[CameraSnapshot], *,
             multi_camera: bool, warn_after: float, window: float,
             recent) -> tuple[list[Status], dict[str, tuple[str, str]]]:
    """The ``/diagnostics`` entries of the node, and each camera's transport ``(kind,
    message)``. ``recent(name, total)`` gives how much a status's error total rose within
    the window (``stats.RecentRise`` per status name)."""
    notes = {c.name: transport(c, warn_after) for c in cams}
    vals = node_values(m, cams)
    out = [status(f'{node_name}: segmentation', m.device, vals,
                  recent('segmentation', error_total(vals)), window, bool(m.backend_note),
                  [msg for _, msg in notes.values() if msg])]
    if multi_camera:
        for c in cams:
            cv = camera_values(c)
            name = f'camera {c.name}'
            msg = notes[c.name][1]
            out.append(status(f'{node_name}: {name}', m.device, cv,
                              recent(name, error_total(cv)), window, False,
                              [msg] if msg else []))
    return out, notes
