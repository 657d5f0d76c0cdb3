"""Read ROS 2 bags (sqlite3, mcap; truncated mcap recovered) and write prediction bags."""
from __future__ import annotations

from dataclasses import dataclass, field
import difflib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                QosReliability, QosTime)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapReader, read_sized
from rosbags.typesys import get_typestore, Stores

from ..core.occupancy_msg import OccupancyCloud
from ..core.rosimage import labels_to_image_fields, rgb_to_image_fields

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
POINTCLOUD2 = 'sensor_msgs/msg/PointCloud2'
IMAGE_TYPES = (IMAGE, COMPRESSED)
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
MCAP_MAGIC = b'\x89MCAP0\r\n'

# What rclpy's default publisher offers (reliable, volatile, keep last 10); zero durations
# are rosbag2's "default" (no deadline/lifespan).
_ZERO = QosTime(0, 0)
DEFAULT_QOS = Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
                  _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)


class BagError(RuntimeError):
    """A bag cannot be opened or lacks what was asked for; the message says what to do."""


def typestore():
    """The message typestore for the newest ROS 2 distribution rosbags knows (Kilted here)."""
    for name in ('ROS2_KILTED', 'ROS2_JAZZY', 'LATEST'):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise BagError('rosbags has no ROS 2 typestore; install rosbags>=0.10')


def stamp_ns(header) -> int:
    """A std_msgs/Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class _RecoveringMcapReader(McapReader):
    """Scans a damaged MCAP file (no footer/summary, cut chunk) from the start; everything up
    to the damage is readable. Relies on rosbags' McapReader internals (rosbags 0.11)."""

    def _open(self) -> None:
        bio = self.bio
        assert bio is not None
        if bio.read(8) != MCAP_MAGIC:
            raise ReaderError('not an MCAP file (bad magic)')
        if bio.read(1) != b'\x01':
            raise ReaderError('MCAP header record missing')
        read_sized(bio)
        self.data_start = bio.tell()
        self.data_end = os.fstat(bio.fileno()).st_size
        self.scan_error = ''
        try:
            self.meta_scan()
        except Exception as exc:  # the damaged tail; keep what was scanned
            self.scan_error = str(exc) or type(exc).__name__

    def messages(self, connections, start=None, stop=None):
        yield from self.messages_scan(connections, start, stop)


