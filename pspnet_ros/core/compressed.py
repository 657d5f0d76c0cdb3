"""JPEG and PNG structure read without decoding: the frame size, and the damage found in it.

Decoders (libjpeg, libpng inside OpenCV) print their warnings straight to the process's
stderr. Reading the structure first tells the caller, per frame, what a decoder would warn
about, without touching file descriptor 2: JPEG markers are walked over the whole buffer
(an APP1/EXIF block may be 64 KB), the entropy-coded data is scanned for stray markers and
out-of-order restarts, and every PNG chunk's CRC is checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import struct
import zlib

import numpy as np

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                  0xCF))
_RST = frozenset(range(0xD0, 0xD8))
_SOS, _EOI, _DRI = 0xDA, 0xD9, 0xDD
# Markers that may follow a scan's entropy-coded data: another scan and its tables
# (progressive JPEGs), DNL, application data and comments, or the end of the image.
_AFTER_SCAN = frozenset((_SOS, _EOI, 0xC4, 0xCC, 0xDB, _DRI, 0xDC, 0xFE, *range(0xE0, 0xF0)))
_PNG_CRITICAL = (b'IHDR', b'PLTE', b'IDAT', b'IEND')


@dataclass
class Structure:
    """What a JPEG or PNG header and layout say: ``kind`` (``jpeg``/``png``), ``size``
    ``(width, height)`` or None when no frame header was found, ``warnings`` (damage a decoder
    reads past, in the decoders' words), ``fatal`` (damage that leaves no image: a PNG
    critical chunk that fails its CRC or is cut off) and ``strip``, the ``(start, end)`` byte
    ranges a decoder would discard with a warning (PNG ancillary chunks that fail their CRC):
    ``without_stripped`` leaves them out, so the decoder has nothing to print."""

    kind: str
    size: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)
    fatal: str = ''
    strip: list[tuple[int, int]] = field(default_factory=list)

    def without_stripped(self, buf: np.ndarray) -> np.ndarray:
        """``buf`` less the ``strip`` ranges (``buf`` itself when there are none)."""
        if not self.strip:
            return buf
        keep, at = [], 0
        for start, end in self.strip:
            keep.append(buf[at:start])
            at = end
        keep.append(buf[at:])
        return np.concatenate(keep)


def read_structure(buf: np.ndarray) -> Structure | None:
    """The structure of ``buf`` (uint8) if it starts like a PNG or a JPEG, else None."""
    if bytes(buf[:8]) == PNG_SIGNATURE:
        return _png(buf)
    if bytes(buf[:2]) == b'\xff\xd8':
        return _jpeg(buf)
    return None


def _marker_positions(buf: np.ndarray, start: int) -> np.ndarray:
    """Offsets ``i >= start`` where ``buf[i:i+2]`` is a marker inside entropy-coded data:
    0xFF followed by neither a stuffed zero nor another 0xFF (fill)."""
    ff = np.flatnonzero(buf[start:-1] == 0xFF) + start
    following = buf[ff + 1]
    return ff[(following != 0x00) & (following != 0xFF)]


def _jpeg(buf: np.ndarray) -> Structure:
    out = Structure('jpeg')
    n = int(buf.size)
    data = memoryview(buf)
    restart_interval = 0
    i = 2
    while True:
        # A marker: 0xFF, optional 0xFF fill bytes, the code. Bytes before it are extraneous.
        j = i
        while j < n and data[j] != 0xFF:
            j += 1
        while j + 1 < n and data[j + 1] == 0xFF:
            j += 1
        if j + 1 >= n:
            out.warnings.append('Premature end of JPEG file')
            return out
        code = data[j + 1]
        if j > i:
            out.warnings.append(f'Corrupt JPEG data: {j - i} extraneous bytes before marker '
                                f'0x{code:02x}')
        if code == _EOI:
            return out
        if code in _RST or code in (0x01, 0xD8):     # markers without a length
            i = j + 2
            continue
        if j + 4 > n:
            out.warnings.append('Premature end of JPEG file')
            return out
        (length,) = struct.unpack('>H', data[j + 2:j + 4])
        end = j + 2 + length
        if length < 2 or end > n:
            out.warnings.append('Premature end of JPEG file')
            return out
        if code in _SOF and length >= 7 and out.size is None:
            height, width = struct.unpack('>HH', data[j + 5:j + 9])
            out.size = (width, height)
        elif code == _DRI and length >= 4:
            (restart_interval,) = struct.unpack('>H', data[j + 4:j + 6])
        if code != _SOS:
            i = end
            continue
        # Entropy-coded data runs to the first marker that is not a restart.
        expected = 0
        for pos in _marker_positions(buf, end):
            code = int(buf[pos + 1])
            if code not in _RST:
                break
            if restart_interval and code != 0xD0 + expected:
                out.warnings.append(f'Corrupt JPEG data: found marker 0x{code:02x} instead of '
                                    f'RST{expected}')
                return out
            expected = (expected + 1) % 8
        else:
            out.warnings.append('Premature end of JPEG file')
            return out
        if code not in _AFTER_SCAN:
            out.warnings.append('Corrupt JPEG data: premature end of data segment')
            return out
        i = int(pos)


def _png(buf: np.ndarray) -> Structure:
    out = Structure('png')
    n = int(buf.size)
    data = memoryview(buf)
    i = 8
    idat: list[memoryview] = []
    bad_crc = ''          # the first critical chunk whose CRC fails
    while True:
        if i + 8 > n:
            out.fatal = 'file ends before its IEND chunk (truncated)'
            break
        length, kind = struct.unpack('>I4s', data[i:i + 8])
        name = kind.decode('latin-1')
        end = i + 12 + length
        if end > n:
            out.fatal = f'{name}: chunk runs past the end of the data (truncated)'
            break
        body = data[i + 8:i + 8 + length]
        if i == 8:
            if kind != b'IHDR' or length < 8:
                out.fatal = 'IHDR: missing; the first chunk must be IHDR'
                break
            out.size = struct.unpack('>II', body[:8])
        (crc,) = struct.unpack('>I', data[end - 4:end])
        if zlib.crc32(data[i + 4:i + 8 + length]) != crc:
            if kind not in _PNG_CRITICAL:
                out.warnings.append(f'{name}: CRC error')
                out.strip.append((i, end))
            elif not bad_crc:
                bad_crc = name
        if kind == b'IDAT':
            idat.append(body)
        if kind == b'IEND':
            if not idat:
                out.fatal = 'no IDAT chunk (no image data)'
            break
        i = end
    if bad_crc:
        # libpng reads a chunk's data before its CRC: damaged image data is then named by
        # zlib's complaint about it, as libpng does.
        named = _inflate_problem(idat) if bad_crc == 'IDAT' else ''
        out.fatal = named or f'{bad_crc}: CRC error'
    return out


def _inflate_problem(chunks: list[memoryview]) -> str:
    """What zlib says about the image data (``IDAT: incorrect data check``), or ''. Inflates
    a megabyte at a time, so a small damaged frame of a huge image costs no memory."""
    inflater = zlib.decompressobj()
    try:
        for chunk in chunks:
            pending = bytes(chunk)
            while pending:
                inflater.decompress(pending, 1 << 20)
                pending = inflater.unconsumed_tail
    except zlib.error as exc:
        return 'IDAT: ' + str(exc).split(': ', 1)[-1]
    return ''
