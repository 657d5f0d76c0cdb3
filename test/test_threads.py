"""Thread pools on a shared CPU: passive waiting and thread counts from the usable CPUs.

The settings only take effect before the libraries load, so each check runs in a fresh
Python process.
"""
import json
import os
import platform
import subprocess
import sys

from conftest import CORAL, ROOT
import pytest

CPUS = sorted(os.sched_getaffinity(0))


def _child(code: str, cpus=None, env=None) -> dict:
    """Run ``code`` in a new interpreter (optionally restricted to ``cpus``); it prints JSON."""
    penv = {k: v for k, v in os.environ.items()
            if k not in ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS', 'KMP_BLOCKTIME', 'GOMP_SPINCOUNT',
                         'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}
    penv.update(env or {})
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=penv, cwd=ROOT, preexec_fn=preexec, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pools_wait_passively_and_use_one_thread_per_usable_cpu():
    got = _child('import json, os\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 's = configure_threads()\n'
                 'import torch\n'
                 'print(json.dumps({"torch": torch.get_num_threads(), "threads": s.threads,\n'
                 '  "wait": os.environ["OMP_WAIT_POLICY"], "omp": os.environ["OMP_NUM_THREADS"],\n'
                 '  "spin": os.environ["GOMP_SPINCOUNT"], "notes": s.notes}))')
    # libgomp spins about 0.1 ms between parallel regions, then sleeps (docs/RESULTS.md).
    assert got == {'torch': len(CPUS), 'threads': len(CPUS), 'wait': 'PASSIVE',
                   'omp': str(len(CPUS)), 'spin': '10000', 'notes': []}


def test_thread_count_follows_the_affinity_mask_not_the_machine():
    got = _child('import json\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 'configure_threads()\n'
                 'import torch\n'
                 'print(json.dumps({"torch": torch.get_num_threads()}))', cpus={CPUS[0]})
    assert got == {'torch': 1}


def test_an_explicit_wait_policy_in_the_environment_is_kept():
    got = _child('import json, os\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 'configure_threads()\n'
                 'print(json.dumps({k: os.environ.get(k) for k in\n'
                 '    ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}))',
                 env={'OMP_WAIT_POLICY': 'ACTIVE'})
    # Nothing else may undo the user's choice: libgomp takes an explicit GOMP_SPINCOUNT over
    # OMP_WAIT_POLICY, so GOMP_SPINCOUNT=0 would make ACTIVE passive again.
    assert got == {'OMP_WAIT_POLICY': 'ACTIVE', 'GOMP_SPINCOUNT': None, 'KMP_BLOCKTIME': None}


def test_a_spin_count_the_user_set_is_kept():
    got = _child('import json, os\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 'configure_threads()\n'
                 'print(json.dumps({k: os.environ.get(k) for k in\n'
                 '    ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}))',
                 env={'GOMP_SPINCOUNT': '0'})
    assert got == {'OMP_WAIT_POLICY': 'PASSIVE', 'GOMP_SPINCOUNT': '0'}


def test_the_node_sets_the_spin_from_its_cameras_before_torch_loads():
    # The entry point leaves the spin count open; importing the node loads no torch, so the
    # configuration (one camera: no spin; several: 0.1 ms) still reaches libgomp. Once torch
    # is loaded the count is fixed, and a configuration that wants another one says so.
    got = _child('import json, os, sys\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 'configure_threads(spin=None)\n'
                 'entry = os.environ.get("GOMP_SPINCOUNT")\n'
                 'import pspnet_ros.node.segment_node\n'
                 'loaded = "torch" in sys.modules\n'
                 'one = configure_threads(0, spin=False)\n'
                 'import torch\n'
                 'many = configure_threads(0, spin=True)\n'
                 'print(json.dumps({"entry": entry, "loaded": loaded, "one": one.describe(),\n'
                 '  "one_notes": one.notes, "spin": os.environ["GOMP_SPINCOUNT"],\n'
                 '  "many_notes": many.notes}))')
    n = len(CPUS)
    cpus = ','.join(str(c) for c in CPUS)
    assert got == {
        'entry': None, 'loaded': False,
        'one': f'{n} inference threads on CPUs {cpus}, OMP_WAIT_POLICY=PASSIVE, '
               'GOMP_SPINCOUNT=0',
        'one_notes': [], 'spin': '0',
        'many_notes': ['GOMP_SPINCOUNT stays 0 (libgomp read it at load); this configuration '
                       'would use 10000: restart the process to apply it']}


def test_processes_started_from_here_choose_their_own_thread_settings():
    # A benchmark script configures its own pools (spin 10000); the node it starts must not
    # inherit that as if the user had chosen it. What the user set is passed on.
    code = ('import json\n'
            'from pspnet_ros.core.threads import child_env, configure_threads\n'
            'configure_threads()\n'
            'env = child_env()\n'
            'print(json.dumps({k: env.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",\n'
            '                                          "OMP_NUM_THREADS")}))')
    assert _child(code) == {'OMP_WAIT_POLICY': None, 'GOMP_SPINCOUNT': None,
                            'OMP_NUM_THREADS': None}
    assert _child(code, env={'GOMP_SPINCOUNT': '0', 'OMP_NUM_THREADS': '1'}) == {
        'OMP_WAIT_POLICY': None, 'GOMP_SPINCOUNT': '0', 'OMP_NUM_THREADS': '1'}


def test_num_threads_is_capped_at_the_usable_cpus():
    # 256 threads on 2 cores used to start 531 threads in the process.
    got = _child('import json, os\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 's = configure_threads(256)\n'
                 'import numpy as np\n'
                 'from pspnet_ros.core import Segmenter\n'
                 'from pspnet_ros.core.files import default_card_path\n'
                 'seg = Segmenter(default_card_path(), backend_options={"threads": 256})\n'
                 'seg(np.zeros((360, 480, 3), np.uint8))\n'
                 'import torch\n'
                 'print(json.dumps({"threads": s.threads, "torch": torch.get_num_threads(),\n'
                 '  "tasks": len(os.listdir("/proc/self/task")), "notes": s.notes}))')
    assert got['threads'] == got['torch'] == len(CPUS)
    assert got['notes'] == [f'num_threads 256 capped at the {len(CPUS)} CPUs this process may '
                            'use']
    assert got['tasks'] <= len(CPUS) + 8


def test_cpu_affinity_pins_threads_that_already_run():
    got = _child('import json, os, threading\n'
                 'ev = threading.Event()\n'
                 't = threading.Thread(target=ev.wait); t.start()\n'
                 'from pspnet_ros.core.threads import configure_threads\n'
                 f's = configure_threads(0, [{CPUS[0]}])\n'
                 'masks = {tid: sorted(os.sched_getaffinity(int(tid)))\n'
                 '         for tid in os.listdir("/proc/self/task")}\n'
                 'ev.set(); t.join()\n'
                 'print(json.dumps({"masks": sorted(masks.values()), "threads": s.threads,\n'
                 '  "cpus": list(s.usable_cpus)}))')
    assert got['masks'] == [[CPUS[0]]] * len(got['masks']) and len(got['masks']) >= 2
    assert got['threads'] == 1 and got['cpus'] == [CPUS[0]]


def test_cpu_affinity_with_a_cpu_the_machine_lacks_is_refused():
    from pspnet_ros.core.threads import check_affinity
    with pytest.raises(ValueError, match=r'cpu_affinity \[0, 4096\]: CPUs \[4096\] do not '
                                         r'exist on this machine'):
        check_affinity([0, 4096])


def test_entry_points_load_no_thread_pool_library_before_configuring():
    got = _child('import json, sys\n'
                 'import pspnet_ros.node.__main__, pspnet_ros.cli\n'
                 'print(json.dumps(sorted({"torch", "numpy", "onnxruntime", "cv2"}\n'
                 '                        & set(sys.modules))))')
    assert got == []


def test_onnxruntime_sessions_do_not_spin_and_use_the_usable_cpus(tmp_path):
    onnx = pytest.importorskip('onnx', reason='onnx not installed')
    pytest.importorskip('onnxruntime', reason='onnxruntime not installed')
    from onnx import helper, TensorProto
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.backends import create_backend
    graph = helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])], 'identity',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 11, 16, 16])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 11, 16, 16])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]),
              tmp_path / 'm.onnx')
    card = ModelCard(name='identity', weights=str(tmp_path / 'm.onnx'), label_set='camvid',
                     num_classes=11, input_size=[16, 16], format='onnx')
    backend = create_backend('onnxruntime', card, num_threads=256)
    opts = backend.session.get_session_options()
    assert opts.intra_op_num_threads == len(CPUS)
    assert opts.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    assert backend.details['num_threads'] == len(CPUS)


