"""CPU thread pools for a shared CPU: passive waiting and thread counts from the usable cores."""
from __future__ import annotations

from dataclasses import dataclass, field
import os
import sys
from typing import Iterable

# OpenMP (PyTorch's intra-op pool), Intel OpenMP, OpenBLAS and MKL spin on idle cores between
# parallel regions. On a robot the other cores belong to SLAM, planning and drivers: spinning
# threads compete with them and latency tails explode (docs/BENCHMARKS.md, "CPU contention").
# These are read once, when each library loads, so they must be set before torch, numpy or
# onnxruntime are imported.
# libgomp (PyTorch's pool) spins GOMP_SPINCOUNT iterations (about 100 000 per ms) before it
# sleeps, and takes that count over OMP_WAIT_POLICY. 10 000 (about 0.1 ms) bridges the gaps
# between the layers of one forward pass and sleeps as soon as a frame is done. Measured on 2
# cores (docs/BENCHMARKS.md): an idle frame about 25 % faster than with 0 (no spin); one
# 4-camera node 1.1-1.3x the output of four single-camera nodes, against 0.7x with 0; beside 2
# busy processes the same absolute p50, but torch's p50 there is 2.7-2.8x its (faster) idle
# p50 against 2.1-2.3x with 0. A user who wants no spin at all sets GOMP_SPINCOUNT=0 (kept).
PASSIVE_ENV = {
    'OMP_WAIT_POLICY': 'PASSIVE',   # OpenMP runtimes: sleep instead of spinning for long
    'KMP_BLOCKTIME': '0',           # Intel OpenMP: no spin time after a parallel region
    'GOMP_SPINCOUNT': '10000',      # libgomp: spin about 0.1 ms, then sleep
}
THREAD_COUNT_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
# Libraries whose pools are fixed once they load.
POOL_LIBRARIES = ('torch', 'numpy', 'onnxruntime', 'cv2')
# Libraries already loaded at the first ``configure_threads`` call (None: not called yet).
_LOADED_FIRST: tuple[str, ...] | None = None


@dataclass
class ThreadSettings:
    """What ``configure_threads`` applied, for logs and diagnostics."""

    usable_cpus: tuple[int, ...]
    threads: int
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        cpus = ','.join(str(c) for c in self.usable_cpus)
        return (f'{self.threads} inference threads on CPUs {cpus}, '
                f'OMP_WAIT_POLICY={self.env.get("OMP_WAIT_POLICY", "?")}')


# glibc gives each new thread its own malloc arena (up to 8 per core), and every arena keeps
# the memory its thread freed. The node's threads (DDS, executor, inference pools) each
# allocate frames and batch activations, so a 4-camera node held about 120 MB more than a
# 1-camera node; with 2 arenas the difference was about 55 MB, at the same output rate
# (scripts/bench_multicam.py, docs/BENCHMARKS.md).
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8                   # glibc malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> str:
    """Cap glibc's malloc arenas at ``arenas`` for the threads created from now on; call it
    before ROS and the inference libraries start their threads. ``MALLOC_ARENA_MAX`` in the
    environment (read by glibc at start) is kept. Returns what was done, for the log."""
    if 'MALLOC_ARENA_MAX' in os.environ:
        return f'malloc arenas: MALLOC_ARENA_MAX={os.environ["MALLOC_ARENA_MAX"]} (environment)'
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return 'malloc arenas: no mallopt in this C library, left as they are'
    if not mallopt(_M_ARENA_MAX, int(arenas)):
        return 'malloc arenas: mallopt(M_ARENA_MAX) refused, left as they are'
    return f'malloc arenas capped at {arenas}'


def usable_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask, which containers and ``taskset``
    restrict; ``os.cpu_count()`` counts the whole machine)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # not Linux
        return tuple(range(os.cpu_count() or 1))


def thread_count(requested: int = 0) -> int:
    """Threads for one inference pool: ``requested`` capped at the usable CPUs (0 = all
    usable CPUs). More threads than cores only adds context switches."""
    if requested < 0:
        raise ValueError(f'num_threads must be >= 0 (0 = one per usable CPU), got {requested}')
    n = len(usable_cpus())
    return n if requested == 0 else min(requested, n)


def check_affinity(cpus: Iterable[int]) -> tuple[int, ...]:
    """``cpus`` as a sorted tuple, checked against the CPUs of this machine."""
    wanted = tuple(sorted({int(c) for c in cpus}))
    if not wanted:
        return ()
    online = os.cpu_count() or 1
    bad = [c for c in wanted if c < 0 or c >= online]
    if bad:
        raise ValueError(f'cpu_affinity {list(wanted)}: CPUs {bad} do not exist on this machine '
                         f'(CPUs 0..{online - 1})')
    return wanted


def pin_process(cpus: Iterable[int]) -> tuple[int, ...]:
    """Pin every thread of this process (and threads it starts later) to ``cpus``.

    ``os.sched_setaffinity(0, ...)`` changes only the calling thread on Linux; DDS and
    inference threads already exist, so each task of the process is set.
    """
    wanted = check_affinity(cpus)
    if not wanted:
        return usable_cpus()
    try:
        tasks = [int(t) for t in os.listdir('/proc/self/task')]
    except OSError:
        tasks = [0]
    for tid in tasks:
        try:
            os.sched_setaffinity(tid, wanted)
        except ProcessLookupError:  # the thread ended meanwhile
            pass
        except OSError as exc:
            raise ValueError(f'cpu_affinity {list(wanted)} could not be applied: {exc}') from exc
    return usable_cpus()


def configure_threads(num_threads: int = 0, cpu_affinity: Iterable[int] = ()
                      ) -> ThreadSettings:
    """Set up the CPU thread pools of this process; call it before the inference libraries load.

    Sets passive waiting for OpenMP/BLAS and their thread counts to ``num_threads`` capped at
    the usable CPUs (0 = all usable CPUs), after pinning the process to ``cpu_affinity`` if
    given. An explicit ``OMP_WAIT_POLICY`` in the environment is kept, and then no spin count
    is set either. If torch is already
    loaded its pool size is set directly; passive waiting can then no longer be applied and a
    note says so.
    """
    global _LOADED_FIRST
    if _LOADED_FIRST is None:
        _LOADED_FIRST = tuple(m for m in POOL_LIBRARIES if m in sys.modules)
    cpus = pin_process(cpu_affinity) if cpu_affinity else usable_cpus()
    threads = thread_count(num_threads)
    notes = []
    if num_threads > threads:
        notes.append(f'num_threads {num_threads} capped at the {threads} CPUs this process may '
                     'use')
    # A wait policy the user chose is kept whole: libgomp takes an explicit GOMP_SPINCOUNT
    # over OMP_WAIT_POLICY, so the passive spin counts are set only with the passive policy.
    if 'OMP_WAIT_POLICY' not in os.environ:
        for key, value in PASSIVE_ENV.items():
            os.environ.setdefault(key, value)
    for key in THREAD_COUNT_ENV:
        os.environ[key] = str(threads)
    if 'torch' in sys.modules:
        import torch
        torch.set_num_threads(threads)
    if _LOADED_FIRST:
        notes.append(f'{", ".join(_LOADED_FIRST)} loaded before the thread pools were '
                     'configured; their wait policy is the library default')
    env = {k: os.environ[k] for k in (*PASSIVE_ENV, *THREAD_COUNT_ENV) if k in os.environ}
    return ThreadSettings(cpus, threads, env, notes)
