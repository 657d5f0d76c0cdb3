"""CPU thread pools for a shared CPU: passive waiting and thread counts from the usable cores."""
from __future__ import annotations

from dataclasses import dataclass, field
import os
import sys
from typing import Iterable

# OpenMP (PyTorch's intra-op pool), Intel OpenMP, OpenBLAS and MKL spin on idle cores between
# parallel regions. On a robot the other cores belong to SLAM, planning and drivers: spinning
# threads compete with them and latency tails explode (docs/RESULTS.md, "Contention").
# These are read once, when each library loads, so they must be set before torch, numpy or
# onnxruntime are imported.
# libgomp (PyTorch's pool) spins GOMP_SPINCOUNT iterations (about 100 000 per ms) before it
# sleeps, and takes that count over OMP_WAIT_POLICY. How long to spin depends on the work
# (docs/history/BENCHMARKS-2026-11.md, "Latency beside CPU-bound processes", 2 cores):
# - one stream of frames (a one-camera node): no spin. Beside 2 busy processes the node's p50
#   is 2.1-2.3x its idle p50 and p99 1.3x p50; with a 0.1 ms spin 2.7-2.8x and 1.5-1.6x. An idle
#   frame is about 25 % slower without the spin.
# - batches of several cameras, and offline work (CLI, evaluator, benchmarks): spin 10 000
#   (about 0.1 ms), which bridges the gaps between the layers of a forward pass and sleeps as
#   soon as the work is done. Without it one 4-camera node gave 0.7x the output of four
#   single-camera nodes, with it 1.1-1.3x.
# A GOMP_SPINCOUNT the user sets is kept.
PASSIVE_ENV = {
    'OMP_WAIT_POLICY': 'PASSIVE',   # OpenMP runtimes: sleep instead of spinning for long
    'KMP_BLOCKTIME': '0',           # Intel OpenMP: no spin time after a parallel region
}
SPIN_ENV = 'GOMP_SPINCOUNT'
SPIN_BATCHES = '10000'              # libgomp: spin about 0.1 ms, then sleep
SPIN_ONE_STREAM = '0'               # libgomp: sleep at once
THREAD_COUNT_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
# What the user set before this module ran: their choice is kept, and passed on to the
# processes this one starts (``child_env``); what this module sets is not.
_USER_ENV = {k: os.environ[k] for k in (*PASSIVE_ENV, SPIN_ENV, *THREAD_COUNT_ENV)
             if k in os.environ}
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
        spin = self.env.get(SPIN_ENV)
        return (f'{self.threads} inference threads on CPUs {cpus}, '
                f'OMP_WAIT_POLICY={self.env.get("OMP_WAIT_POLICY", "?")}'
                + (f', {SPIN_ENV}={spin}' if spin is not None else ''))


# glibc gives each new thread its own malloc arena (up to 8 per core), and every arena keeps
# the memory its thread freed. The node's threads (DDS, executor, inference pools) each
# allocate frames and batch activations, so a 4-camera node held about 120 MB more than a
# 1-camera node; with 2 arenas the difference was about 55 MB, at the same output rate
# (scripts/bench_multicam.py, docs/history/BENCHMARKS-2026-11.md).
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


def child_env(env: dict | None = None) -> dict:
    """The environment for a process this one starts (e.g. a node): ``env`` (default
    ``os.environ``) with the thread settings the user made, without those ``configure_threads``
    made for this process, so that the child chooses its own (a one-camera node does not spin,
    a benchmark script does)."""
    out = dict(os.environ if env is None else env)
    for key in (*PASSIVE_ENV, SPIN_ENV, *THREAD_COUNT_ENV):
        if key in _USER_ENV:
            out[key] = _USER_ENV[key]
        else:
            out.pop(key, None)
    return out


def choose_spin(spin: bool) -> list[str]:
    """Set libgomp's spin count for this process: about 0.1 ms (``spin``: batches, offline
    work) or none (one latency-bound stream). It takes effect only if torch has not loaded yet
    and the user set neither ``GOMP_SPINCOUNT`` nor ``OMP_WAIT_POLICY``; returns a note when a
    count already in force differs from the one wanted."""
    if SPIN_ENV in _USER_ENV or 'OMP_WAIT_POLICY' in _USER_ENV:
        return []
    wanted = SPIN_BATCHES if spin else SPIN_ONE_STREAM
    if 'torch' not in sys.modules:
        os.environ[SPIN_ENV] = wanted
        return []
    # libgomp read the count when torch loaded; with the passive policy and no count it is 0.
    current = os.environ.get(SPIN_ENV, SPIN_ONE_STREAM)
    if current == wanted:
        return []
    return [f'{SPIN_ENV} stays {current} (libgomp read it at load); this '
            f'configuration would use {wanted}: restart the process to apply it']


def configure_threads(num_threads: int = 0, cpu_affinity: Iterable[int] = (),
                      spin: bool | None = True) -> ThreadSettings:
    """Set up the CPU thread pools of this process; call it before the inference libraries load.

    Sets passive waiting for OpenMP/BLAS and their thread counts to ``num_threads`` capped at
    the usable CPUs (0 = all usable CPUs), after pinning the process to ``cpu_affinity`` if
    given. ``spin``: let libgomp spin about 0.1 ms between parallel regions (True: batches and
    offline work), sleep at once (False: one latency-bound stream beside other processes), or
    leave the spin count to a later call (None). An explicit ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` in the environment is kept; with an explicit ``OMP_WAIT_POLICY`` no spin
    count is set either. If torch is already loaded its pool size is set directly; its wait
    policy can no longer change and a note says so.
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
    # over OMP_WAIT_POLICY, so the spin count is set only with the passive policy.
    if 'OMP_WAIT_POLICY' not in _USER_ENV:
        for key, value in PASSIVE_ENV.items():
            os.environ.setdefault(key, value)
        if spin is not None:
            notes.extend(choose_spin(spin))
    for key in THREAD_COUNT_ENV:
        os.environ[key] = str(threads)
    if 'torch' in sys.modules:
        import torch
        torch.set_num_threads(threads)
    if _LOADED_FIRST:
        notes.append(f'{", ".join(_LOADED_FIRST)} loaded before the thread pools were '
                     'configured; their wait policy is the library default')
    env = {k: os.environ[k] for k in (*PASSIVE_ENV, SPIN_ENV, *THREAD_COUNT_ENV)
           if k in os.environ}
    return ThreadSettings(cpus, threads, env, notes)