@dataclass
class BagSource:
    """One bag (a rosbag2 folder or a bare ``.db3``/``.mcap`` file), opened leniently."""

    path: Path
    storage: str = ''
    recovered: str = ''       # non-empty when a damaged file was read by scanning
    read_error: str = ''      # set when reading stopped early
    topics: dict[str, str] = field(default_factory=dict)
    _reader: object = None
    _connections: list = field(default_factory=list)

    def open(self) -> 'BagSource':
        path = Path(self.path)
        if not path.exists():
            raise BagError(f'bag not found: {path}')
        try:
            reader = Reader(path)
            reader.open()
            self._reader = reader
            self._connections = list(reader.connections)
            self.storage = _storage_of(path)
        except (ReaderError, OSError, ValueError, KeyError) as exc:
            mcaps = [path] if path.suffix == '.mcap' else sorted(path.glob('*.mcap')) \
                if path.is_dir() else []
            if not mcaps:
                raise BagError(_open_error(path, exc)) from exc
            self._open_recovering(mcaps, exc)
        self.topics = {c.topic: c.msgtype for c in self._connections}
        return self

    def _open_recovering(self, files: Sequence[Path], exc: Exception) -> None:
        readers = []
        for f in files:
            r = _RecoveringMcapReader(f)
            try:
                r.open()
            except Exception as err:
                raise BagError(f'cannot open bag {self.path}: {exc}; scanning {f.name} also '
                               f'failed: {err}') from err
            readers.append(r)
        self._reader = readers
        self._connections = [c for r in readers for c in r.connections]
        self.storage = 'mcap'
        damage = '; '.join(r.scan_error for r in readers if r.scan_error) or 'no summary'
        self.recovered = f'{exc} -> read by scanning the MCAP records ({damage})'

    def close(self) -> None:
        readers = self._reader if isinstance(self._reader, list) else [self._reader]
        for r in readers:
            if r is not None:
                try:
                    r.close()
                except Exception:  # closing a damaged file must not hide the results
                    pass
        self._reader = None

    def __enter__(self) -> 'BagSource':
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def count(self, topic: str) -> int:
        """Messages on ``topic`` according to the bag's index (0 when unknown)."""
        return sum(int(c.msgcount or 0) for c in self._connections if c.topic == topic)

    def describe_topics(self) -> str:
        return ', '.join(f'{t} ({m})' for t, m in sorted(self.topics.items())) or 'none'

    def require(self, topic: str, types: Sequence[str], role: str) -> str:
        """The message type of ``topic``; otherwise a one-line BagError with the close matches
        and the topics of the right types (not every topic of the bag)."""
        if topic not in self.topics:
            typed = sorted(t for t, m in self.topics.items() if m in types)
            close = difflib.get_close_matches(topic, typed, 1, 0.6)
            listed = ', '.join(f'{t} ({self.topics[t]})' for t in typed[:6]) or 'none'
            if len(typed) > 6:
                listed += f' and {len(typed) - 6} more'
            raise BagError(f'bag {self.path} has no {role} topic {topic!r}; '
                           + (f'did you mean {close[0]!r}? ' if close else '')
                           + f'available topics: {listed} (the {role} topics of '
                           f'{len(self.topics)}; `pspnet-ros bag-info {self.path}` describes '
                           'them)')
        if self.topics[topic] not in types:
            raise BagError(f'{role} topic {topic!r} in {self.path} has type '
                           f'{self.topics[topic]}; expected one of {", ".join(types)}')
        return self.topics[topic]

    def time_range(self) -> tuple[int, int] | None:
        """``(first, after last)`` bag time in ns from the bag's index; None for a damaged
        bag read by scanning."""
        if not isinstance(self._reader, Reader):
            return None
        return int(self._reader.start_time), int(self._reader.end_time)

    def messages(self, topics: Sequence[str], start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """``(topic, msgtype, bag time ns, raw CDR)`` in bag order, with bag time in
        ``[start, stop)`` when given; stops at the first read error (kept in ``read_error``)
        so a damaged bag still yields what precedes it."""
        conns = [c for c in self._connections if c.topic in topics]
        readers = self._reader if isinstance(self._reader, list) else [self._reader]
        try:
            for r in readers:
                own = [c for c in conns if isinstance(self._reader, Reader) or c.owner is r]
                for conn, t, raw in r.messages(connections=own, start=start, stop=stop):
                    yield conn.topic, conn.msgtype, t, raw
        except Exception as exc:
            self.read_error = (f'reading stopped early: {type(exc).__name__}: {exc} (bag '
                               'truncated or corrupt)')


def _open_error(path: Path, exc: Exception) -> str:
    """One line: why ``path`` cannot be opened and what to try."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    why = (lines[0] if lines else type(exc).__name__).rstrip('.')
    if path.is_dir() and 'database' not in str(exc).lower():
        hint = ('its metadata.yaml is missing or not one `ros2 bag record` writes '
                '(`ros2 bag reindex FOLDER` rebuilds it).')
    elif path.suffix == '.db3' or (path.is_dir() and any(path.glob('*.db3'))):
        hint = ('the sqlite3 file is truncated or corrupt; sqlite3 bags cut short cannot be '
                'read (try `sqlite3 FILE .recover`).')
    else:
        hint = 'the file is truncated or corrupt, or not a rosbag2 bag.'
    return f'cannot open bag {path}: {why}; {hint}'


def _storage_of(path: Path) -> str:
    if path.suffix in ('.mcap', '.db3'):
        return 'mcap' if path.suffix == '.mcap' else 'sqlite3'
    if any(path.glob('*.mcap')):
        return 'mcap'
    return 'sqlite3'


def make_header(ts, stamp: int, frame_id: str):
    """A std_msgs/Header from integer nanoseconds."""
    Header = ts.types['std_msgs/msg/Header']
    Time = ts.types['builtin_interfaces/msg/Time']
    return Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                  frame_id=frame_id)


def image_msg(ts, header, fields):
    """A sensor_msgs/Image from ``(height, width, encoding, step, data)``."""
    h, w, enc, step, data = fields
    return ts.types[IMAGE](header=header, height=h, width=w, encoding=enc, is_bigendian=0,
                           step=step, data=np.frombuffer(data, np.uint8))


def compressed_msg(ts, header, fmt: str, data: bytes):
    return ts.types[COMPRESSED](header=header, format=fmt, data=np.frombuffer(data, np.uint8))


def cloud_msg(ts, header, cloud: OccupancyCloud):
    """A sensor_msgs/PointCloud2 carrying an occupancy layout."""
    PointField = ts.types['sensor_msgs/msg/PointField']
    return ts.types[POINTCLOUD2](
        header=header, height=cloud.height, width=cloud.width,
        fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                for f in cloud.fields],
        is_bigendian=cloud.is_bigendian, point_step=cloud.point_step, row_step=cloud.row_step,
        data=np.frombuffer(cloud.data, np.uint8), is_dense=cloud.is_dense)


class BagWriter:
    """A new rosbag2 bag (format version 9) with standard types, message definitions and a
    reliable keep-last-10 offered QoS per topic, as ``ros2 bag record`` writes them."""

    def __init__(self, path: str | os.PathLike, storage: str = 'sqlite3'):
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        path = Path(path)
        if path.exists():
            raise FileExistsError(f'{path} exists already; choose a new output bag path')
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ts = typestore()
        self.writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
        self.writer.open()
        self.path = path
        self._conns: dict[str, object] = {}

    def write(self, topic: str, msg, time_ns: int) -> None:
        msgtype = msg.__msgtype__
        conn = self._conns.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=self.ts,
                                              offered_qos_profiles=[DEFAULT_QOS])
            self._conns[topic] = conn
        self.writer.write(conn, int(time_ns), self.ts.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, raw: bytes, time_ns: int) -> None:
        """Copy a message as read from another bag (CDR bytes) without decoding it."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=self.ts,
                                              offered_qos_profiles=[DEFAULT_QOS])
            self._conns[topic] = conn
        self.writer.write(conn, int(time_ns), raw)

    def write_labels(self, topic: str, header, labels: np.ndarray, time_ns: int) -> None:
        """Class ids as a mono8 (16UC1 above 255) ``sensor_msgs/Image`` with ``header``."""
        self.write(topic, image_msg(self.ts, header, labels_to_image_fields(labels)), time_ns)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PredictionWriter:
    """Writes ``<prefix>/mask`` (mono8 ids), ``<prefix>/color_mask`` (rgb8) and
    ``<prefix>/occupancy`` (PointCloud2, see core.occupancy_msg) with the input headers."""

    def __init__(self, path: str | os.PathLike, storage: str, prefix: str = '/pspnet'):
        self.bag = BagWriter(path, storage)
        self.prefix = prefix.rstrip('/')
        self.count = 0

    def write(self, header, time_ns: int, labels: np.ndarray, color: np.ndarray,
              cloud: OccupancyCloud) -> None:
        ts = self.bag.ts
        self.bag.write_labels(f'{self.prefix}/mask', header, labels, time_ns)
        self.bag.write(f'{self.prefix}/color_mask',
                       image_msg(ts, header, rgb_to_image_fields(color)), time_ns)
        self.bag.write(f'{self.prefix}/occupancy', cloud_msg(ts, header, cloud), time_ns)
        self.count += 1

    def close(self) -> None:
        self.bag.close()
