"""What a bag holds for segmentation: its image and label topics, with counts, encodings and
frame sizes (``pspnet-ros bag-info``)."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.image import ImageError
from ..core.rosimage import compressed_to_rgb, LABEL_ENCODINGS
from .bagio import BagSource, COMPRESSED, IMAGE, IMAGE_TYPES, typestore


def describe_bag(path: str | os.PathLike) -> dict:
    """The bag's storage, topic count and one entry per Image/CompressedImage topic: type,
    message count (from the bag's index), the first message's encoding (or compressed format)
    and size, and the option it fits (``--image-topic``, or ``--label-topic``/``--pred-topic``
    for single-channel class-id encodings). Reads one message per image topic."""
    ts = typestore()
    with BagSource(Path(path)) as src:
        entries = []
        for topic in sorted(t for t, m in src.topics.items() if m in IMAGE_TYPES):
            msgtype = src.topics[topic]
            entry = {'topic': topic, 'type': msgtype, 'count': src.count(topic),
                     'encoding': '', 'size': None, 'use_as': '--image-topic', 'note': ''}
            for _, mt, _, raw in src.messages([topic]):
                try:
                    _first_frame(entry, ts.deserialize_cdr(raw, mt))
                except (ImageError, ValueError) as exc:
                    entry['note'] = f'first message unreadable: {str(exc).splitlines()[0]}'
                except Exception as exc:  # a malformed message must not end the listing
                    entry['note'] = f'first message unreadable: {type(exc).__name__}: {exc}'
                break
            entries.append(entry)
        return {'bag': str(path), 'storage': src.storage, 'recovered': src.recovered,
                'topics': len(src.topics), 'image_topics': entries,
                'read_error': src.read_error}


def _first_frame(entry: dict, msg) -> None:
    if entry['type'] == COMPRESSED:
        entry['encoding'] = msg.format
        h, w = compressed_to_rgb(msg.format, bytes(msg.data)).shape[:2]
        entry['size'] = [h, w]
        return
    assert entry['type'] == IMAGE
    entry['encoding'] = msg.encoding
    entry['size'] = [int(msg.height), int(msg.width)]
    need = int(msg.step) * int(msg.height)
    if len(msg.data) < need:
        entry['note'] = f'first message malformed: data has {len(msg.data)} bytes, needs {need}'
    if msg.encoding in LABEL_ENCODINGS:
        # mono8 may be a grey camera as well as class ids; both options are listed then.
        entry['use_as'] = ('--label-topic, --pred-topic' if msg.encoding != 'mono8'
                           else '--label-topic, --pred-topic (or --image-topic: grey)')


def format_info(info: dict) -> str:
    """The listing ``pspnet-ros bag-info`` prints."""
    imgs = info['image_topics']
    lines = [f'{info["bag"]} ({info["storage"]}): {info["topics"]} topics, {len(imgs)} image '
             'topic' + ('s' if len(imgs) != 1 else '') + (':' if imgs else '')]
    if info['recovered']:
        lines.append(f'  warning: {info["recovered"]}')
    width = max((len(e['topic']) for e in imgs), default=0)
    for e in imgs:
        size = f'{e["size"][0]}x{e["size"][1]}' if e['size'] else '?'
        kind = 'CompressedImage' if e['type'] == COMPRESSED else 'Image'
        lines.append(f'  {e["topic"]:<{width}}  {kind:<15} {e["count"]:>6} msgs  '
                     f'{e["encoding"] or "?":<8} {size:>9} (HxW)  {e["use_as"]}'
                     + (f'  [{e["note"]}]' if e['note'] else ''))
    if not imgs:
        lines.append('  (no sensor_msgs/Image or CompressedImage topics to evaluate)')
    return '\n'.join(lines)
