"""The CPU this process runs on: its model name and feature flags (Linux /proc/cpuinfo)."""
from __future__ import annotations

from pathlib import Path
import platform

# The flags that decide which kernels numpy, torch and XNNPACK run: what benchmarks record.
SIMD_PREFIXES = ('avx', 'fma', 'sse4')


def cpu_info() -> dict:
    """``{'model': str, 'flags': sorted list}``; the model falls back to ``platform`` and the
    flags are empty where ``/proc/cpuinfo`` cannot be read (x86 ``flags``, ARM ``Features``)."""
    info = {'model': '', 'flags': []}
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        text = ''
    for line in text.splitlines():
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'model name' and not info['model']:
            info['model'] = value.strip()
        elif key in ('flags', 'Features') and not info['flags']:
            info['flags'] = sorted(value.split())
    info['model'] = info['model'] or platform.processor() or platform.machine()
    return info


def simd_flags(flags) -> list[str]:
    """The SIMD flags among ``flags`` (AVX, FMA, SSE4 families)."""
    return [f for f in flags if f.startswith(SIMD_PREFIXES)]