def test_tflite_threads_are_capped_at_the_usable_cpus():
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.backends import create_backend
    card = ModelCard.load(ROOT / 'models' / 'third_party' / 'coral_deeplabv3_mnv2_pascal.yaml')
    if not card.weights_path.is_file():
        pytest.skip(f'{card.weights_path} is not present (shared Coral models in {CORAL})')
    assert create_backend('tflite', card, num_threads=256).details['num_threads'] == len(CPUS)
    assert create_backend('tflite', card).details['num_threads'] == len(CPUS)


_ARENAS = ('import ctypes, json, os, tempfile, threading\n'
           'from pspnet_ros.core.threads import limit_malloc_arenas\n'
           'note = limit_malloc_arenas() if os.environ.get("CAP") else ""\n'
           'libc = ctypes.CDLL(None)\n'
           'libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]\n'
           'libc.fopen.restype = ctypes.c_void_p\n'
           'libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]\n'
           'libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]\n'
           'libc.fclose.argtypes = [ctypes.c_void_p]\n'
           'start, keep = threading.Barrier(8), []\n'
           'def work():\n'
           '    start.wait()\n'
           '    keep.extend(libc.malloc(4096) for _ in range(50))\n'
           'ts = [threading.Thread(target=work) for _ in range(8)]\n'
           '[t.start() for t in ts]; [t.join() for t in ts]\n'
           'path = tempfile.mktemp()\n'
           'f = libc.fopen(path.encode(), b"w"); libc.malloc_info(0, f); libc.fclose(f)\n'
           'heaps = open(path).read().count("<heap nr=")\n'
           'os.unlink(path)\n'
           'print(json.dumps({"note": note, "heaps": heaps}))')


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='malloc arenas are a glibc feature')
def test_malloc_arenas_are_capped_for_threads_started_after_and_the_environment_wins():
    # Eight threads that each allocate: glibc gives every one its own arena (each keeping what
    # its thread freed); capped, they share two.
    free = _child(_ARENAS)
    capped = _child(_ARENAS, env={'CAP': '1'})
    assert free['heaps'] >= 4 and free['note'] == ''
    assert capped == {'note': 'malloc arenas capped at 2', 'heaps': 2}
    user = _child(_ARENAS, env={'CAP': '1', 'MALLOC_ARENA_MAX': '3'})
    assert user == {'note': 'malloc arenas: MALLOC_ARENA_MAX=3 (environment)', 'heaps': 3}
