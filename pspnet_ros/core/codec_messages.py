"""Messages that libjpeg, libpng and OpenCV print straight to stderr, caught as text instead."""
from __future__ import annotations

from contextlib import contextmanager
import os
import sys
import tempfile
import threading
from typing import Iterator

# Lines the image codecs write (everything else caught meanwhile is passed on to stderr).
CODEC_PREFIXES = ('libpng', 'Corrupt JPEG', 'Premature end of JPEG', 'Invalid JPEG',
                  'Bogus', 'Warning: ', 'JPEG', 'Unsupported JPEG', '[ WARN:', '[ERROR:',
                  'Not a JPEG', 'Improper call to JPEG')
_LOCK = threading.Lock()


@contextmanager
def codec_messages(into: list[str]) -> Iterator[None]:
    """Divert file descriptor 2 while the block runs; codec lines are appended to ``into``,
    any other output is written back to stderr afterwards.

    Decoders print a line per corrupt frame; a node decoding 30 frames a second would flood
    its terminal and bypass the throttled log. Other threads' output caught in the window
    (a few milliseconds) is delayed, not lost.
    """
    with _LOCK, tempfile.TemporaryFile() as tmp:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):
            pass
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode('utf-8', 'replace')
    other = []
    for line in text.splitlines():
        if line.strip():
            (into if line.lstrip().startswith(CODEC_PREFIXES) else other).append(line.strip())
    if other:
        os.write(2, ('\n'.join(other) + '\n').encode())
